"""Model cards: what a model version is, gathered from the registry, as data and as Markdown.

A card is built, never stored: the version (base, format, stage, aliases, metrics, description),
its training run and parameters, the dataset versions it was trained and validated on (from the
lineage), the evaluation runs that scored it, and the deployments that serve it when the card is
built (from the aliases as they are then, ``services/serving``). Intended use and limitations
come from the version's ``intended_use`` and ``limitations`` parameters; what was not recorded
says so. The Markdown escapes every user-written value, so a description cannot inject HTML or
links into a page that renders the card. It does not write or change anything.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from llmloop.core.base import ArtifactRef, JsonDict
from llmloop.core.deployments import ServingRoute
from llmloop.core.ids import entity_of
from llmloop.errors import NotFoundError

NOT_RECORDED = "Not recorded."
NOT_SERVED = "No deployment serves this version now."
_DATA_ROLES = ("train", "validation", "corpus", "input", "dataset")
_MD_SPECIAL = re.compile(r"([\\`*\[\]!|#])")


class CardDataset(BaseModel):
    id: str
    name: str
    version: int
    role: str = Field(description="train, validation, corpus or input.")
    rows: int
    content_hash: str


class CardEvaluation(BaseModel):
    run_id: str
    name: str
    status: str
    metrics: dict[str, float]
    created_at: datetime


class CardTraining(BaseModel):
    run_id: str
    name: str
    kind: str
    status: str
    params: JsonDict


class ModelCard(BaseModel):
    model: str
    version: int
    id: str
    created_at: datetime
    created_by: str
    base_model: str
    base_model_name: str | None = Field(
        default=None, description="The base as NAME vN when it is a version of this registry."
    )
    format: str
    stage: str
    aliases: list[str]
    description: str
    intended_use: str | None
    limitations: str | None
    training: CardTraining | None
    training_data: list[CardDataset]
    metrics: dict[str, Any]
    evaluations: list[CardEvaluation]
    artifact: ArtifactRef | None
    deployments: list[ServingRoute] = Field(
        default_factory=list,
        description="Deployment targets that resolve to this version when the card was built.",
    )


def build_card(container: Any, name: str, ref: int | str = "latest") -> ModelCard:
    """The card of the version ``ref`` (a number, an alias or ``latest``) of model ``name``."""
    version = container.models.get_version(name, ref)
    model = container.models.get(name)
    graph = container.governance.lineage(version.id, "both", depth=2)
    training = None
    if version.run_id:
        try:
            run = container.runs.get(version.run_id)
            training = CardTraining(
                run_id=run.id, name=run.name, kind=run.kind, status=run.status, params=run.params
            )
        except NotFoundError:
            training = None
    return ModelCard(
        model=name,
        version=version.version,
        id=version.id,
        created_at=version.created_at,
        created_by=version.created_by,
        base_model=version.base_model,
        base_model_name=_registry_name(container, version.base_model),
        format=version.format,
        stage=version.stage,
        aliases=sorted(a for a, target in model.aliases.items() if target == version.version),
        description=version.description,
        intended_use=_text(version.params.get("intended_use")),
        limitations=_text(version.params.get("limitations")),
        training=training,
        training_data=_datasets(container, graph, {version.id, version.run_id}),
        metrics=dict(version.metrics),
        evaluations=_evaluations(container, graph, version.id),
        artifact=version.artifact,
        deployments=container.deployments.served_by(version.id),
    )


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _datasets(container: Any, graph: Any, targets: set[str | None]) -> list[CardDataset]:
    """Dataset versions that feed the version or its training run directly, by role."""
    order = {role: i for i, role in enumerate(_DATA_ROLES)}
    found: dict[str, CardDataset] = {}
    for edge in sorted(graph.edges, key=lambda e: order.get(e.relation, 99)):
        if edge.target not in targets or entity_of(edge.source) != "dataset_version":
            continue
        if edge.source in found:  # the most specific role wins: train over input
            continue
        role = edge.relation if edge.relation in _DATA_ROLES else "input"
        dv = container.datasets.get_version_by_id(edge.source)
        found[edge.source] = CardDataset(
            id=dv.id,
            name=dv.dataset_name,
            version=dv.version,
            role=role,
            rows=dv.row_count,
            content_hash=dv.content_hash,
        )
    return sorted(found.values(), key=lambda d: (order.get(d.role, 99), d.name, d.version))


def _evaluations(container: Any, graph: Any, version_id: str) -> list[CardEvaluation]:
    """Evaluation runs that took this version as their candidate, oldest first."""
    out = []
    for edge in graph.edges:
        if edge.source != version_id or entity_of(edge.target) != "run":
            continue
        run = container.runs.get(edge.target)
        if run.kind == "eval":
            out.append(
                CardEvaluation(
                    run_id=run.id,
                    name=run.name,
                    status=run.status,
                    metrics=run.latest_metrics,
                    created_at=run.created_at,
                )
            )
    return sorted(out, key=lambda e: (e.created_at, e.run_id))


def md(text: object) -> str:
    """User text made inert in Markdown: HTML as entities, Markdown punctuation escaped, one
    line (for headings and table cells)."""
    plain = "-" if text is None else str(text)
    plain = plain.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return " ".join(_MD_SPECIAL.sub(r"\\\1", plain).split())


def _paragraphs(text: str | None) -> list[str]:
    if not text:
        return [NOT_RECORDED]
    return [md(p) for p in re.split(r"\n\s*\n", text) if p.strip()] or [NOT_RECORDED]


def _table(header: list[str], rows: Sequence[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(md(cell) for cell in row) + " |" for row in rows]
    return lines


def _registry_name(container: Any, base_model: str) -> str | None:
    if entity_of(base_model) != "model_version":
        return None
    try:
        base = container.models.get_version_by_id(base_model)
    except NotFoundError:
        return None
    return f"{base.model_name} v{base.version}"


def _base_text(card: ModelCard) -> str:
    if card.base_model_name:
        return f"{card.base_model_name} ({card.base_model})"
    return card.base_model or "-"


def render_markdown(card: ModelCard) -> str:
    """The card as a Markdown document."""
    out = [f"# {md(card.model)} v{card.version}", ""]
    out += _table(
        ["field", "value"],
        [
            ["id", card.id],
            ["base model", _base_text(card)],
            ["format", card.format],
            ["stage", card.stage],
            ["aliases", ", ".join(card.aliases) or "-"],
            ["created", f"{card.created_at:%Y-%m-%d %H:%M} UTC by {card.created_by or '-'}"],
            ["artifact", f"sha256 {card.artifact.sha256}" if card.artifact else "-"],
        ],
    )
    for title, body in (
        ("Description", card.description),
        ("Intended use", card.intended_use),
        ("Limitations", card.limitations),
    ):
        out += ["", f"## {title}", "", *_paragraphs(body)]
    out += ["", "## Training", ""]
    if card.training is None:
        out.append(NOT_RECORDED)
    else:
        t = card.training
        out.append(md(f"Run {t.run_id} ({t.kind}, {t.name}): {t.status}."))
        if t.params:
            out += ["", *_table(["parameter", "value"], sorted(t.params.items()))]
    out += ["", "## Training data", ""]
    rows = [
        [d.role, f"{d.name} v{d.version}", d.rows, d.content_hash[:12]] for d in card.training_data
    ]
    out += _table(["role", "dataset", "rows", "sha256"], rows) if rows else [NOT_RECORDED]
    out += ["", "## Metrics", ""]
    metrics = sorted(card.metrics.items())
    out += _table(["metric", "value"], metrics) if metrics else [NOT_RECORDED]
    out += ["", "## Evaluations"]
    if not card.evaluations:
        out += ["", NOT_RECORDED]
    for ev in card.evaluations:
        out += ["", f"### {md(ev.name)} ({md(ev.status)}, run {ev.run_id})", ""]
        scores = sorted(ev.metrics.items())
        out += _table(["metric", "value"], scores) if scores else [NOT_RECORDED]
    out += ["", "## Deployments", ""]
    rows = [[r.deployment, r.role_text, r.via, r.target] for r in card.deployments]
    out += _table(["deployment", "role", "via", "target"], rows) if rows else [NOT_SERVED]
    return "\n".join(out).rstrip() + "\n"
