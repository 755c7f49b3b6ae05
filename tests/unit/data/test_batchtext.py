"""Column-wise measures of a batch equal their per-row definitions; column fast paths equal the
row-by-row ones they replace (texts, validity, ingest)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from llmloop.data.batchtext import BatchText, row_keys
from llmloop.data.dedup import words_of
from llmloop.data.loaders import LoadOptions, RowReader
from llmloop.data.profile import ProfileConfig, profile_rows
from llmloop.data.shapes import batch_texts, row_problem, row_text, rows_all_valid
from llmloop.data.text import _REGEX_TOKEN, detect_language

EDGES = ["", "  ", "\t\n", "ab", "", "!!", "a\ud800b", "Héllo Wörld", "\u3000", "x_y 12", ""]


def _check(texts: list[str]) -> None:
    measured = BatchText(texts)
    assert measured.regex_tokens().tolist() == [len(_REGEX_TOKEN.findall(t)) for t in texts]
    assert measured.empty().tolist() == [not t.strip() for t in texts]
    vocabulary, ids, lengths = measured.word_ids()
    flat = [vocabulary[i] for i in ids.tolist()]
    assert len(set(vocabulary)) == len(vocabulary)  # distinct
    expected = [[w.encode("utf-8", "surrogatepass") for w in words_of(t)] for t in texts]
    assert lengths.tolist() == [len(words) for words in expected]
    assert flat == [w for words in expected for w in words]
    keys = row_keys(measured.word_keys(), lengths)
    by_words: dict[tuple[bytes, ...], int] = {}
    for words, key in zip(expected, keys.tolist(), strict=True):
        assert by_words.setdefault(tuple(words), key) == key  # same words, same key
    assert len(set(by_words.values())) == len(by_words)  # different words, different keys


@settings(max_examples=150, deadline=None)
@given(st.lists(st.text(max_size=30), max_size=12))
def test_batch_measures_match_per_row_definitions(texts: list[str]) -> None:
    ascii_texts = ["".join(ch for ch in t if ch.isascii()) for t in texts]
    for batch in (texts, ascii_texts, texts + EDGES, EDGES + ascii_texts):
        _check(batch)


def test_edge_rows_in_every_position() -> None:
    for cut in range(len(EDGES) + 1):
        _check([*EDGES[cut:], "plain words here", *EDGES[:cut]])
        _check([t for t in EDGES[cut:] if t.isascii()] + ["tail"] + [""] * (cut % 3))


def test_column_texts_and_validity_match_row_by_row() -> None:
    batches: list[list[dict[str, object]]] = [
        [{"text": "a"}, {"text": "b"}],
        [{"prompt": "p", "response": "r"}, {"prompt": "q", "response": "s"}],
        [{"prompt": "p", "response": 3}, {"prompt": "q", "response": "s"}],
        [{"text": "a"}, {"text": None}],
        [{"title": "t", "n": 1}, {"title": "u", "n": 2}],
        [{"title": "t", "body": "b"}, {"title": "u", "body": "c"}],
        [{"title": 1}, {"title": "x"}],
        [{"text": "a", "id": 1}, {"id": 2, "text": "b"}],
        [{"n": 1}, {"n": 2}],
    ]
    for batch in batches:
        assert batch_texts(batch) == [row_text(row) for row in batch]
        for shape in ("text", "instruction", "preference", "table"):
            valid = all(row_problem(row, shape) is None for row in batch)  # type: ignore[arg-type]
            assert not rows_all_valid(batch, shape) or valid  # type: ignore[arg-type]
    assert rows_all_valid(batches[1], "instruction") and not rows_all_valid(
        batches[2], "instruction"
    )


def test_jsonl_chunks_fall_back_line_by_line(tmp_path: Path) -> None:
    lines = [json.dumps({"text": f"row {i}"}) for i in range(3000)]
    lines[1200] = "{not json"
    lines[2500] = ""
    path = tmp_path / "d.jsonl"
    path.write_text("\ufeff" + "\n".join(lines) + "\n", encoding="utf-8")
    reader = RowReader(str(path), LoadOptions(on_error="skip", batch_size=700))
    rows = [row for batch in reader for row in batch]
    assert len(rows) == 2998 and rows[0] == {"text": "row 0"}
    assert reader.report.rows_read == 2998 and reader.report.rows_skipped == 1
    assert reader.report.errors[0].line == 1201


def test_minhash_thread_gives_the_same_profile(tmp_path: Path) -> None:
    rows = [
        {"text": f"the same few words again and again {i % 50} tail {i % 7}"} for i in range(900)
    ]
    batches = [rows[i : i + 128] for i in range(0, len(rows), 128)]
    one = profile_rows(batches, ProfileConfig(threads=1, toxicity=False, pii=False))
    two = profile_rows(batches, ProfileConfig(threads=2, toxicity=False, pii=False))
    assert one.model_dump() == two.model_dump()
    assert one.findings["exact_duplicate"].count == 900 - 350
    assert np.isclose(one.rate("exact_duplicate"), 550 / 900)


def test_batched_language_model_classifies_like_py3langid(tmp_path: Path) -> None:
    from llmloop.data.languages import _BatchModel, _cached_arrays

    langid = __import__("py3langid.langid", fromlist=["langid"])
    texts = [
        "The weather is lovely today.",
        "Ceci est une phrase en français.",
        "Das ist gut.",
        "これは日本語の文です。",
        "Привет, как дела?",
        "¿Dónde está la biblioteca?",
        "HELLO WORLD THIS IS UPPER CASE",
        "مرحبا بالعالم",
        "Olá, tudo bem com você?",
        "x" * 900,
        "a\ud800 lone surrogate",
    ]
    direct = [langid.classify(t)[0] for t in texts]
    for _ in range(2):  # written, then read back
        model = _BatchModel(_cached_arrays(tmp_path / "cache"))
        assert model.classify(texts) == direct
    assert [detect_language(t) for t in texts] == direct
    assert detect_language("1234 5678") == "und"
