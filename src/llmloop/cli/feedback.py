"""``llmloop feedback``: attach thumbs, scores, comments, corrections and preferences to a trace,
and list what a trace received. One kind of feedback per ``add``, except that a rating may
bring its correction (``--thumbs down --correction TEXT``: two records, as curation pairs them).
"""

from __future__ import annotations

import re

import typer

from llmloop.cli.context import get_state
from llmloop.cli.output import print_json, print_table, say
from llmloop.core.feedback import FeedbackCreate
from llmloop.errors import InvalidInputError

app = typer.Typer(help="Feedback on traces (human in the loop).", no_args_is_help=True)
JSON_OPTION = typer.Option(False, "--json", help="Print JSON.")
_SCALE = re.compile(r"^(-?\d+(?:\.\d+)?)-(-?\d+(?:\.\d+)?)$")


def parse_scale(text: str) -> tuple[float, float]:
    """``'1-5'`` → (1.0, 5.0)."""
    found = _SCALE.match(text.strip())
    if not found:
        raise InvalidInputError(f"--scale must look like 1-5, not {text!r}")
    return float(found.group(1)), float(found.group(2))


def build_feedback(
    thumbs: str | None, score: float | None, scale: str, name: str, comment: str | None,
    correction: str | None, prefer: str | None, alternative: str | None,
) -> list[FeedbackCreate]:  # fmt: skip
    """The FeedbackCreate the options describe: one kind, or a rating (--thumbs or --score)
    with the --correction that goes with it (a thumbs down and its fix make a DPO pair)."""
    kinds = [k for k, v in (("thumbs", thumbs), ("score", score), ("correction", correction),
                            ("preference", prefer)) if v is not None]  # fmt: skip
    if not kinds and comment:
        kinds = ["comment"]
    rated_fix = kinds in (["thumbs", "correction"], ["score", "correction"])
    if len(kinds) != 1 and not rated_fix:
        raise InvalidInputError(
            "give exactly one of --thumbs, --score, --correction, --prefer (or only --comment);"
            " --correction may go with --thumbs or --score"
        )
    notes = [comment or ""] + [""] * (len(kinds) - 1)  # the comment goes with the first only
    return [_one_feedback(kind, thumbs, score, scale, name, note, correction, prefer, alternative)
            for kind, note in zip(kinds, notes, strict=True)]  # fmt: skip


def _one_feedback(
    kind: str, thumbs: str | None, score: float | None, scale: str, name: str, note: str,
    correction: str | None, prefer: str | None, alternative: str | None,
) -> FeedbackCreate:  # fmt: skip
    if kind == "thumbs":
        if thumbs not in ("up", "down"):
            raise InvalidInputError("--thumbs must be up or down")
        return FeedbackCreate(kind="thumbs", value=1.0 if thumbs == "up" else 0.0, comment=note)
    if kind == "score":
        lo, hi = parse_scale(scale)
        fields = {"kind": "score", "name": name, "value": score, "scale_min": lo,
                  "scale_max": hi, "comment": note}  # fmt: skip
        return FeedbackCreate.model_validate(fields)
    if kind == "correction":
        return FeedbackCreate(kind="correction", correction=correction, comment=note)
    if kind == "comment":
        return FeedbackCreate(kind="comment", comment=note)
    return FeedbackCreate.model_validate({"kind": "preference", "preferred": prefer,
                                          "alternative": alternative, "comment": note})  # fmt: skip


@app.command("add")
def add(
    ctx: typer.Context,
    trace_id: str = typer.Argument(..., metavar="TRACE_ID", help="The trace (tr_…)."),
    thumbs: str | None = typer.Option(None, "--thumbs", help="up or down."),
    score: float | None = typer.Option(None, "--score", help="A score on --scale."),
    scale: str = typer.Option("1-5", "--scale", help="Scale of --score, e.g. 1-5."),
    name: str = typer.Option("score", "--name", help="Name of the scale (helpfulness, …)."),
    comment: str | None = typer.Option(None, "--comment", help="A comment (alone or as a note)."),
    correction: str | None = typer.Option(None, "--correction", help="The corrected answer."),
    prefer: str | None = typer.Option(None, "--prefer", help="a (the trace's answer) or b."),
    alternative: str | None = typer.Option(None, "--alternative", help="Answer b for --prefer."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Attach one piece of feedback to a trace (a rating and its --correction make two; --json
    then prints a list of both)."""
    specs = build_feedback(thumbs, score, scale, name, comment, correction, prefer, alternative)
    state = get_state(ctx)
    made = [state.container.feedback.add(trace_id, spec, state.actor()) for spec in specs]
    if as_json:
        print_json(made[0] if len(made) == 1 else made)
        return
    for item in made:
        say(item.id)


@app.command("list")
def list_feedback(
    ctx: typer.Context,
    trace_id: str | None = typer.Argument(None, metavar="[TRACE_ID]", help="Only this trace."),
    limit: int = typer.Option(100, "--limit", min=1, help="At most this many (all traces)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Feedback on one trace, or the newest on all traces."""
    items = get_state(ctx).container.feedback.list(trace_id, limit)
    if as_json:
        print_json(items)
        return
    rows = ([f.id, f.trace_id, f.kind, f.name, f.value, f.comment or f.correction or f.preferred,
             f.user, f.created_at] for f in items)  # fmt: skip
    print_table(["id", "trace", "kind", "name", "value", "text", "user", "at"], rows, "feedback")
