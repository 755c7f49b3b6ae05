"""The Ray Tune backend of ``run_hpo``: the same search space and trials, run by Ray.

Ray Tune samples with ``OptunaSearch`` (TPE) and stops weak trials early with the ASHA
scheduler, fed by a transformers callback that calls ``tune.report`` at every evaluation. Ray
runs on the cluster ``ray.init`` finds: a local one started here when none is running (set
``RAY_ADDRESS`` at the edge to join a cluster). Each trial trains on one CPU or GPU.
It needs the ``ray`` extra (``pip install 'llmloop[ray]'``); it does not do multi-objective search
(use the Optuna backend) and returns the same :class:`~llmloop.trainers.hpo.HPOResult`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llmloop.errors import InvalidInputError, require_extra
from llmloop.trainers.base import NullTracker, Tracker
from llmloop.trainers.hpo import (
    FloatRange,
    HPOConfig,
    HPOResult,
    SearchSpace,
    TrialRecord,
    apply_params,
)
from llmloop.trainers.sft import SFTConfig, run_sft

__all__ = ["run_ray_search"]


def _param_space(space: SearchSpace) -> dict[str, Any]:
    from ray import tune

    params: dict[str, Any] = {name: tune.choice(c) for name, c in space.choices().items()}
    if isinstance(space.learning_rate, FloatRange):
        lr = space.learning_rate
        sample = tune.loguniform if lr.log else tune.uniform
        params["learning_rate"] = sample(lr.low, lr.high)
    return params


def _report_callback() -> Any:
    from ray import tune
    from transformers import TrainerCallback

    class RayReport(TrainerCallback):
        def on_evaluate(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            loss = (kw.get("metrics") or {}).get("eval_loss")
            if loss is not None:
                tokens = int(state.num_input_tokens_seen or 0)
                metrics = {"eval_loss": float(loss), "steps": state.global_step, "tokens": tokens}
                tune.report(metrics)

    return RayReport()


def run_ray_search(
    config: HPOConfig,
    space: SearchSpace,
    base_config: SFTConfig,
    base_model_dir: str | Path,
    train_rows: Sequence[dict[str, Any]],
    eval_rows: Sequence[dict[str, Any]],
    out_dir: str | Path,
    tracker: Tracker,
) -> HPOResult:
    """Run the search with Ray Tune; see the module docstring."""
    require_extra("ray", "ray", "the Ray Tune search backend")
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    out = Path(out_dir).resolve()
    train, evals, model_dir = list(train_rows), list(eval_rows), str(Path(base_model_dir).resolve())

    def trainable(params: dict[str, Any]) -> None:
        trial_config = apply_params(base_config, params)
        trial_out = out / f"trial-{tune.get_context().get_trial_id()}"
        result = run_sft(
            trial_config, model_dir, train, evals, trial_out, NullTracker(), [_report_callback()]
        )
        final = {"eval_loss": result.metrics["eval_loss"], "steps": result.steps}
        tune.report({**final, "tokens": result.train_tokens, "finished": True})

    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False)
    searcher = OptunaSearch(metric="eval_loss", mode="min", seed=config.seed)
    tuner = tune.Tuner(
        trainable,
        param_space=_param_space(space),
        tune_config=tune.TuneConfig(
            num_samples=config.n_trials,
            search_alg=searcher,
            scheduler=ASHAScheduler(metric="eval_loss", mode="min", time_attr="steps"),
            time_budget_s=config.timeout_s,
        ),
        run_config=tune.RunConfig(storage_path=str(out / "ray"), verbose=0),
    )
    grid = tuner.fit()
    records = []
    for number in range(len(grid)):
        result = grid[number]
        metrics, sampled = result.metrics or {}, result.config or {}
        complete = bool(metrics.get("finished")) and result.error is None
        loss = metrics.get("eval_loss")
        records.append(
            TrialRecord(
                number=number,
                params={k: sampled.get(k) for k in _param_space(space)},
                values=[float(loss)] if loss is not None else None,
                state="COMPLETE" if complete else ("FAIL" if result.error else "PRUNED"),
                duration_s=float(metrics.get("time_total_s", 0.0)),
                steps=int(metrics.get("steps", 0)),
                train_tokens=int(metrics.get("tokens", 0)),
            )
        )
        if loss is not None:
            tracker.log_metrics({"trial_eval_loss": float(loss)}, step=number)
    done = [r for r in records if r.state == "COMPLETE" and r.values]
    if not done:
        raise InvalidInputError("no Ray trial finished; see the trial records for failures")
    best = min(done, key=lambda r: r.values[0] if r.values else float("inf"))
    return HPOResult(
        study_name=grid.experiment_path,
        best_params=best.params,
        best_values=best.values or [],
        trials=records,
        total_steps=sum(r.steps for r in records),
    )
