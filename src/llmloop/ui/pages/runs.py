"""Dashboard pages of runs: the list (filtered, paged), one run in full, and runs side by side.

A run's page gathers what the run service stores (params, metric series, artifacts), its lineage
neighbours from governance (inputs by name, parent and child runs, model versions it produced,
gate runs that judged it) and, for an eval run, the suite report evaluation stored with it. The
one action closes a run left ``running`` (a crashed job) as finished, failed or killed.
Not here: creating runs or logging metrics (training, evaluation and the SDK do that).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from datetime import UTC, datetime
from typing import Annotated, Any, get_args
from urllib.parse import quote, urlencode

from fastapi import Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup

from llmloop.core.governance import LineageNode
from llmloop.core.runs import TERMINAL_STATUSES, RunKind, RunPublic, RunStatus
from llmloop.errors import InvalidInputError, LlmloopError, NotFoundError
from llmloop.services.container import Container
from llmloop.ui.charts import bar_chart, line_chart
from llmloop.ui.web import (
    ActorPage,
    Base,
    ContainerPage,
    FormGuard,
    Limit,
    page_router,
    redirect,
    render,
    svg,
)

router = page_router()
KINDS: tuple[str, ...] = get_args(RunKind)
STATUSES: tuple[str, ...] = get_args(RunStatus)
COMPARE_MIN, COMPARE_MAX = 2, 8
MAX_CHARTS, MAX_CASES, MAX_CHILDREN, MAX_RELATED, MAX_POINTS = 16, 200, 200, 50, 500
REPORT_ARTIFACT = "eval_report.json"  # the name services/evaluation.py stores the report under
# Words in a metric key that mean smaller is better; any other metric counts as higher-is-better.
_LOWER = frozenset(
    ("loss", "nll", "perplexity", "ppl", "bpb", "error", "errors", "err", "latency", "cost",
     "wer", "cer", "toxicity", "toxic", "attack", "asr", "failed", "failures", "time", "seconds",
     "s", "ms", "memory", "mb", "hallucination", "duration")
)  # fmt: skip
# Words of a metric key that is a setting or a count, not a score: no value of it is "best".
_NEUTRAL = frozenset(("lr", "learning", "step", "steps", "epoch", "epochs", "tokens", "samples"))
_LINKS = {
    "dataset_version": "/datasets/{name}/versions/{version}",
    "model_version": "/models/{name}/versions/{version}",
    "prompt_version": "/prompts/{name}",
}


def _words(key: str) -> set[str]:
    return set(re.split(r"[^a-z0-9]+", key.lower()))


def lower_is_better(key: str) -> bool:
    """Whether the smallest value of metric ``key`` is the best (losses, latencies, costs ...)."""
    return bool(_words(key) & _LOWER)


def _scored(key: str) -> bool:
    """Whether metric ``key`` has a best value (``lr`` or ``train_tokens`` has none)."""
    words = _words(key)
    return bool(words & _LOWER) or not words & _NEUTRAL


def _choice(field: str, value: str, choices: tuple[str, ...]) -> str | None:
    if value and value not in choices:
        raise InvalidInputError(f"{field} must be one of {', '.join(choices)}, not '{value}'")
    return value or None


def _duration(run: RunPublic, now: datetime) -> str:
    start = run.created_at if run.created_at.tzinfo else run.created_at.replace(tzinfo=UTC)
    end = run.ended_at or now
    seconds = max(0.0, ((end if end.tzinfo else end.replace(tzinfo=UTC)) - start).total_seconds())
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, hours = int(seconds // 60), int(seconds // 3600)
    if hours == 0:
        return f"{minutes} min {int(seconds % 60):02d} s"
    return f"{hours} h {minutes % 60:02d} min" if hours < 48 else f"{hours // 24} d {hours % 24} h"


def _text(value: Any) -> str:
    """A param value as one line: strings as they are, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)


def _flatten(params: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested param dicts as dotted keys, so two runs compare key by key."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = _text(value)
    return flat


def _columns(runs: list[RunPublic]) -> tuple[list[str], list[str]]:
    """A few param and metric keys worth a column: params that vary first, then the commonest."""
    scalar = Counter(
        k for r in runs for k, v in r.params.items() if isinstance(v, str | int | float | bool)
    )
    distinct = {k: len({_text(r.params.get(k)) for r in runs}) for k in scalar}
    params = sorted(scalar, key=lambda k: (distinct[k] < 2, -scalar[k], k))[:3]
    metrics = Counter(k for r in runs for k in r.latest_metrics)
    return params, sorted(metrics, key=lambda k: (-metrics[k], k))[:3]


def _table(runs: list[RunPublic]) -> dict[str, Any]:
    """What ``runs/_table.html`` needs to draw rows of runs."""
    now = datetime.now(UTC)
    params, metrics = _columns(runs)
    return {
        "runs": runs,
        "param_cols": params,
        "metric_cols": metrics,
        "durations": {r.id: _duration(r, now) for r in runs},
        "cells": {r.id: {k: _text(r.params[k]) for k in params if k in r.params} for r in runs},
    }


def _url(base: str, *parts: str, **query: str) -> str:
    path = base + "".join(f"/{quote(p, safe='')}" for p in parts)
    query = {k: v for k, v in query.items() if v}
    return f"{path}?{urlencode(query)}" if query else path


@router.get("/runs")
def run_list(
    request: Request,
    actor: ActorPage,
    c: ContainerPage,
    base: Base,
    kind: str = "",
    status: str = "",
    parent: str = "",
    limit: Limit = 50,
    offset: int = Query(0, ge=0, le=10_000_000),
) -> HTMLResponse:
    wanted = _choice("kind", kind, KINDS), _choice("status", status, STATUSES)
    runs = c.runs.list(*wanted, parent.strip() or None, limit, offset)
    filters = {"kind": kind, "status": status, "parent": parent.strip()}
    return render(
        request,
        "runs/list.html",
        section="runs",
        kinds=KINDS,
        statuses=STATUSES,
        filters=filters,
        filtered=any(filters.values()),
        limit=limit,
        offset=offset,
        base=_url(base, "runs", **filters),
        compare_max=COMPARE_MAX,
        table=_table(runs),
    )


def _labels(runs: list[RunPublic]) -> list[str]:
    """Chart and column labels: the run's name, with its id's end where names repeat."""
    names = Counter(r.name for r in runs)
    return [
        r.id if not r.name else r.name if names[r.name] == 1 else f"{r.name} ({r.id[-6:]})"
        for r in runs
    ]


def _chart_label(label: str, n: int = 24) -> str:
    """A label that fits a bar chart's margin, keeping the end (where the id tells runs apart)."""
    return label if len(label) <= n else f"{label[: n // 2 - 2]}…{label[-(n // 2 + 1) :]}"


def _compare_params(runs: list[RunPublic]) -> list[tuple[str, list[str], bool]]:
    flat = [_flatten(r.params) for r in runs]
    keys = sorted({k for f in flat for k in f})
    rows = [(k, [f.get(k, "") for f in flat]) for k in keys]
    return [(k, values, len(set(values)) > 1) for k, values in rows]


def _compare_metrics(runs: list[RunPublic]) -> list[dict[str, Any]]:
    """Per metric key: each run's latest value, which is better (None: neither) and the best."""
    rows = []
    for key in sorted({k for r in runs for k in r.latest_metrics}):
        values = [r.latest_metrics.get(key) for r in runs]
        present = [v for v in values if v is not None]
        lower = lower_is_better(key) if _scored(key) else None
        best = (min if lower else max)(present)
        marked = lower is not None and len(set(present)) > 1
        marks = [marked and v == best for v in values]
        rows.append({"key": key, "values": values, "lower": lower, "best": marks})
    return rows


def _compare_charts(
    c: Container, runs: list[RunPublic], labels: list[str]
) -> list[tuple[str, Markup]]:
    """One chart per metric key that two or more runs logged: lines over steps, else bars."""
    series = [c.runs.metric_series(r.id) for r in runs]
    shared = Counter(k for s in series for k in s)
    charts = []
    for key in sorted(k for k, n in shared.items() if n > 1)[:MAX_CHARTS]:
        logged = [(label, s[key]) for label, s in zip(labels, series, strict=True) if key in s]
        if any(len(points) > 1 for _, points in logged):
            lines = [(label, _points(pts)) for label, pts in logged]
            charts.append((key, svg(line_chart(lines, title=key))))
        else:
            bars = [(_chart_label(label), pts[-1]["value"]) for label, pts in logged]
            charts.append((key, svg(bar_chart(bars, title=key))))
    return charts


def _points(points: list[dict[str, Any]]) -> list[tuple[int, float]]:
    """(step, value) pairs, evenly thinned to about MAX_POINTS: a long run's chart stays light."""
    stride = max(1, math.ceil(len(points) / MAX_POINTS))
    kept = points[::stride] + ([points[-1]] if (len(points) - 1) % stride else [])
    return [(p["step"], p["value"]) for p in kept]


@router.get("/runs/compare")
def run_compare(
    request: Request, actor: ActorPage, c: ContainerPage, ids: list[str] = Query([])
) -> HTMLResponse:
    # Repeated ``ids`` (the list's checkboxes) or one comma-separated value; repeats count once.
    wanted = list(dict.fromkeys(i.strip() for raw in ids for i in raw.split(",") if i.strip()))
    problem, status = "", 200
    runs: list[RunPublic] = []
    if not COMPARE_MIN <= len(wanted) <= COMPARE_MAX:
        problem = (
            f"Pick between {COMPARE_MIN} and {COMPARE_MAX} runs to compare "
            f"(you picked {len(wanted)}): tick them on the runs list and press Compare."
        )
        status = 422
    else:
        try:
            runs = [c.runs.get(i) for i in wanted]
        except NotFoundError as exc:
            problem, status = f"{exc.detail}. Pick runs that exist on the runs list.", 404
    if problem:  # a page of its own, not the bare error page: it leads back to the list
        return render(
            request, "runs/pick.html", status, section="runs", problem=problem, ids=wanted
        )
    labels = _labels(runs)
    params = _compare_params(runs)
    return render(
        request,
        "runs/compare.html",
        section="runs",
        runs=runs,
        labels=labels,
        differing=[p for p in params if p[2]],
        same=[p for p in params if not p[2]],
        metrics=_compare_metrics(runs),
        charts=_compare_charts(c, runs, labels),
        durations=[_duration(r, datetime.now(UTC)) for r in runs],
    )


def _node_url(base: str, node: LineageNode) -> str | None:
    """The dashboard page of a lineage node, when its label says enough to build the link."""
    if node.type in ("run", "trace"):
        return _url(base, f"{node.type}s", node.id)
    name, sep, version = node.label.rpartition(":v")
    if (
        node.type in _LINKS
        and sep
        and version.isascii()
        and version.isdigit()
        and name
        and name != "?"
    ):
        return base + _LINKS[node.type].format(name=quote(name, safe=""), version=version)
    return None


def _neighbours(c: Container, base: str, run: RunPublic) -> dict[str, list[dict[str, Any]]]:
    """Inputs, outputs and related runs, one lineage step from ``run`` in each direction."""
    graph = c.governance.lineage(run.id, "both", depth=1)
    nodes = {n.id: n for n in graph.nodes}
    found: dict[str, list[dict[str, Any]]] = {"inputs": [], "outputs": [], "related": []}
    for edge in graph.edges:
        upstream = edge.target == run.id
        other = nodes.get(edge.source if upstream else edge.target)
        if other is None or edge.relation == "child" or other.id == run.id:
            continue  # parent and trials have their own panels
        item = {"node": other, "relation": edge.relation, "url": _node_url(base, other)}
        if other.type == "run":
            if len(found["related"]) < MAX_RELATED:
                item |= {"run": c.runs.get(other.id), "upstream": upstream}
                found["related"].append(item)
        else:
            found["inputs" if upstream else "outputs"].append(item)
    return found


def _report(c: Container, run: RunPublic) -> tuple[Any, str]:
    """The stored suite report of an eval run and an empty message, or None and why not."""
    if run.kind != "eval" or not any(a.name == REPORT_ARTIFACT for a in run.artifacts):
        return None, ""
    try:
        return c.evaluation.report(run.id), ""
    except (LlmloopError, OSError, ValueError) as exc:
        return None, getattr(exc, "detail", None) or str(exc)


def _gate_rules(c: Container, run: RunPublic) -> list[Any]:
    """Each rule's outcome on a gate run that stored it (older gate runs kept only the verdict)."""
    if "gate" not in run.tags:
        return []
    try:
        return list(c.evaluation.gate_result(run.id).rules)
    except (LlmloopError, OSError, ValueError):
        return []


def _cases(report: Any) -> dict[str, Any]:
    """Per-case rows of a suite report: output, usage and every evaluator's score for it."""
    scores: dict[str, dict[str, float]] = {}
    labels: dict[str, str] = {}
    for alias, result in report.results.items():
        for sample in result.samples:
            for key, value in sample.scores.items():
                column = f"{alias}.{key}"
                labels[column] = key if key == alias else column  # not "exact_match.exact_match"
                scores.setdefault(sample.sample_id, {})[column] = value
    columns = [(k, labels[k]) for k in sorted(labels)[:6]]
    rows = [{"out": o, "scores": scores.get(o.id, {})} for o in report.outputs[:MAX_CASES]]
    return {"cases": rows, "score_keys": columns, "n_cases": len(report.outputs)}


def _trial_charts(children: list[RunPublic], keys: list[str]) -> list[tuple[str, Markup]]:
    """Child runs (HPO trials) side by side on their commonest metrics, oldest first."""
    charts = []
    for key in keys:
        bars = [
            (_chart_label(r.name or r.id), r.latest_metrics[key])
            for r in reversed(children)
            if key in r.latest_metrics
        ]
        if len(bars) > 1:
            charts.append((key, svg(bar_chart(bars[:40], title=key))))
    return charts


def _metric_charts(series: dict[str, list[dict[str, Any]]]) -> list[tuple[str, Markup]]:
    """One line chart per metric logged at two or more steps (single values are in the table)."""
    keys = sorted(k for k, points in series.items() if len(points) > 1)[:MAX_CHARTS]
    return [(k, svg(line_chart([(k, _points(series[k]))], title=k))) for k in keys]


@router.get("/runs/{run_id}")
def run_detail(
    request: Request, actor: ActorPage, c: ContainerPage, base: Base, run_id: str
) -> HTMLResponse:
    run = c.runs.get(run_id)
    series = c.runs.metric_series(run_id)
    children = c.runs.list(parent_id=run.id, limit=MAX_CHILDREN)
    report, report_error = _report(c, run)
    found = _neighbours(c, base, run)
    trials = _table(children)
    gates = [
        item
        for item in found["related"]
        if not item["upstream"] and item["relation"] in ("candidate_eval", "baseline_eval")
    ]
    return render(
        request,
        "runs/detail.html",
        section="runs",
        run=run,
        duration=_duration(run, datetime.now(UTC)),
        parent=c.runs.get(run.parent_id) if run.parent_id else None,
        steps={k: len(points) for k, points in series.items()},
        charts=_metric_charts(series),
        children=trials,
        trial_charts=_trial_charts(children, trials["metric_cols"][:2]),
        more_children=len(children) >= MAX_CHILDREN,
        report=report,
        report_error=report_error,
        cases=_cases(report) if report is not None else None,
        gates=gates,
        gate_rules=_gate_rules(c, run),
        can_edit=actor.role in ("editor", "admin"),
        terminal=sorted(TERMINAL_STATUSES),
        inputs=found["inputs"],
        outputs=found["outputs"],
        related=found["related"],
    )


@router.post("/runs/{run_id}/finish", dependencies=[FormGuard])
def finish_run(
    request: Request,
    actor: ActorPage,
    c: ContainerPage,
    base: Base,
    run_id: str,
    status: Annotated[str, Form()] = "",
) -> Response:
    """Close a run still marked running (its job died) with the status the user picks."""
    actor.require("editor")
    run = c.runs.get(run_id)
    back = _url(base, "runs", run.id)
    if status not in TERMINAL_STATUSES:
        choices = ", ".join(sorted(TERMINAL_STATUSES))
        message = f"Pick a status to close the run with ({choices})."
        return redirect(request, back, message, error=True)
    try:
        c.runs.finish(run.id, status, actor)
    except LlmloopError as exc:
        return redirect(request, back, exc.detail, error=True)
    return redirect(request, back, f"Run marked {status}.")
