"""``llmloop data``: ingest files as dataset versions, profile them (HTML + JSON), clean them with
a recipe, split them, diff two versions and augment them; every result is a new version whose
lineage names its parent and the recipe.
"""

from __future__ import annotations

from pathlib import Path

import typer

from llmloop.cli.context import get_state
from llmloop.cli.options import split_name_ref
from llmloop.cli.output import print_json, print_table, say

app = typer.Typer(
    help="Data preparation: ingest, profile, clean, split, diff, augment.", no_args_is_help=True
)
JSON_OPTION = typer.Option(False, "--json", help="Print JSON.")


@app.command("ingest")
def ingest(
    ctx: typer.Context,
    source: str = typer.Argument(
        ..., help="File or folder: JSONL, CSV, Parquet, HF save_to_disk; any fsspec URL."
    ),
    dataset: str = typer.Option(..., "--dataset", help="Dataset to add the version to."),
    fmt: str = typer.Option("auto", "--format", help="auto, jsonl, csv, parquet or hf."),
    on_error: str = typer.Option(
        "fail",
        "--on-error",
        help="fail: refuse the whole ingest on a bad record; skip: ingest the rest and report.",
    ),
    mapping: Path | None = typer.Option(None, "--mapping", help="YAML file of column renames."),
    encoding: str = typer.Option("utf-8", "--encoding", help="Text encoding of the file."),
    fallback_encoding: str | None = typer.Option(
        None, "--fallback-encoding", help="Encoding for lines that fail (e.g. cp1252)."
    ),
    shape: str | None = typer.Option(None, "--shape", help="chat, instruction, preference, text."),
    delimiter: str | None = typer.Option(
        None, "--delimiter", help="CSV separator (default: ',', ';', tab or '|' from the header)."
    ),
    description: str = typer.Option("", "--description", help="What this version is."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Ingest a file as a new dataset version (streamed; never loaded whole)."""
    from llmloop.data.shapes import load_mapping

    state = get_state(ctx)
    options = {
        "format": fmt,
        "on_error": on_error,
        "encoding": encoding,
        "fallback_encoding": fallback_encoding,
        "delimiter": delimiter,
        "shape": shape,
        "mapping": load_mapping(str(mapping)) if mapping else {},
    }
    version, report = state.container.data.ingest(
        source, dataset, state.actor(), options, description
    )
    if as_json:
        print_json(
            {
                "version": version.model_dump(mode="json", by_alias=True),
                "report": report.model_dump(mode="json"),
            }
        )
        return
    say(
        f"{version.dataset_name} v{version.version}: {version.row_count} rows, "
        f"shape {version.shape}, sha256 {version.content_hash[:12]}…"
    )
    if report.rows_skipped:
        say(f"skipped {report.rows_skipped} bad records:")
        for err in report.errors[:10]:
            say(f"  line {err.line}: {err.message}")


@app.command("profile")
def profile(
    ctx: typer.Context,
    dataset: str = typer.Argument(..., help="Dataset as NAME or NAME@VERSION."),
    out: Path | None = typer.Option(None, "--out", help="Write the HTML report here."),
    tokenizer: str | None = typer.Option(
        None, "--tokenizer", help="Local tokenizer path for token lengths."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Exploratory analysis: types, lengths, languages, duplicates, PII, toxicity, outliers."""
    state = get_state(ctx)
    name, ref = split_name_ref(dataset, "latest")
    config = {"tokenizer": tokenizer} if tokenizer else None
    result, html = state.container.data.profile(name, state.actor(), ref, config)
    if out is not None:
        out.write_text(html, encoding="utf-8")
    if as_json:
        print_json(result)
        return
    rows = [[kind, f.count, f"{f.rate:.1%}"] for kind, f in result.findings.items()]
    print_table(["finding", "rows", "rate"], rows, title=f"{name}: {result.row_count} rows")
    if out is not None:
        say(f"report written to {out}")


@app.command("clean")
def clean(
    ctx: typer.Context,
    dataset: str = typer.Argument(..., help="Dataset as NAME or NAME@VERSION."),
    recipe: Path = typer.Option(..., "--recipe", help="Recipe YAML file.", exists=True),
    out_dataset: str | None = typer.Option(None, "--to", help="Write to another dataset."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Apply a cleaning recipe; the report says what each step removed or changed."""
    state = get_state(ctx)
    name, ref = split_name_ref(dataset, "latest")
    version, report = state.container.data.clean(name, recipe, state.actor(), ref, out_dataset)
    if as_json:
        print_json(
            {
                "version": version.model_dump(mode="json", by_alias=True),
                "report": report.model_dump(mode="json"),
            }
        )
        return
    rows = [[s.index, s.step, s.rows_in, s.rows_removed, s.rows_changed] for s in report.steps]
    print_table(["#", "step", "in", "removed", "changed"], rows, title=report.recipe)
    say(f"{version.dataset_name} v{version.version}: {report.rows_in} -> {report.rows_out} rows")


@app.command("split")
def split(
    ctx: typer.Context,
    dataset: str = typer.Argument(..., help="Dataset as NAME or NAME@VERSION."),
    ratio: list[str] = typer.Option(
        [], "--ratio", help="name=share (repeatable); default train=0.8 validation=0.1 test=0.1."
    ),
    seed: int = typer.Option(0, "--seed", help="Shuffle seed."),
    stratify: str | None = typer.Option(None, "--stratify", help="Field to stratify by."),
    group_by: str | None = typer.Option(
        None, "--group-by", help="Field naming a group (e.g. conversation id) kept in one split."
    ),
    remove_leaks: bool = typer.Option(False, "--remove-leaks", help="Drop leaking rows."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Split into <dataset>-<split> datasets with a leakage check across splits."""
    from llmloop.cli.train import parse_settings

    state = get_state(ctx)
    name, ref = split_name_ref(dataset, "latest")
    config: dict[str, object] = {
        "seed": seed,
        "stratify_by": stratify,
        "group_by": group_by,
        "remove_leaks": remove_leaks,
    }
    if ratio:
        config["ratios"] = parse_settings(ratio, None)
    made, report = state.container.data.split(name, state.actor(), ref, config)
    if as_json:
        print_json(
            {
                "versions": {k: v.model_dump(mode="json", by_alias=True) for k, v in made.items()},
                "report": report,
            }
        )
        return
    for split_name, version in made.items():
        say(f"{split_name}: {version.dataset_name} v{version.version} ({version.row_count} rows)")
    leak = report["leakage"]
    say(f"leakage: {leak['exact']} exact, {leak['near']} near duplicates across splits")


@app.command("diff")
def diff(
    ctx: typer.Context,
    dataset: str = typer.Argument(..., help="Dataset name."),
    a: str = typer.Argument(..., help="Older version."),
    b: str = typer.Argument(..., help="Newer version."),
    key: str | None = typer.Option(None, "--key", help="Field identifying a row."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Rows added, removed and changed between two versions."""
    result = get_state(ctx).container.data.diff(dataset, a, b, key)
    if as_json:
        print_json(result)
        return
    say(
        f"added {result.added}, removed {result.removed}, changed {result.changed}, "
        f"unchanged {result.unchanged}"
    )


@app.command("augment")
def augment(
    ctx: typer.Context,
    dataset: str = typer.Argument(..., help="Dataset to add the augmented version to."),
    templates: Path = typer.Option(
        ..., "--templates", help="Template expansion YAML.", exists=True
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Expand templates over variable lists into new rows (a recorded step)."""
    import yaml

    state = get_state(ctx)
    version, report = state.container.data.augment(
        dataset, state.actor(), templates=yaml.safe_load(templates.read_text())
    )
    if as_json:
        print_json({"version": version.model_dump(mode="json", by_alias=True), "report": report})
        return
    say(f"{version.dataset_name} v{version.version}: {version.row_count} rows")
