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


def test_streams_that_keep_special_tokens_decode_them_in_the_same_batch(tokenizer: Any) -> None:
    ids = tokenizer("<|user|>Hello<|end|> done", add_special_tokens=False)["input_ids"]
    plain, kept = TextStream(), TextStream(keep_special=True)
    skip, keep = make_batch_decoder(tokenizer), make_batch_decoder(tokenizer, False)
    deltas: list[list[str]] = [[], []]
    for n in range(1, len(ids) + 1):
        pair = decode_deltas(skip, [plain, kept], [ids[:n]] * 2, keep)
        for out, delta in zip(deltas, pair, strict=True):
            out.append(delta)
    assert "".join(deltas[0]) + plain.finish() == "Hello done"
    assert "".join(deltas[1]) + kept.finish() == "<|user|>Hello<|end|> done"
