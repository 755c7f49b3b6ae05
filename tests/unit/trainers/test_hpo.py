"""Hyperparameter search: declared space, TPE with pruning, shared storage, Pareto front, Ray."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from llmloop.errors import ConfigError, InvalidInputError
from llmloop.trainers.base import RecordingTracker
from llmloop.trainers.hpo import FloatRange, HPOConfig, SearchSpace, apply_params, run_hpo
from llmloop.trainers.sft import SFTConfig

BASE = SFTConfig(max_steps=4, eval_steps=2, batch_size=8)
SPACE = SearchSpace(learning_rate=[1e-5, 1e-3, 2e-2], lora_r=[4, 8])


def test_search_space_rules() -> None:
    with pytest.raises(ConfigError, match="no hyperparameter"):
        SearchSpace()
    with pytest.raises(ConfigError, match="no choices"):
        SearchSpace(lora_r=[])
    with pytest.raises(ConfigError, match="below high"):
        FloatRange(low=1.0, high=0.1)
    assert len(SPACE.grid()) == 6
    with pytest.raises(ConfigError, match="grid"):
        SearchSpace(learning_rate=FloatRange(low=1e-4, high=1e-2)).grid()


def test_hpo_config_rules() -> None:
    with pytest.raises(ConfigError, match="study_name"):
        HPOConfig(storage_url="sqlite://")
    with pytest.raises(ConfigError, match="single objective"):
        HPOConfig(backend="ray", cost_metric="wall_time_s")


def test_apply_params_sets_lora_and_never_resumes() -> None:
    config = apply_params(BASE, {"learning_rate": 0.1, "lora_r": 4, "lora_alpha": 8})
    assert config.learning_rate == 0.1 and config.lora is not None
    assert (config.lora.r, config.lora.alpha, config.resume) == (4, 8, False)
    with pytest.raises(ConfigError, match="LoRA"):
        apply_params(BASE.model_copy(update={"lora": None}), {"lora_r": 4})


def test_search_needs_eval_rows(
    base_dir: Path, tickets: list[dict[str, Any]], tmp_path: Path
) -> None:
    with pytest.raises(InvalidInputError, match="eval rows"):
        run_hpo(HPOConfig(), SPACE, BASE, base_dir, tickets, [], tmp_path, RecordingTracker())


def test_tpe_with_pruning_in_shared_sqlite_storage(
    base_dir: Path, tickets: list[dict[str, Any]], ticket_eval: list[dict[str, Any]], tmp_path: Path
) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    config = HPOConfig(n_trials=4, n_startup_trials=1, storage_url=storage, study_name="s1")
    children: list[tuple[int, dict[str, Any]]] = []

    def child(number: int, params: dict[str, Any]) -> RecordingTracker:
        children.append((number, params))
        return RecordingTracker()

    tracker = RecordingTracker()
    result = run_hpo(
        config,
        SPACE,
        BASE,
        base_dir,
        tickets,
        ticket_eval[:4],
        tmp_path,
        tracker,
        trial_tracker=child,
    )
    # Four trials train; a proposal repeating one of them reuses its result (no child run).
    trained = [t for t in result.trials if t.repeat_of is None]
    assert [n for n, _ in children] == [t.number for t in trained] and len(trained) == 4
    assert [t.number for t in result.trials] == list(range(len(result.trials)))
    states = {t.state for t in result.trials}
    assert states <= {"COMPLETE", "PRUNED"} and "COMPLETE" in states
    complete = [t for t in result.trials if t.state == "COMPLETE"]
    assert result.best_values[0] == min(t.values[0] for t in complete if t.values)
    assert result.best_params["learning_rate"] in [1e-5, 1e-3, 2e-2]
    for trial in trained:
        assert 0 < trial.steps <= 4 and trial.train_tokens > 0 and trial.duration_s > 0
        assert trial.steps == 4 or trial.state == "PRUNED"
    assert result.total_steps == sum(t.steps for t in result.trials)
    # A second worker on the same storage continues the same study.
    again = run_hpo(
        config.model_copy(update={"n_trials": 1}),
        SPACE,
        BASE,
        base_dir,
        tickets,
        ticket_eval[:4],
        tmp_path,
        tracker,
    )
    assert sum(t.repeat_of is None for t in again.trials) == 5 and again.study_name == "s1"


def test_multi_objective_keeps_a_pareto_front(
    base_dir: Path, tickets: list[dict[str, Any]], ticket_eval: list[dict[str, Any]], tmp_path: Path
) -> None:
    space = SearchSpace(batch_size=[2, 8])
    config = HPOConfig(sampler="grid", cost_metric="train_tokens", pruner="none")
    result = run_hpo(
        config,
        space,
        BASE.model_copy(update={"max_steps": 3, "eval_steps": 3}),
        base_dir,
        tickets,
        ticket_eval[:4],
        tmp_path,
        RecordingTracker(),
    )
    assert len(result.trials) == 2  # the grid's size
    assert all(t.values is not None and len(t.values) == 2 for t in result.trials)
    by_batch = {t.params["batch_size"]: t for t in result.trials}
    assert by_batch[2].train_tokens < by_batch[8].train_tokens
    assert 0 in result.pareto_front or 1 in result.pareto_front
    cheapest = min(result.trials, key=lambda t: t.values[1] if t.values else 0)
    assert cheapest.number in result.pareto_front


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed")
def test_ray_backend_runs_the_same_search(
    base_dir: Path, tickets: list[dict[str, Any]], ticket_eval: list[dict[str, Any]], tmp_path: Path
) -> None:
    import ray

    config = HPOConfig(backend="ray", n_trials=2)
    try:
        result = run_hpo(
            config,
            SearchSpace(learning_rate=[1e-5, 2e-2]),
            BASE.model_copy(update={"max_steps": 2}),
            base_dir,
            tickets,
            ticket_eval[:4],
            tmp_path,
            RecordingTracker(),
        )
    finally:
        ray.shutdown()
    assert len(result.trials) == 2
    assert result.best_params["learning_rate"] in (1e-5, 2e-2)
    # ASHA may stop the weaker trial at its first rung; the best one finished.
    assert {t.state for t in result.trials} <= {"COMPLETE", "PRUNED"}
    assert all(0 < t.steps <= 2 and t.train_tokens > 0 for t in result.trials)
    best = [t for t in result.trials if t.params == result.best_params]
    assert best and best[0].state == "COMPLETE" and best[0].steps == 2


def test_repeated_proposals_reuse_the_earlier_trial(
    base_dir: Path, tickets: list[dict[str, Any]], ticket_eval: list[dict[str, Any]], tmp_path: Path
) -> None:
    # Two configurations: seeded TPE proposes one twice before the other (seed 0).
    space = SearchSpace(learning_rate=[1e-5, 2e-2])
    config = HPOConfig(
        n_trials=2, n_startup_trials=1, pruner="successive_halving", pruner_warmup_steps=2
    )
    children: list[int] = []

    def child(number: int, params: dict[str, Any]) -> RecordingTracker:
        children.append(number)
        return RecordingTracker()

    result = run_hpo(
        config, space, BASE, base_dir, tickets, ticket_eval[:4], tmp_path, RecordingTracker(), child
    )
    trained = [t for t in result.trials if t.repeat_of is None]
    repeats = [t for t in result.trials if t.repeat_of is not None]
    assert [t.number for t in trained] == children  # repeats train nothing, get no child run
    assert len(trained) == 2 and trained[0].params != trained[1].params
    assert repeats, "seed 0 proposes a configuration twice"
    by_number = {t.number: t for t in result.trials}
    for repeat in repeats:
        earlier = by_number[repeat.repeat_of or 0]
        assert earlier.repeat_of is None and earlier.number < repeat.number
        assert (repeat.params, repeat.state, repeat.values) == (
            earlier.params,
            earlier.state,
            earlier.values,
        )
        assert repeat.steps == 0 and repeat.train_tokens == 0
    assert result.total_train_tokens == sum(t.train_tokens for t in trained)
    # Without reuse the same proposals all train.
    again = run_hpo(
        config.model_copy(update={"reuse_repeats": False}),
        space,
        BASE,
        base_dir,
        tickets,
        ticket_eval[:4],
        tmp_path / "again",
        RecordingTracker(),
    )
    assert len(again.trials) == 2 and all(t.repeat_of is None for t in again.trials)
    assert all(t.train_tokens > 0 for t in again.trials)


def test_token_budget_stops_the_search(
    base_dir: Path, tickets: list[dict[str, Any]], ticket_eval: list[dict[str, Any]], tmp_path: Path
) -> None:
    # The learning rate does not change what a trial trains on: every trial costs the same.
    space = SearchSpace(learning_rate=[1e-5, 1e-4, 1e-3, 1e-2, 2e-2])
    one = run_hpo(
        HPOConfig(n_trials=1, pruner="none"),
        space,
        BASE,
        base_dir,
        tickets,
        ticket_eval[:4],
        tmp_path / "one",
        RecordingTracker(),
    )
    per_trial = one.total_train_tokens
    budget = int(2.6 * per_trial)
    config = HPOConfig(n_trials=5, pruner="none", max_train_tokens=budget)
    result = run_hpo(
        config, space, BASE, base_dir, tickets, ticket_eval[:4], tmp_path, RecordingTracker()
    )
    trained = [t for t in result.trials if t.repeat_of is None]
    assert result.total_train_tokens <= budget
    assert [t.state for t in trained] == ["COMPLETE", "COMPLETE", "PRUNED"]
    assert [t.train_tokens for t in trained[:2]] == [per_trial, per_trial]
    assert 0 < trained[2].steps < BASE.max_steps  # cut before a step would pass the budget
    with pytest.raises(ConfigError, match="token budget"):
        HPOConfig(backend="ray", max_train_tokens=1000)


def test_trials_train_in_one_process_each(tmp_path: Path) -> None:
    base = SFTConfig(max_steps=1, processes=2)
    space = SearchSpace(learning_rate=[1e-3])
    with pytest.raises(ConfigError, match="one process each"):
        run_hpo(
            HPOConfig(),
            space,
            base,
            tmp_path,
            [{"text": "a"}],
            [{"text": "b"}],
            tmp_path,
            RecordingTracker(),
        )


def test_the_final_evaluation_is_not_reported_twice(
    base_dir: Path, tickets: list[dict[str, Any]], ticket_eval: list[dict[str, Any]], tmp_path: Path
) -> None:
    """The last scheduled evaluation and the final one share a step: reporting both made Optuna
    warn ("The reported value is ignored because this `step=4` is already reported")."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_hpo(
            HPOConfig(n_trials=1),
            SearchSpace(learning_rate=[1e-3]),
            BASE,
            base_dir,
            tickets,
            ticket_eval[:4],
            tmp_path,
            RecordingTracker(),
        )
    assert [t.state for t in result.trials] == ["COMPLETE"]
    assert not [w for w in caught if "already reported" in str(w.message)]
