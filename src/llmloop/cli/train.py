"""``llmloop train``: fine-tune a registry model version on a dataset version (SFT with LoRA or
full weights, DPO on preference rows) or search hyperparameters with Optuna.

Each command is one tracked run whose result is a new model version with lineage. Options are
given as ``key=value`` (``--set learning_rate=1e-4 --set lora.r=16``) or a YAML/JSON file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
import yaml

from llmloop.cli.context import get_state
from llmloop.cli.options import split_name_ref
from llmloop.cli.output import print_json, say
from llmloop.errors import ConfigError

app = typer.Typer(
    help="Fine-tune and tune models; every run registers a version.", no_args_is_help=True
)


def parse_settings(pairs: list[str], file: Path | None) -> dict[str, Any]:
    """Merge a YAML/JSON file with ``key=value`` pairs (dotted keys nest, values are YAML)."""
    data: dict[str, Any] = {}
    if file is not None:
        try:
            loaded = yaml.safe_load(file.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{file}: {exc}")
        if not isinstance(loaded, dict):
            raise ConfigError(f"{file}: expected a mapping of settings")
        data.update(loaded)
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"expected key=value, got {pair!r}")
        target = data
        parts = key.split(".")
        for part in parts[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ConfigError(f"{key}: '{part}' is not a mapping")
        target[parts[-1]] = yaml.safe_load(raw) if raw else ""
    return data


SET = typer.Option([], "--set", help="A setting as key=value (repeatable; dotted keys nest).")
CONFIG = typer.Option(None, "--config", help="YAML/JSON file of settings.", exists=True)


@app.command("sft")
def sft(
    ctx: typer.Context,
    base: str = typer.Option(..., "--base", help="Base model as NAME or NAME@REF (champion)."),
    dataset: str = typer.Option(..., "--dataset", help="Training data as NAME or NAME@VERSION."),
    out: str = typer.Option(..., "--out", help="Model name to register the result under."),
    eval_dataset: str | None = typer.Option(None, "--eval", help="Validation NAME[@VERSION]."),
    pairs: list[str] = SET,
    config: Path | None = CONFIG,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Supervised fine-tuning (LoRA by default; --set lora=null for full weights)."""
    _train(ctx, "sft", base, dataset, out, eval_dataset, parse_settings(pairs, config), as_json)


@app.command("dpo")
def dpo(
    ctx: typer.Context,
    base: str = typer.Option(..., "--base", help="Base model as NAME or NAME@REF (champion)."),
    dataset: str = typer.Option(..., "--dataset", help="prompt/chosen/rejected rows."),
    out: str = typer.Option(..., "--out", help="Model name to register the result under."),
    eval_dataset: str | None = typer.Option(None, "--eval", help="Validation NAME[@VERSION]."),
    pairs: list[str] = SET,
    config: Path | None = CONFIG,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Preference tuning (DPO) on prompt/chosen/rejected rows."""
    _train(ctx, "dpo", base, dataset, out, eval_dataset, parse_settings(pairs, config), as_json)


def _train(
    ctx: typer.Context,
    method: str,
    base: str,
    dataset: str,
    out: str,
    eval_dataset: str | None,
    settings: dict[str, Any],
    as_json: bool,
) -> None:
    state = get_state(ctx)
    base_name, base_ref = split_name_ref(base, "champion")
    data_name, data_ref = split_name_ref(dataset, "latest")
    eval_name, eval_ref = (
        split_name_ref(eval_dataset, "latest") if eval_dataset else (None, "latest")
    )
    version = state.container.training.finetune(
        base_name,
        data_name,
        out,
        state.actor(),
        base_ref=base_ref,
        version=data_ref,
        eval_dataset=eval_name,
        eval_version=eval_ref,
        config=settings,
        method=method,
    )
    if as_json:
        print_json(version)
        return
    say(
        f"registered {version.model_name} v{version.version} ({version.format}) from run "
        f"{version.run_id}"
    )
    say(json.dumps({k: round(v, 4) for k, v in version.metrics.items()}))


@app.command("hpo")
def hpo(
    ctx: typer.Context,
    base: str = typer.Option(..., "--base", help="Base model as NAME or NAME@REF."),
    dataset: str = typer.Option(..., "--dataset", help="Training dataset name."),
    eval_dataset: str = typer.Option(..., "--eval", help="Validation dataset name."),
    out: str = typer.Option(..., "--out", help="Model name for the best trial."),
    search: list[str] = typer.Option(
        [],
        "--search",
        help="Study setting (n_trials=12, pruner=successive_halving, max_train_tokens=200000, "
        "cost_metric=wall_time_s, ...).",
    ),
    space: list[str] = typer.Option([], "--space", help="Search space setting as key=value."),
    pairs: list[str] = SET,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Optuna search (TPE + pruning; trials shared through the llmloop database)."""
    state = get_state(ctx)
    base_name, base_ref = split_name_ref(base, "champion")
    version, summary = state.container.training.tune(
        base_name,
        dataset,
        eval_dataset,
        out,
        state.actor(),
        base_ref=base_ref,
        search=parse_settings(search, None),
        space=parse_settings(space, None),
        config=parse_settings(pairs, None),
    )
    if as_json:
        print_json({"version": version.model_dump(mode="json"), "study": summary})
        return
    say(f"best params {summary['best_params']} -> {version.model_name} v{version.version}")
    say(f"{len(summary['trials'])} trials, {summary['total_steps']} training steps in all")
