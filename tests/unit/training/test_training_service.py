"""Training through the services: a foundation model from a dataset version, a LoRA fine-tune
of it, each a finished run with metric series and a model version with lineage; bad input
leaves a failed run, never a half-registered version."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from llmloop.config import load_settings
from llmloop.core.datasets import DatasetVersionCreate
from llmloop.errors import InvalidInputError, LlmloopError, NotFoundError
from llmloop.services.actors import local_actor
from llmloop.services.container import Container

pytest.importorskip("trl")

TICKETS = [
    {"prompt": f"Order {n} is late, where is it?", "response": f"Order {n} ships tomorrow."}
    for n in range(40)
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Container, dict[str, str]]]:
    home = tmp_path_factory.mktemp("home")
    c = Container(load_settings({"home": str(home)}, env={}))
    me = local_actor()
    c.datasets.create_version("tickets", DatasetVersionCreate(rows=TICKETS), me)
    base = c.training.init_base(
        "tickets", "tiny-base", me, config={"steps": 20, "hidden_size": 32, "layers": 1, "heads": 2}
    )
    c.models.set_alias("tiny-base", "champion", base.version, me)
    tuned = c.training.finetune(
        "tiny-base",
        "tickets",
        "support-bot",
        me,
        config={"max_steps": 4, "batch_size": 8, "lora": {"r": 4}},
    )
    yield c, {"base": base.id, "tuned": tuned.id}
    c.close()


def test_init_base_registers_a_trained_version(trained: tuple[Container, dict[str, str]]) -> None:
    c, ids = trained
    base = c.models.get_version_by_id(ids["base"])
    assert base.format == "hf" and base.artifact is not None and base.run_id
    run = c.runs.get(base.run_id)
    assert run.kind == "pretrain" and run.status == "finished"
    assert "loss" in c.runs.metric_series(run.id) or "train_loss" in c.runs.metric_series(run.id)


def test_finetune_has_lineage_to_data_base_and_run(
    trained: tuple[Container, dict[str, str]],
) -> None:
    c, ids = trained
    tuned = c.models.get_version_by_id(ids["tuned"])
    assert tuned.format == "peft-lora" and tuned.base_model == ids["base"]
    assert tuned.metrics["train_tokens"] > 0 and "wall_time_s" in tuned.metrics
    graph = c.governance.lineage(tuned.id, "up")
    types = {n.type for n in graph.nodes}
    assert {"dataset_version", "run", "model_version"} <= types
    assert ids["base"] in {n.id for n in graph.nodes}


def test_bad_training_input_fails_cleanly(trained: tuple[Container, dict[str, str]]) -> None:
    c, _ = trained
    me = local_actor()
    before = len(c.models.list_versions("support-bot"))
    c.datasets.create_version("bad", DatasetVersionCreate(rows=[{"colour": "blue"}]), me)
    with pytest.raises(InvalidInputError):
        c.training.finetune("tiny-base", "bad", "support-bot", me, config={"max_steps": 1})
    assert len(c.models.list_versions("support-bot")) == before
    assert c.runs.list(kind="finetune", status="failed")
    with pytest.raises(NotFoundError):
        c.training.finetune("no-model", "tickets", "x", me)
    with pytest.raises(InvalidInputError, match="method"):
        c.training.finetune("tiny-base", "tickets", "x", me, method="ppo")


def test_finetune_on_two_processes_registers_one_version(
    trained: tuple[Container, dict[str, str]],
) -> None:
    """Data-parallel training (torchrun, two gloo processes on CPU): rank 0's result becomes one
    model version; its metrics reach the run while it trains."""
    c, ids = trained
    me = local_actor()
    before = len(c.models.list_versions("support-bot"))
    tuned = c.training.finetune(
        "tiny-base",
        "tickets",
        "support-bot",
        me,
        config={"max_steps": 3, "batch_size": 4, "lora": {"r": 4}, "processes": 2},
    )
    assert len(c.models.list_versions("support-bot")) == before + 1
    assert tuned.format == "peft-lora" and tuned.base_model == ids["base"]
    assert tuned.params["processes"] == 2 and tuned.metrics["train_tokens"] > 0
    assert tuned.run_id is not None
    series = c.runs.metric_series(tuned.run_id)
    assert len(series["loss"]) == 3  # one point per step, streamed from rank 0
    with pytest.raises(LlmloopError, match="distributed training failed"):
        c.training.finetune(
            "tiny-base",
            "tickets",
            "support-bot",
            me,
            config={
                "max_steps": 1,
                "processes": 2,
                "lora": {"r": 4, "target_modules": ["no_such_module"]},
            },
        )
    assert len(c.models.list_versions("support-bot")) == before + 1  # nothing half-registered
    with pytest.raises(LlmloopError, match="is not a file"):
        c.training.finetune(
            "tiny-base",
            "tickets",
            "support-bot",
            me,
            config={"max_steps": 1, "accelerate_config": "/nonexistent.yaml"},
        )


def test_optuna_keeps_its_trials_beside_the_llmloop_database() -> None:
    from llmloop.services.training_support import optuna_storage_url

    # Both stamp an Alembic ``alembic_version`` table: sharing one database breaks Optuna.
    assert optuna_storage_url("sqlite:////data/llmloop.db") == "sqlite:////data/llmloop-optuna.db"
    assert optuna_storage_url("sqlite://") is None


def test_hpo_with_the_default_space_on_the_default_store(
    trained: tuple[Container, dict[str, str]],
) -> None:
    """The README's `train hpo` (no --space) on the SQLite store the llmloop data lives in."""
    c, ids = trained
    me = local_actor()
    c.datasets.create_version("tickets-eval", DatasetVersionCreate(rows=TICKETS[:4]), me)
    version, summary = c.training.tune(
        "tiny-base",
        "tickets",
        "tickets-eval",
        "hpo-bot",
        me,
        search={"n_trials": 2},
        config={"max_steps": 2, "batch_size": 8},
    )
    assert [t["state"] for t in summary["trials"]] == ["COMPLETE", "COMPLETE"]
    assert set(summary["best_params"]) == {"learning_rate", "lora_r"}
    assert version.format == "peft-lora" and version.base_model == ids["base"]
    assert version.metrics["eval_loss"] == pytest.approx(summary["best_values"][0])
    assert c.runs.get(version.run_id or "").status == "finished"


def test_chat_fine_tune_answers_through_the_hf_engine(
    trained: tuple[Container, dict[str, str]],
) -> None:
    import asyncio

    from llmloop.core.chat import ChatMessage, GenerationRequest, SamplingParams

    c, _ = trained
    me = local_actor()
    chat = [
        {
            "messages": [
                {"role": "system", "content": "You are support."},
                {"role": "user", "content": row["prompt"]},
                {"role": "assistant", "content": row["response"]},
            ]
        }
        for row in TICKETS
    ]
    c.datasets.create_version("chat-tickets", DatasetVersionCreate(rows=chat), me)
    version = c.training.finetune(
        "tiny-base",
        "chat-tickets",
        "chat-bot",
        me,
        config={"max_steps": 40, "batch_size": 8, "lora": None, "learning_rate": 3e-3},
    )
    losses = c.runs.metric_series(version.run_id or "")["loss"]
    assert len(losses) == 40 and losses[-1]["value"] < losses[0]["value"]  # one point per step

    async def ask() -> str:
        engine, version_id = await c.evaluation.build_engine("chat-bot", version.version)
        assert version_id == version.id
        try:
            result = await engine.chat(
                GenerationRequest(
                    model=engine.spec.model,
                    messages=[
                        ChatMessage(role="system", content="You are support."),
                        ChatMessage(role="user", content="Order 7 is late, where is it?"),
                    ],
                    sampling=SamplingParams(max_tokens=16, temperature=0.0),
                )
            )
        finally:
            await engine.aclose()
        # Trained on its end-of-turn token, the model stops by itself.
        assert result.finish_reason == "stop"
        return result.text

    assert "ships tomorrow" in asyncio.run(ask())


def test_a_lora_version_is_a_base_to_train_on(trained: tuple[Container, dict[str, str]]) -> None:
    """The README's `train dpo --base bot@1`, where bot@1 is a LoRA fine-tune: its adapter is
    merged into its base to train on, and the result is registered whole (an adapter trained on
    the merge, served as an adapter, would sit on the first base without the first adapter)."""
    from llmloop.core.models import ModelVersionCreate

    c, ids = trained
    me = local_actor()
    tuned = c.models.get_version_by_id(ids["tuned"])
    prefs = [{"prompt": r["prompt"], "chosen": r["response"], "rejected": "No."} for r in TICKETS]
    c.datasets.create_version("prefs", DatasetVersionCreate(rows=prefs[:8]), me)
    dpo = c.training.finetune(
        "support-bot",
        "prefs",
        "support-bot",
        me,
        base_ref=tuned.version,
        method="dpo",
        config={"max_steps": 1, "batch_size": 4, "lora": {"r": 4}},
    )
    assert dpo.format == "hf" and dpo.base_model == tuned.id
    for version in (tuned.version, dpo.version):
        _, weights = c.training.base_dir("support-bot", version)
        assert (weights / "config.json").is_file()
        assert not (weights / "adapter_config.json").exists()
    orphan = c.models.create_version(
        "orphan",
        ModelVersionCreate(base_model="hub/not-here", format="peft-lora", artifact=tuned.artifact),
        me,
    )
    with pytest.raises(InvalidInputError, match="neither a registry version nor a local folder"):
        c.training.base_dir("orphan", orphan.version)
