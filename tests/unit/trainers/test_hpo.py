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
    assert [t.number for t in result.trials] == [0, 1, 2, 3]
    assert [n for n, _ in children] == [0, 1, 2, 3]
    states = {t.state for t in result.trials}
    assert states <= {"COMPLETE", "PRUNED"} and "COMPLETE" in states
    complete = [t for t in result.trials if t.state == "COMPLETE"]
    assert result.best_values[0] == min(t.values[0] for t in complete if t.values)
    assert result.best_params["learning_rate"] in [1e-5, 1e-3, 2e-2]
    for trial in result.trials:
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
    assert len(again.trials) == 5 and again.study_name == "s1"


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
