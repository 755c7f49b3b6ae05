"""The demo's tiny foundation: tokenizer and Llama built from texts, then briefly pre-trained."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmloop.errors import InvalidInputError
from llmloop.testing.tiny import DEFAULT_TEXTS
from llmloop.trainers.base import RecordingTracker
from llmloop.trainers.perplexity import perplexity
from llmloop.trainers.pretrain import BaseModelConfig, init_base
from llmloop.trainers.sft import load_base


def test_init_base_learns_the_texts(tmp_path: Path) -> None:
    tracker = RecordingTracker()
    config = BaseModelConfig(steps=30, seq_len=32, batch_size=8, hidden_size=32, heads=2)
    result = init_base(DEFAULT_TEXTS, tmp_path, config, tracker)
    assert result.merged is not None and result.steps == 30
    initial, tokenizer = load_base(tmp_path / "init")
    trained, _ = load_base(result.merged)
    texts = DEFAULT_TEXTS[:5]
    assert perplexity(trained, tokenizer, texts) < perplexity(initial, tokenizer, texts) / 3
    assert trained.config.hidden_size == 32
    assert tokenizer.chat_template  # usable for chat fine-tuning next
    assert tracker.params["steps"] == 30 and tracker.series("loss")


def test_init_base_refuses_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="non-empty text"):
        init_base(["", "  "], tmp_path, BaseModelConfig(), RecordingTracker())
    with pytest.raises(InvalidInputError, match="divide"):
        init_base(["a"], tmp_path, BaseModelConfig(hidden_size=30, heads=4), RecordingTracker())
