"""Preference tuning with TRL's DPOTrainer on feedback-shaped rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llmloop.errors import InvalidInputError
from llmloop.trainers.base import RecordingTracker
from llmloop.trainers.dpo import DPOConfig, prepare_preferences, run_dpo

PREFS = [
    {
        "prompt": f"Ticket {i}: my order is late.",
        "chosen": "Sorry for the delay. It ships within two days.",
        "rejected": "Not my problem.",
    }
    for i in range(16)
]


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        ([PREFS[0], {"prompt": "p", "chosen": "c"}], "row 1: 'rejected'"),
        ([{"prompt": "", "chosen": "c", "rejected": "r"}], "row 0: 'prompt'"),
        ([{"prompt": "p", "chosen": "same", "rejected": "same"}], "row 0: 'chosen' equals"),
        ([PREFS[0], ["x"]], "row 1 is not an object"),
        ([], "no preference rows"),
    ],
)
def test_bad_preference_rows_name_the_row(rows: list[Any], match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        prepare_preferences(rows, use_chat_template=True)


def test_preferences_render_as_conversations_or_plain_text() -> None:
    [record] = prepare_preferences(PREFS[:1], use_chat_template=True)
    assert record["chosen"] == [{"role": "assistant", "content": PREFS[0]["chosen"]}]
    assert prepare_preferences(PREFS[:1], use_chat_template=False) == PREFS[:1]


@pytest.mark.parametrize("lora", [True, False])
def test_dpo_prefers_the_chosen_answer(base_dir: Path, tmp_path: Path, lora: bool) -> None:
    tracker = RecordingTracker()
    config = DPOConfig(
        max_steps=4, eval_steps=2, batch_size=8, learning_rate=1e-3, lora={} if lora else None
    )
    result = run_dpo(config, base_dir, PREFS, PREFS[:4], tmp_path, tracker)
    assert result.steps == 4
    assert (result.adapter_dir is not None) is lora
    assert (result.merged is not None) is (not lora)
    assert result.metrics["eval_rewards/margins"] > 0
    assert result.metrics["eval_loss"] < 0.6931  # below log(2): chosen beats rejected
    assert "eval_perplexity" not in result.metrics  # exp(DPO loss) is no perplexity
    assert tracker.params["trainer"] == "dpo" and tracker.series("loss")
