"""Incremental detokenisation: no broken UTF-8 in deltas, stop sequences held back and cut."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llmloop.engines.detokenize import TextStream, decode_deltas, make_batch_decoder

TEXT = "héllo wörld 🙂 ünïcode ✓ done"


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def feed(tokenizer: Any, stream: TextStream, ids: list[int]) -> list[str]:
    decode = make_batch_decoder(tokenizer)
    deltas = []
    for n in range(1, len(ids) + 1):
        deltas.extend(decode_deltas(decode, [stream], [ids[:n]]))
    deltas.append(stream.finish())
    return deltas


def test_deltas_never_split_a_character_and_join_to_the_text(tokenizer: Any) -> None:
    ids = tokenizer(TEXT)["input_ids"]
    assert len(ids) > len(TEXT.split())  # multi-byte characters span several byte tokens
    deltas = feed(tokenizer, TextStream(), ids)
    assert all("\ufffd" not in d for d in deltas)
    assert "".join(deltas) == TEXT


def test_stop_sequence_is_cut_and_never_emitted(tokenizer: Any) -> None:
    ids = tokenizer(TEXT)["input_ids"]
    stream = TextStream(stops=("ünï", "zzz"))
    deltas = feed(tokenizer, stream, ids)
    assert "".join(deltas) == TEXT[: TEXT.index("ünï")]
    assert stream.stopped
    assert not any("ü" in d for d in deltas)


def test_partial_stop_prefix_is_released_when_it_does_not_complete() -> None:
    stream = TextStream(stops=("abc",))
    assert stream.accept("", "xab", 1) == "x"  # "ab" might become "abc"
    assert stream.accept("xab", "xabd", 2) == "abd"
    assert stream.finish() == ""
    assert not stream.stopped
