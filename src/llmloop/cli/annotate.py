"""``llmloop annotate``: annotation queues from the terminal: create one from a trace filter
(or a dataset version), take the next item, label it, skip it, see the counts."""

from __future__ import annotations

import typer

from llmloop.cli.context import get_state
from llmloop.cli.output import print_json, print_table, say, show_record
from llmloop.core.feedback import LabelSchema, LabelSubmit, QueueCreate, QueueFilter
from llmloop.core.monitoring import parse_since
from llmloop.errors import InvalidInputError

app = typer.Typer(help="Annotation queues: filter, assign, label, count.", no_args_is_help=True)
JSON_OPTION = typer.Option(False, "--json", help="Print JSON.")


def _schema(choices: str | None, range_: str | None, name: str, free_text: bool) -> LabelSchema:
    if (choices is None) == (range_ is None):
        raise InvalidInputError("give one of --choices a,b,c or --range 1-5")
    if choices is not None:
        picked = [c.strip() for c in choices.split(",") if c.strip()]
        return LabelSchema(kind="categorical", name=name, free_text=free_text, choices=picked)
    from llmloop.cli.feedback import parse_scale

    lo, hi = parse_scale(range_ or "")
    return LabelSchema(kind="numeric", name=name, min=lo, max=hi, free_text=free_text)


@app.command("create")
def create(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Queue name."),
    choices: str | None = typer.Option(None, "--choices", help="Categorical labels: a,b,c."),
    range_: str | None = typer.Option(None, "--range", help="Numeric labels: e.g. 1-5."),
    label_name: str = typer.Option("label", "--label-name", help="Feedback name of labels."),
    no_text: bool = typer.Option(False, "--no-text", help="Allow no free-text note."),
    deployment: str | None = typer.Option(None, "--deployment", help="Only this deployment."),
    since: str | None = typer.Option(None, "--since", help="Duration back (1d) or ISO time."),
    status: str | None = typer.Option(None, "--status", help="Trace status (ok, error)."),
    max_feedback: float | None = typer.Option(None, "--max-feedback", help="Mean ≤ (0..1)."),
    min_feedback: float | None = typer.Option(None, "--min-feedback", help="Mean ≥ (0..1)."),
    flagged: bool = typer.Option(False, "--flagged", help="Only traces guards flagged."),
    dataset: str | None = typer.Option(None, "--dataset", help="Label a dataset's rows instead."),
    version: int | None = typer.Option(None, "--version", help="Dataset version (latest)."),
    uncertainty: bool = typer.Option(False, "--uncertainty", help="Least certain items first."),
    limit: int = typer.Option(1000, "--limit", min=1, help="At most this many items."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create a queue and fill it from the filter."""
    flt = QueueFilter(deployment=deployment, since=parse_since(since) if since else None,
                      status=status, max_feedback=max_feedback, min_feedback=min_feedback,
                      flagged=True if flagged else None, dataset=dataset, version=version,
                      limit=limit)  # fmt: skip
    spec = QueueCreate(name=name, source="dataset" if dataset else "traces", filter=flt,
                       label_schema=_schema(choices, range_, label_name, not no_text),
                       ordering="uncertainty" if uncertainty else "created")  # fmt: skip
    state = get_state(ctx)
    queue = state.container.annotation.create_queue(spec, state.actor())
    if as_json:
        print_json(queue)
    else:
        say(f"{queue.name}: {queue.counts.pending} items")


@app.command("list")
def list_queues(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Queues with their counts."""
    queues = get_state(ctx).container.annotation.list_queues()
    if as_json:
        print_json(queues)
        return
    rows = ([q.name, q.source, q.ordering, q.counts.pending, q.counts.assigned,
             q.counts.labelled, q.counts.skipped] for q in queues)  # fmt: skip
    print_table(["name", "source", "ordering", "pending", "assigned", "labelled", "skipped"],
                rows, "annotation queues")  # fmt: skip


@app.command("next")
def next_item(
    ctx: typer.Context,
    queue: str = typer.Argument(..., help="Queue name."),
    lease: float = typer.Option(900.0, "--lease", min=1, help="Seconds the item is held."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Take the next item (yours again if you hold one); exit 0 with a note when done."""
    state = get_state(ctx)
    item = state.container.annotation.next_item(queue, state.actor().name, lease)
    if item is None:
        if as_json:
            print_json(None)
        else:
            say("(queue is done)")
        return
    show_record(item, as_json, title=f"item {item.id}")


@app.command("label")
def label(
    ctx: typer.Context,
    queue: str = typer.Argument(..., help="Queue name."),
    item_id: int = typer.Argument(..., help="Item id."),
    value: str = typer.Argument(..., help="A choice or a number."),
    text: str = typer.Option("", "--text", help="Free-text note."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Label an item (validated against the queue's schema)."""
    parsed: str | float = value
    try:
        parsed = float(value)
    except ValueError:
        pass
    state = get_state(ctx)
    schema = state.container.annotation.get_queue(queue).label_schema
    if schema.kind == "categorical":
        parsed = value
    item = state.container.annotation.label(queue, item_id, LabelSubmit(value=parsed, text=text),
                                            state.actor())  # fmt: skip
    if as_json:
        print_json(item)
    else:
        say(f"labelled {item.id}")


@app.command("skip")
def skip(
    ctx: typer.Context, queue: str = typer.Argument(...), item_id: int = typer.Argument(...)
) -> None:
    """Skip an item."""
    state = get_state(ctx)
    state.container.annotation.skip(queue, item_id, state.actor())
    say(f"skipped {item_id}")


@app.command("counts")
def counts(
    ctx: typer.Context, queue: str = typer.Argument(...), as_json: bool = JSON_OPTION
) -> None:
    """Pending, assigned, labelled and skipped items of a queue."""
    found = get_state(ctx).container.annotation.counts(queue)
    show_record(found, as_json, title=queue)
