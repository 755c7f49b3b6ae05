"""Supervised fine-tuning on the tiny Llama: row checks, formats, tracking, stopping, quality."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llmloop.errors import ConfigError, InvalidInputError, NotFoundError
from llmloop.trainers.base import RecordingTracker
from llmloop.trainers.sft import SFTConfig, detect_format, prepare_rows, run_sft

CHAT = [
    {
        "messages": [
            {"role": "system", "content": "You are support."},
            {"role": "user", "content": f"Where is order {i}?"},
            {"role": "assistant", "content": f"Order {i} ships tomorrow."},
        ]
    }
    for i in range(16)
]
TEXT = [{"text": f"Order {i} has shipped and arrives soon."} for i in range(16)]


def test_detect_format_from_keys() -> None:
    assert detect_format(CHAT[0]) == "chat"
    assert detect_format({"prompt": "a", "response": "b"}) == "instruction"
    assert detect_format(TEXT[0]) == "text"
    with pytest.raises(InvalidInputError, match="row 0"):
        detect_format({"question": "a"})


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        ([{"prompt": "a", "response": "b"}, {"prompt": "a"}], "row 1: 'response'"),
        ([{"text": "a"}, {"text": "b"}, {"text": ""}], "row 2: 'text'"),
        ([{"text": "a"}, "oops"], "row 1 is not an object"),
        ([{"messages": [{"role": "user", "content": "hi"}]}], "row 0: the last message"),
        ([{"messages": [{"role": "robot", "content": "hi"}]}], "row 0, message 0"),
        ([{"messages": [{"role": "user", "content": 3}]}], "'content' must be a string"),
        ([{"messages": []}], "non-empty list"),
        ([], "no rows"),
    ],
)
def test_bad_rows_name_the_row(rows: list[Any], match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        prepare_rows(rows, "auto", use_chat_template=True)


def test_instruction_rows_become_prompt_completion() -> None:
    fmt, records = prepare_rows([{"prompt": "p", "response": "r"}], "auto", True)
    assert fmt == "instruction"
    assert records == [
        {
            "prompt": [{"role": "user", "content": "p"}],
            "completion": [{"role": "assistant", "content": "r"}],
        }
    ]
    _, plain = prepare_rows([{"prompt": "p", "response": "r"}], "instruction", False)
    assert plain == [{"prompt": "p", "completion": "r"}]


def test_bad_rows_fail_before_loading_a_model(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="row 1"):
        run_sft(
            SFTConfig(),
            tmp_path / "nowhere",
            [{"text": "a"}, {}],
            None,
            tmp_path,
            RecordingTracker(),
        )


def test_missing_base_model_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match=r"config\.json"):
        run_sft(
            SFTConfig(max_steps=1),
            tmp_path / "nowhere",
            TEXT,
            None,
            tmp_path / "o",
            RecordingTracker(),
        )


def test_lora_instruction_run_streams_every_metric(
    base_dir: Path, tickets: list[dict[str, Any]], ticket_eval: list[dict[str, Any]], tmp_path: Path
) -> None:
    tracker = RecordingTracker()
    config = SFTConfig(
        max_steps=4,
        eval_steps=2,
        batch_size=4,
        gradient_accumulation_steps=2,
        device_hour_price=3600.0,
    )
    result = run_sft(config, base_dir, tickets, ticket_eval, tmp_path, tracker)
    assert result.steps == 4
    assert result.adapter_dir is not None and (result.adapter_dir / "adapter_config.json").exists()
    assert (result.tokenizer_dir / "tokenizer.json").exists()
    assert result.merged is None
    assert tracker.params["trainer"] == "sft" and tracker.params["format"] == "instruction"
    for name in ("loss", "learning_rate", "tokens_per_s", "wall_time_s", "peak_memory_mb"):
        assert len(tracker.series(name)) >= 4, name
    # Evaluations at steps 2 and 4, then the final evaluation (also at step 4).
    assert [step for step, _ in tracker.series("eval_loss")] == [2, 4, 4]
    assert all(value > 1 for _, value in tracker.series("eval_perplexity"))
    assert result.train_tokens > 0 and result.wall_time_s > 0 and result.peak_memory_mb > 0
    # 3600 per device-hour = 1 per second.
    assert result.cost_estimate == pytest.approx(result.wall_time_s, rel=1e-6)
    assert result.metrics["eval_perplexity"] > 1
    assert result.resumed_from is None and not result.stopped_early


def test_full_fine_tune_of_chat_rows_saves_loadable_weights(base_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    result = run_sft(
        SFTConfig(lora=None, max_steps=2, batch_size=4),
        base_dir,
        CHAT,
        None,
        tmp_path,
        RecordingTracker(),
    )
    assert result.adapter_dir is None and result.merged is not None
    model = AutoModelForCausalLM.from_pretrained(result.merged)
    assert model.config.model_type == "llama"
    assert "eval_loss" not in result.metrics


def test_packed_text_rows(base_dir: Path, tmp_path: Path) -> None:
    config = SFTConfig(packing=True, max_steps=2, max_length=64, batch_size=2)
    result = run_sft(config, base_dir, TEXT, TEXT[:4], tmp_path, RecordingTracker())
    assert result.steps == 2 and result.train_tokens > 0


def test_early_stopping_after_patience_evaluations(
    base_dir: Path, tickets: list[dict[str, Any]], ticket_eval: list[dict[str, Any]], tmp_path: Path
) -> None:
    # A learning rate this small leaves the eval loss unchanged, so it never improves.
    config = SFTConfig(
        max_steps=20, eval_steps=1, early_stopping_patience=2, learning_rate=1e-15, batch_size=8
    )
    result = run_sft(config, base_dir, tickets, ticket_eval, tmp_path, RecordingTracker())
    assert result.stopped_early
    assert result.steps == 3  # best at step 1, no gain at steps 2 and 3


def test_tracker_can_stop_a_run(
    base_dir: Path, tickets: list[dict[str, Any]], tmp_path: Path
) -> None:
    tracker = RecordingTracker(stop_after_step=2)
    result = run_sft(
        SFTConfig(max_steps=50, batch_size=8), base_dir, tickets, None, tmp_path, tracker
    )
    assert result.stopped_early and result.steps <= 3


def test_packing_needs_no_eval_but_patience_needs_eval_steps() -> None:
    with pytest.raises(ConfigError):
        SFTConfig(early_stopping_patience=1)
