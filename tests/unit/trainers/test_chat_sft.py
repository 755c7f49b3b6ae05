"""Chat SFT trains the assistant only: labels checked token by token against a hand-built mask,
through the real trainer (packing on and off), with tool turns, weights and odd datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from transformers import AutoTokenizer, TrainerCallback

from llmloop.errors import ConfigError, InvalidInputError
from llmloop.trainers.base import RecordingTracker
from llmloop.trainers.chat import IGNORE_INDEX, tokenize_chat
from llmloop.trainers.sft import SFTConfig, prepare_rows, run_sft

pytest.importorskip("trl")

TWO_TURNS = {
    "messages": [
        {"role": "system", "content": "You are support."},
        {"role": "user", "content": "Where is order 4?"},
        {"role": "assistant", "content": "Order 4 ships tomorrow."},
        {"role": "user", "content": "Thanks!"},
        {"role": "assistant", "content": "You are welcome."},
    ]
}
TOOL_TURNS = {
    "messages": [
        {"role": "user", "content": "Weather in Oslo?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                }
            ],
        },
        {"role": "tool", "name": "get_weather", "content": "sunny"},
        {"role": "assistant", "content": "It is sunny."},
    ]
}


def trained_text(tokenizer: Any, ids: list[int], labels: list[int]) -> str:
    return str(tokenizer.decode([t for t, label in zip(ids, labels, strict=True) if label != -100]))


def hand_labels(tokenizer: Any, pieces: list[tuple[str, bool]]) -> tuple[list[int], list[int]]:
    """Ids and labels built piece by piece: special tokens delimit turns, so pieces tokenise
    the same alone as in the whole conversation."""
    ids: list[int] = []
    labels: list[int] = []
    for text, trained in pieces:
        piece = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids += piece
        labels += piece if trained else [IGNORE_INDEX] * len(piece)
    return ids, labels


def test_only_assistant_turns_and_their_end_token_are_labelled(tiny_model_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    _, records = prepare_rows([TWO_TURNS], "auto", True)
    [example] = tokenize_chat(records, tok)
    expected = hand_labels(
        tok,
        [
            (
                "<|system|>You are support.<|end|><|user|>Where is order 4?<|end|><|assistant|>",
                False,
            ),
            ("Order 4 ships tomorrow.<|end|>", True),
            ("<|user|>Thanks!<|end|><|assistant|>", False),
            ("You are welcome.<|end|>", True),
        ],
    )
    assert (example["input_ids"], example["labels"]) == expected
    # weight 0 (OpenAI's fine-tuning format) keeps a turn as context only.
    weighted = {"messages": [dict(m) for m in TWO_TURNS["messages"]]}
    weighted["messages"][2]["weight"] = 0
    _, records = prepare_rows([weighted], "auto", True)
    [example] = tokenize_chat(records, tok)
    assert trained_text(tok, example["input_ids"], example["labels"]) == "You are welcome.<|end|>"
    everything = tokenize_chat(records, tok, assistant_only=False)[0]
    assert everything["labels"] == everything["input_ids"]


def test_tool_calls_are_rendered_and_trained(tools_model_dir: Path, tiny_model_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tools_model_dir)
    _, records = prepare_rows([TOOL_TURNS], "auto", True)
    [example] = tokenize_chat(records, tok)
    trained = trained_text(tok, example["input_ids"], example["labels"])
    assert trained == (
        '<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call><|end|>'
        "It is sunny.<|end|>"
    )
    full = tok.decode(example["input_ids"])
    assert '<tool_response name="get_weather">sunny</tool_response>' in full
    plain = AutoTokenizer.from_pretrained(tiny_model_dir)  # its template has no tools
    with pytest.raises(ConfigError, match="does not render tool calls"):
        tokenize_chat(records, plain)
    plain.chat_template = None
    with pytest.raises(ConfigError, match="need a chat template"):
        tokenize_chat(records, plain)


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        (
            [{"prompt": "q?", "response": "a."}, {"text": "plain"}],
            "row 1 is shaped as text but row 0 as instruction",
        ),
        ([{"messages": [{"role": "user", "content": None}, {"role": "assistant", "content": "a"}]}],
         "row 0, message 0: 'content'"),
        ([{"messages": [{"role": "user", "content": "q", "tool_calls": []},
                        {"role": "assistant", "content": "a"}]}], "an assistant's list"),
        ([{"messages": [{"role": "assistant", "content": "a", "weight": 2}]}], "'weight' must be"),
    ],
)  # fmt: skip
def test_mixed_or_malformed_chat_rows_are_named(rows: list[Any], match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        prepare_rows(rows, "auto", True)


class FirstBatch(TrainerCallback):
    """Keeps the first training batch the trainer builds (what the loss is computed on)."""

    batch: dict[str, Any] = {}

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        FirstBatch.batch = next(iter(kw["train_dataloader"]))


@pytest.mark.parametrize("packing", [False, True])
def test_trainer_batches_carry_the_assistant_mask(
    tiny_model_dir: Path, tmp_path: Path, packing: bool
) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    rows = [TWO_TURNS] * 4
    config = SFTConfig(max_steps=1, batch_size=2, packing=packing, max_length=256)
    tracker = RecordingTracker()
    result = run_sft(config, tiny_model_dir, rows, rows[:1], tmp_path, tracker, [FirstBatch()])
    batch = FirstBatch.batch
    for ids, labels in zip(batch["input_ids"].tolist(), batch["labels"].tolist(), strict=True):
        text = trained_text(tok, ids, labels)
        assert "Where is order" not in text and "support" not in text
        assert "Order 4 ships tomorrow.<|end|>You are welcome.<|end|>" in text
    assert result.steps == 1 and len(tracker.series("loss")) == 1
    assert result.metrics["eval_loss"] > 0


def test_rows_longer_than_the_window_fail_in_one_line(tiny_model_dir: Path, tmp_path: Path) -> None:
    rows = [{"prompt": "word " * 300, "response": "ok"}]
    with pytest.raises(InvalidInputError, match="no train row keeps a trained token"):
        run_sft(
            SFTConfig(max_steps=1, max_length=32),
            tiny_model_dir,
            rows,
            None,
            tmp_path,
            RecordingTracker(),
        )


def test_one_row_with_a_one_row_eval_set_trains(tiny_model_dir: Path, tmp_path: Path) -> None:
    rows = [{"prompt": "only one?", "response": "yes."}]
    config = SFTConfig(max_steps=2, batch_size=4, lora=None)
    result = run_sft(config, tiny_model_dir, rows, rows, tmp_path, RecordingTracker())
    assert result.steps == 2 and result.merged is not None and result.metrics["eval_loss"] > 0
