"""``llmloop models``: the model registry: immutable versions, aliases, stages, protection.

A version records its base model, format, producing run, upstream inputs, metrics and params;
those become lineage. Aliases (``champion``) move; a protected alias moves only through an
approval. Uploading weights belongs to the training and export commands, not this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import typer

from llmloop.cli.context import get_state
from llmloop.cli.options import parse_number_pairs, parse_pairs, parse_ref, split_name_ref
from llmloop.cli.output import (
    print_fields,
    print_json,
    print_table,
    say,
    show_record,
    to_data,
    warn,
)
from llmloop.core.deployments import ServingRoute
from llmloop.core.models import ModelCreate, ModelFormat, ModelVersionCreate, Stage
from llmloop.errors import ApprovalRequiredError

app = typer.Typer(help="Models, versions, aliases and stages.", no_args_is_help=True)

JSON_OPTION = typer.Option(False, "--json", help="Print JSON.")
FORMATS = ", ".join(get_args(ModelFormat))
STAGES = ", ".join(get_args(Stage))


@app.command("list")
def list_models(
    ctx: typer.Context,
    limit: int = typer.Option(100, "--limit", min=1, help="At most this many."),
    offset: int = typer.Option(0, "--offset", min=0, help="Skip this many."),
    as_json: bool = JSON_OPTION,
) -> None:
    """List models by name."""
    items = get_state(ctx).container.models.list(limit=limit, offset=offset)
    if as_json:
        print_json(items)
        return
    rows = ([m.name, m.latest_version, m.aliases, m.description, m.id] for m in items)
    print_table(["name", "latest", "aliases", "description", "id"], rows, title="models")


@app.command("show")
def show_model(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Model name."),
    ref: str | None = typer.Option(
        None, "--ref", help="Show this version: a number, an alias or 'latest'."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show a model, or one of its versions with --ref (and the deployments serving it now)."""
    container = get_state(ctx).container
    if ref is None:
        show_record(container.models.get(name), as_json, title=f"model {name}")
        return
    version = container.models.get_version(name, parse_ref(ref))
    routes = container.deployments.served_by(version.id)
    if as_json:
        print_json({**to_data(version), "served_by": routes})
        return
    fields = {k: getattr(version, k) for k in type(version).model_fields}
    served = [r.summary for r in routes] or "no deployment"
    print_fields({**fields, "served by": served}, title=f"model {name} v{version.version}")


@app.command("card")
def model_card(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Model name."),
    ref: str = typer.Option("latest", "--ref", help="Version number, alias or 'latest'."),
    out: Path | None = typer.Option(None, "--out", help="Write the Markdown card to this file."),
    as_json: bool = JSON_OPTION,
) -> None:
    """The model card of a version: training run and data, metrics, evaluations, intended use,
    as Markdown (or JSON); intended use and limitations come from the version's params."""
    from llmloop.services.model_cards import build_card, render_markdown

    card = build_card(get_state(ctx).container, name, parse_ref(ref))
    if as_json:
        print_json(card)
    elif out is not None:
        out.write_text(render_markdown(card), encoding="utf-8")
        say(f"wrote the card of {name} v{card.version} to {out}")
    else:
        typer.echo(render_markdown(card), nl=False)


@app.command("create")
def create_model(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="A unique name."),
    description: str = typer.Option("", "--description", "-d", help="What it is for."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create a model with no versions yet."""
    state = get_state(ctx)
    created = state.container.models.create(
        ModelCreate(name=name, description=description), state.actor()
    )
    if as_json:
        print_json(created)
    else:
        say(f"created model {created.name} ({created.id})")


@app.command("add-version")
def add_version(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Model name (created when missing)."),
    base_model: str = typer.Option(
        "", "--base-model", help="Base: a model version id, a hub id or a local path."
    ),
    format_: str = typer.Option("hf", "--format", help=f"One of: {FORMATS}."),
    run: str | None = typer.Option(None, "--run", help="The run that produced it."),
    input_: list[str] = typer.Option(
        [], "--input", "-i", help="Upstream dataset/prompt/model version id (repeatable)."
    ),
    metric: list[str] = typer.Option([], "--metric", help="Metric key=number."),
    param: list[str] = typer.Option([], "--param", "-p", help="Parameter key=value."),
    tokenizer: str = typer.Option("", "--tokenizer", help="Tokenizer reference."),
    description: str = typer.Option("", "--description", "-d", help="What it is."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Register an immutable model version with its lineage."""
    spec = ModelVersionCreate.model_validate(
        {
            "base_model": base_model,
            "format": format_,
            "run_id": run,
            "inputs": input_,
            "metrics": parse_number_pairs(metric, "--metric"),
            "params": parse_pairs(param, "--param"),
            "tokenizer": tokenizer,
            "description": description,
        }
    )
    state = get_state(ctx)
    created = state.container.models.create_version(name, spec, state.actor())
    if as_json:
        print_json(created)
    else:
        say(f"model {name}: version {created.version} id {created.id}")


@app.command("versions")
def list_versions(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Model name."),
    as_json: bool = JSON_OPTION,
) -> None:
    """List the versions of a model, with the deployments serving each now."""
    container = get_state(ctx).container
    items = container.models.list_versions(name)
    served: dict[str, list[ServingRoute]] = {}
    for route in container.deployments.serving_model(name):
        served.setdefault(route.version_id, []).append(route)
    if as_json:
        print_json([{**to_data(v), "served_by": served.get(v.id, [])} for v in items])
        return
    aliases: dict[int, list[str]] = {}
    for alias, number in container.models.get(name).aliases.items():
        aliases.setdefault(number, []).append(alias)
    rows = (
        [v.version, aliases.get(v.version, []), v.stage, v.format, v.base_model, v.metrics,
         [r.summary for r in served.get(v.id, [])], v.id]
        for v in items
    )  # fmt: skip
    columns = ["version", "aliases", "stage", "format", "base", "metrics", "served by", "id"]
    print_table(columns, rows, title=f"versions of {name}")


@app.command("alias")
def set_alias(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Model name."),
    alias: str = typer.Argument(..., help="Alias, e.g. champion."),
    version: int = typer.Argument(..., min=1, help="Version number to point it at."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Point an alias at a version (a protected alias needs an approval)."""
    state = get_state(ctx)
    model = state.container.models.set_alias(name, alias, version, state.actor())
    if as_json:
        print_json(model)
    else:
        say(f"model {name}: alias {alias} -> version {version}")


@app.command("stage")
def set_stage(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Model name."),
    version: int = typer.Argument(..., min=1, help="Version number."),
    stage: str = typer.Argument(..., help=f"One of: {STAGES}."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Move a version to a lifecycle stage (archiving one a deployment still serves warns)."""
    state = get_state(ctx)
    updated = state.container.models.set_stage(name, version, stage, state.actor())
    if as_json:
        print_json(updated)
    else:
        say(f"model {name}: version {version} is in stage {updated.stage}")
    if updated.stage == "archived":
        _warn_still_served(state.container.deployments.served_by(updated.id), name, version)


def _warn_still_served(routes: list[ServingRoute], name: str, version: int) -> None:
    """Archiving is a label the gateway does not read: say who still serves the version."""
    if routes:
        serving = "; ".join(r.summary for r in routes)
        warn(
            f"{name} v{version} is archived but still served ({serving}): move the alias or "
            "edit the deployment to stop serving it"
        )


@app.command("protect")
def protect_alias(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Model name."),
    alias: str = typer.Argument(..., help="Alias to protect."),
    off: bool = typer.Option(False, "--off", help="Lift the protection instead."),
) -> None:
    """Protect an alias: from now on it moves only through an approved request."""
    from llmloop.services.pointers import MODEL_ALIAS

    state = get_state(ctx)
    state.container.governance.protect(MODEL_ALIAS, name, alias, not off, state.actor())
    say(f"model {name}: alias {alias} is {'no longer ' if off else ''}protected")


@app.command("init-base")
def init_base(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Model name to register the base under."),
    dataset: str = typer.Option(
        ..., "--dataset", help="Text to train the tokenizer and model on, as NAME or NAME@VERSION."
    ),
    pairs: list[str] = typer.Option(
        [],
        "--set",
        help="Model setting as key=value (steps, hidden_size, layers, heads, vocab_size, ...).",
    ),
    alias: str = typer.Option(
        "champion",
        "--alias",
        help="Alias to point at the new version ('' for none); `train --base NAME` uses champion.",
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Build a small Llama with a byte-level BPE tokenizer and a chat template, pre-train it
    briefly on a dataset version and register it (offline; for tests and the demo)."""
    from llmloop.cli.train import parse_settings

    state = get_state(ctx)
    data, ref = split_name_ref(dataset, "latest")
    version = state.container.training.init_base(
        data, name, state.actor(), version=ref, config=parse_settings(pairs, None)
    )
    moved = ""
    if alias:
        # As the pipeline's init_base step does: `train sft --base NAME` defaults to champion.
        try:
            state.container.models.set_alias(name, alias, version.version, state.actor())
            moved = f", alias {alias}"
        except ApprovalRequiredError:
            warn(f"alias {alias} of {name} is protected: request an approval to move it")
    if as_json:
        print_json(version)
    else:
        say(f"registered {version.model_name} v{version.version}{moved} (run {version.run_id})")


@app.command("export")
def export_version(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Model name."),
    kind: str = typer.Option(..., "--kind", help="int8 (CPU serving) or gguf (llama.cpp)."),
    ref: str = typer.Option("champion", "--ref", help="Version number or alias."),
    eval_dataset: str = typer.Option(
        ...,
        "--eval",
        help="Dataset whose text measures the quality delta, as NAME or NAME@VERSION.",
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Quantise or export a version; the perplexity change is recorded on the new version."""
    from llmloop.services.training_support import rows_to_texts

    state = get_state(ctx)
    container = state.container
    data, data_ref = split_name_ref(eval_dataset, "latest")
    rows = container.datasets.read_rows(container.datasets.get_version(data, data_ref))
    version = container.training.export(
        name,
        int(ref) if ref.isascii() and ref.isdigit() else ref,
        kind,
        state.actor(),
        rows_to_texts(rows)[:64],
    )
    if as_json:
        print_json(version)
    else:
        delta = version.metrics.get("quality_delta", 0.0)
        say(
            f"registered {version.model_name} v{version.version} ({kind}); "
            f"perplexity change {delta:+.2%}"
        )
