"""Hyperparameter search over supervised fine-tuning: Optuna (TPE + pruning) or Ray Tune.

A declared :class:`SearchSpace` (learning rate, LoRA rank/alpha, epochs, batch size) is sampled
by Optuna's TPE sampler (or exhaustively by its grid sampler); each trial runs ``run_sft`` with a
callback that reports the eval loss at every evaluation so a median, successive-halving or
Hyperband pruner can stop hopeless trials early. Over a discrete space TPE often proposes a
configuration it already tried; such a repeat reuses the earlier trial's outcome instead of
training the same thing again (same parameters and seed train the same), costs nothing and does
not count toward ``n_trials``. ``max_train_tokens`` caps the compute of the whole search: a trial
is pruned before a step that would pass it and no trial starts once it is spent. In
multi-objective mode the study minimises eval loss *and* a cost
(training seconds or tokens) and keeps the Pareto front (Optuna cannot prune multi-objective
trials, so none are pruned). ``storage_url`` is any SQLAlchemy URL: trials then live in Optuna's
RDB storage and several workers can share one study. ``backend="ray"`` runs the same search with
Ray Tune (OptunaSearch + ASHA early stopping) on a local or connected Ray cluster.

It returns an :class:`HPOResult` with the best parameters and one :class:`TrialRecord` per trial
for the service to record as child runs; it does not record runs itself.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llmloop.errors import ConfigError, InvalidInputError
from llmloop.trainers.base import LoraSettings, NullTracker, Tracker
from llmloop.trainers.sft import SFTConfig, run_sft

__all__ = [
    "FloatRange",
    "HPOConfig",
    "HPOResult",
    "SearchSpace",
    "TrialRecord",
    "default_search_space",
    "run_hpo",
]

TrialTrackerFactory = Callable[[int, dict[str, Any]], Tracker]


class FloatRange(BaseModel):
    """A continuous range to sample from."""

    model_config = ConfigDict(extra="forbid")

    low: float = Field(gt=0, description="Smallest value.")
    high: float = Field(gt=0, description="Largest value.")
    log: bool = Field(True, description="Sample uniformly in log space.")

    @model_validator(mode="after")
    def _ordered(self) -> FloatRange:
        if self.low >= self.high:
            raise ConfigError(f"range low ({self.low}) must be below high ({self.high})")
        return self


class SearchSpace(BaseModel):
    """The hyperparameters to search; a null field keeps the base config's value."""

    model_config = ConfigDict(extra="forbid")

    learning_rate: FloatRange | list[float] | None = Field(
        None, description="Learning rate: a range or a list of choices."
    )
    lora_r: list[int] | None = Field(None, description="LoRA ranks to try.")
    lora_alpha: list[int] | None = Field(None, description="LoRA alphas to try.")
    num_epochs: list[float] | None = Field(None, description="Epoch counts to try.")
    batch_size: list[int] | None = Field(None, description="Batch sizes to try.")

    @model_validator(mode="after")
    def _not_empty(self) -> SearchSpace:
        for name, value in self.choices().items():
            if not value:
                raise ConfigError(f"search space '{name}' has no choices")
        if not self.choices() and not isinstance(self.learning_rate, FloatRange):
            raise ConfigError("the search space declares no hyperparameter")
        return self

    def choices(self) -> dict[str, list[Any]]:
        """The discrete parameters and their choices."""
        fields = ("learning_rate", "lora_r", "lora_alpha", "num_epochs", "batch_size")
        return {n: list(v) for n in fields if isinstance(v := getattr(self, n), list)}

    def grid(self) -> list[dict[str, Any]]:
        """Every combination, when the whole space is discrete."""
        if isinstance(self.learning_rate, FloatRange):
            raise ConfigError("a grid needs learning_rate as a list of choices")
        names, values = zip(*self.choices().items(), strict=True)
        return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values)]


def default_search_space(base: SFTConfig) -> SearchSpace:
    """The space searched when none is declared: the learning rate on a log scale around the
    base config's, and the LoRA rank when the base config trains LoRA."""
    low, high = base.learning_rate / 10, min(1.0, base.learning_rate * 10)
    ranks = sorted({4, 8, 16, base.lora.r}) if base.lora is not None else None
    return SearchSpace(learning_rate=FloatRange(low=low, high=high), lora_r=ranks)


class HPOConfig(BaseModel):
    """How to search: trials, sampler, pruner, objectives, storage and backend."""

    model_config = ConfigDict(extra="forbid")

    n_trials: int = Field(
        12, ge=1, le=10_000, description="Trials to train (grid: its size); repeats are free."
    )
    timeout_s: float | None = Field(None, gt=0, description="Stop starting trials after this.")
    sampler: Literal["tpe", "grid"] = Field("tpe", description="TPE, or the exhaustive grid.")
    n_startup_trials: int = Field(4, ge=0, description="Random trials before TPE models.")
    pruner: Literal["median", "successive_halving", "hyperband", "none"] = Field(
        "median", description="Pruner: median, successive halving (ASHA), Hyperband or none."
    )
    pruner_warmup_steps: int = Field(
        0, ge=0, description="Steps before a trial can be pruned (halving: the first rung)."
    )
    pruner_reduction_factor: int = Field(
        3, ge=2, description="Successive halving / Hyperband: 1 in N trials climbs each rung."
    )
    reuse_repeats: bool = Field(
        True,
        description="Reuse an earlier trial's result when the sampler repeats its parameters "
        "(same parameters and seed train the same); repeats cost nothing and do not count "
        "toward n_trials.",
    )
    max_train_tokens: int | None = Field(
        None,
        gt=0,
        description="Compute budget in training tokens over all trials: a trial is pruned "
        "before a step that would pass it, and no trial starts once it is spent.",
    )
    cost_metric: Literal["none", "wall_time_s", "train_tokens"] = Field(
        "none", description="Second objective to minimise (multi-objective) or none."
    )
    storage_url: str | None = Field(
        None, description="SQLAlchemy URL of Optuna RDB storage shared by workers (None: memory)."
    )
    study_name: str | None = Field(None, description="Study name; required with storage_url.")
    backend: Literal["optuna", "ray"] = Field("optuna", description="Search backend.")
    seed: int = Field(0, description="Sampler seed.")

    @model_validator(mode="after")
    def _consistent(self) -> HPOConfig:
        if self.storage_url and not self.study_name:
            raise ConfigError("storage_url needs a study_name so workers can share the study")
        if self.backend == "ray" and self.cost_metric != "none":
            raise ConfigError("the ray backend searches a single objective (cost_metric='none')")
        if self.backend == "ray" and self.max_train_tokens is not None:
            raise ConfigError("the ray backend has no token budget (max_train_tokens)")
        return self


class TrialRecord(BaseModel):
    """One trial, as the service records it as a child run."""

    model_config = ConfigDict(extra="forbid")

    number: int = Field(description="Trial number within the study.")
    params: dict[str, Any] = Field(description="Sampled hyperparameters.")
    values: list[float] | None = Field(description="Objective values (eval loss[, cost]).")
    state: str = Field(description="COMPLETE, PRUNED, FAIL or RUNNING.")
    duration_s: float = Field(description="Wall seconds the trial took.")
    steps: int = Field(0, description="Training steps the trial ran before finishing or pruning.")
    train_tokens: int = Field(0, description="Training tokens the trial consumed.")
    repeat_of: int | None = Field(
        None, description="The earlier trial whose result this repeat reused (no training)."
    )


class HPOResult(BaseModel):
    """Outcome of a search."""

    model_config = ConfigDict(extra="forbid")

    study_name: str = Field(description="Name of the study (for shared storage).")
    best_params: dict[str, Any] = Field(description="Parameters of the best trial.")
    best_values: list[float] = Field(description="Objective values of the best trial.")
    trials: list[TrialRecord] = Field(description="Every trial, in number order.")
    pareto_front: list[int] = Field(
        default_factory=list, description="Trial numbers on the Pareto front (multi-objective)."
    )
    total_steps: int = Field(description="Training steps summed over all trials (compute used).")
    total_train_tokens: int = Field(0, description="Training tokens summed over all trials.")


def apply_params(base: SFTConfig, params: dict[str, Any]) -> SFTConfig:
    """The base config with sampled parameters applied (LoRA fields into its LoRA settings)."""
    update = {k: v for k, v in params.items() if k not in ("lora_r", "lora_alpha")}
    if "lora_r" in params or "lora_alpha" in params:
        if base.lora is None:
            raise ConfigError("searching lora_r/lora_alpha needs a base config with LoRA")
        lora = base.lora.model_dump()
        lora["r"] = params.get("lora_r", lora["r"])
        lora["alpha"] = params.get("lora_alpha", lora["alpha"])
        update["lora"] = LoraSettings(**lora)
    # Trials never resume each other's checkpoints.
    return SFTConfig(**{**base.model_dump(), **update, "resume": False})


# A sampler that proposes only repeats for this many times n_trials has converged.
_MAX_REPEATS_PER_TRIAL = 10


@dataclass
class _Spending:
    """What a search has spent: trained trials, free repeats and training tokens."""

    budget: float
    trials: int = 0
    repeats: int = 0
    tokens: int = 0
    largest_step: float = 0.0

    def add(self, tokens: int, steps: int) -> None:
        """Count a trained trial's tokens and remember its average step size."""
        self.tokens += tokens
        if steps:
            self.largest_step = max(self.largest_step, tokens / steps)

    def exhausted(self) -> bool:
        """True when what is left of the budget may not pay for one more step."""
        return self.budget - self.tokens < max(1.0, self.largest_step)


def _space_size(space: SearchSpace) -> float:
    """How many distinct configurations ``space`` holds (inf with a continuous range)."""
    if isinstance(space.learning_rate, FloatRange):
        return math.inf
    return math.prod(len(choices) for choices in space.choices().values())


def _suggest(trial: Any, space: SearchSpace) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if isinstance(space.learning_rate, FloatRange):
        lr = space.learning_rate
        params["learning_rate"] = trial.suggest_float("learning_rate", lr.low, lr.high, log=lr.log)
    for name, choices in space.choices().items():
        params[name] = trial.suggest_categorical(name, choices)
    return params


def _trial_callbacks(trial: Any, prune: bool, token_allowance: float) -> list[Any]:
    """Transformers callbacks for one trial: report eval loss to ``trial`` and prune when the
    pruner says so (``prune``); prune once the trial trained on ``token_allowance`` tokens."""
    import optuna
    from transformers import TrainerCallback

    reported: set[int] = set()

    def note(state: Any) -> None:
        trial.set_user_attr("steps", state.global_step)
        trial.set_user_attr("train_tokens", int(state.num_input_tokens_seen or 0))

    class OptunaPruning(TrainerCallback):
        def on_evaluate(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            loss = (kw.get("metrics") or {}).get("eval_loss")
            if loss is None:
                return
            note(state)
            if state.global_step in reported:  # the final evaluation, at the last eval's step:
                return  # Optuna would ignore it with a warning on the user's terminal
            reported.add(state.global_step)
            trial.report(float(loss), state.global_step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at step {state.global_step}")

    class TokenBudget(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            tokens, step = int(state.num_input_tokens_seen or 0), max(1, state.global_step)
            # Stop before a step of this trial's average size would go past the budget.
            if state.global_step < state.max_steps and tokens + tokens / step > token_allowance:
                note(state)
                raise optuna.TrialPruned(f"compute budget spent at step {state.global_step}")

    callbacks: list[Any] = [OptunaPruning()] if prune else []
    if token_allowance < float("inf"):
        callbacks.append(TokenBudget())
    return callbacks


def _earlier_run(study: Any, trial: Any, params: dict[str, Any]) -> Any:
    """The finished, trained trial that ran ``params`` before ``trial``, or None."""
    from optuna.trial import TrialState

    for earlier in study.get_trials(
        deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)
    ):
        attrs = earlier.user_attrs
        if earlier.number != trial.number and "repeat_of" not in attrs and earlier.params == params:
            return earlier
    return None


def _replay(trial: Any, earlier: Any) -> float | tuple[float, ...]:
    """Give ``trial`` the outcome of ``earlier`` (same parameters) without training."""
    import optuna

    trial.set_user_attr("repeat_of", earlier.number)
    if earlier.state == optuna.trial.TrialState.PRUNED:
        for step, value in sorted(earlier.intermediate_values.items()):
            trial.report(value, step)
        raise optuna.TrialPruned(f"repeats pruned trial {earlier.number}")
    values = tuple(earlier.values)
    return values[0] if len(values) == 1 else values


def _make_study(config: HPOConfig, space: SearchSpace) -> Any:
    import optuna

    sampler: optuna.samplers.BaseSampler
    if config.sampler == "grid":
        sampler = optuna.samplers.GridSampler(space.choices(), seed=config.seed)
    else:
        sampler = optuna.samplers.TPESampler(
            seed=config.seed, n_startup_trials=config.n_startup_trials, multivariate=True
        )
    pruner: optuna.pruners.BasePruner = optuna.pruners.NopPruner()
    if config.pruner == "median":
        pruner = optuna.pruners.MedianPruner(
            n_startup_trials=config.n_startup_trials, n_warmup_steps=config.pruner_warmup_steps
        )
    elif config.pruner == "hyperband":
        pruner = optuna.pruners.HyperbandPruner(
            min_resource=max(1, config.pruner_warmup_steps),
            reduction_factor=config.pruner_reduction_factor,
        )
    elif config.pruner == "successive_halving":
        pruner = optuna.pruners.SuccessiveHalvingPruner(
            min_resource=max(1, config.pruner_warmup_steps),
            reduction_factor=config.pruner_reduction_factor,
        )
    multi = config.cost_metric != "none"
    return optuna.create_study(
        study_name=config.study_name or f"llmloop-hpo-{int(time.time())}",
        storage=optuna.storages.RDBStorage(config.storage_url) if config.storage_url else None,
        sampler=sampler,
        pruner=optuna.pruners.NopPruner() if multi else pruner,
        directions=["minimize", "minimize"] if multi else ["minimize"],
        load_if_exists=True,
    )


def _record(trial: Any) -> TrialRecord:
    start, end = trial.datetime_start, trial.datetime_complete
    return TrialRecord(
        number=trial.number,
        params=dict(trial.params),
        values=list(trial.values) if trial.values is not None else None,
        state=trial.state.name,
        duration_s=(end - start).total_seconds() if start and end else 0.0,
        steps=int(trial.user_attrs.get("steps", 0)),
        train_tokens=int(trial.user_attrs.get("train_tokens", 0)),
        repeat_of=trial.user_attrs.get("repeat_of"),
    )


def run_hpo(
    config: HPOConfig,
    space: SearchSpace,
    base_config: SFTConfig,
    base_model_dir: str | Path,
    train_rows: Sequence[dict[str, Any]],
    eval_rows: Sequence[dict[str, Any]],
    out_dir: str | Path,
    tracker: Tracker,
    trial_tracker: TrialTrackerFactory | None = None,
) -> HPOResult:
    """Search ``space`` around ``base_config``; each trial trains under ``out_dir/trial-N``.

    ``tracker`` receives the study's parameters and each finished trial's objective;
    ``trial_tracker(number, params)`` gives each trial its own tracker (a child run).
    """
    if not eval_rows:
        raise InvalidInputError("hyperparameter search needs eval rows to score trials")
    if base_config.processes > 1 or base_config.accelerate_config:
        raise ConfigError(
            "search trials train in one process each (processes=1); run trials "
            "side by side with the ray backend instead"
        )
    if config.sampler == "grid":
        config = config.model_copy(update={"n_trials": len(space.grid())})
    tracker.log_params({"hpo": config.model_dump(mode="json"), "space": space.model_dump()})
    if config.backend == "ray":
        from llmloop.trainers.hpo_ray import run_ray_search

        return run_ray_search(
            config, space, base_config, base_model_dir, train_rows, eval_rows, out_dir, tracker
        )
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = _make_study(config, space)
    multi = config.cost_metric != "none"

    spending = _Spending(budget=float(config.max_train_tokens or math.inf))

    def objective(trial: optuna.Trial) -> float | tuple[float, float]:
        params = _suggest(trial, space)
        earlier = _earlier_run(study, trial, params) if config.reuse_repeats else None
        if earlier is not None:
            spending.repeats += 1
            return _replay(trial, earlier)  # type: ignore[return-value]
        spending.trials += 1
        trial_config = apply_params(base_config, params)
        trial_out = Path(out_dir) / f"trial-{trial.number}"
        run_tracker = trial_tracker(trial.number, params) if trial_tracker else NullTracker()
        callbacks = _trial_callbacks(trial, not multi, spending.budget - spending.tokens)
        try:
            result = run_sft(
                trial_config,
                base_model_dir,
                train_rows,
                eval_rows,
                trial_out,
                run_tracker,
                callbacks,
            )
            trial.set_user_attr("steps", result.steps)
            trial.set_user_attr("train_tokens", result.train_tokens)
        finally:  # a pruned trial's callbacks noted what it trained
            spending.add(*(int(trial.user_attrs.get(k, 0)) for k in ("train_tokens", "steps")))
        loss = result.metrics["eval_loss"]
        tracker.log_metrics({"trial_eval_loss": loss}, step=trial.number)
        if not multi:
            return loss
        cost = result.wall_time_s if config.cost_metric == "wall_time_s" else result.train_tokens
        return loss, float(cost)

    # With repeats reused, a finite space has no new trial left after its size.
    n_trials = min(config.n_trials, _space_size(space)) if config.reuse_repeats else config.n_trials

    def stop_when_done(study: optuna.Study, _trial: Any) -> None:
        converged = spending.repeats >= _MAX_REPEATS_PER_TRIAL * config.n_trials
        if spending.trials >= n_trials or spending.exhausted() or converged:
            study.stop()

    study.optimize(objective, timeout=config.timeout_s, callbacks=[stop_when_done])
    records = [_record(t) for t in study.trials]
    trained = [t for t in study.trials if "repeat_of" not in t.user_attrs]
    finished = [t for t in trained if t.state == optuna.trial.TrialState.COMPLETE]
    if not finished:
        raise InvalidInputError("no trial finished; see the trial records for failures")
    if multi:
        front = [t for t in study.best_trials if "repeat_of" not in t.user_attrs]
    else:
        front = [min(finished, key=lambda t: t.values[0])]
    best = min(front, key=lambda t: t.values[0])
    return HPOResult(
        study_name=study.study_name,
        best_params=dict(best.params),
        best_values=list(best.values),
        trials=records,
        pareto_front=[t.number for t in front] if multi else [],
        total_steps=sum(r.steps for r in records),
        total_train_tokens=sum(r.train_tokens for r in records),
    )
