"""The streamed profile and its HTML report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from llmloop.data.profile import DataProfile, ProfileConfig, Profiler, profile_rows
from llmloop.data.report import render_report
from llmloop.data.text import TextTokenizer, detect_language, toxicity_scores
from llmloop.errors import ConfigError, InvalidInputError

BASE = [{"text": f"row number {i} says something different about item {i * 7}"} for i in range(60)]


def test_fields_types_and_nulls() -> None:
    rows = [{"text": "a b", "score": 1}, {"text": "c", "score": None}, {"text": "d e f"}]
    profile = profile_rows([rows], ProfileConfig(toxicity=False))
    fields = {f.name: f for f in profile.fields}
    assert fields["text"].types == {"string": 3} and fields["text"].null_rate == 0
    assert fields["score"].types == {"number": 1, "null": 1}
    assert fields["score"].null_count == 2
    assert profile.chars.max == 5 and profile.tokens.max == 3


def test_batches_give_the_same_profile_as_one_stream() -> None:
    rows = [*BASE, BASE[0], {"text": ""}]
    whole = profile_rows([rows])
    parts = profile_rows([rows[:7], rows[7:30], rows[30:]])
    assert whole.model_dump() == parts.model_dump()
    assert whole.findings["exact_duplicate"].count == 1
    assert whole.findings["empty"].samples[0].row == 61


def test_invalid_rows_against_the_first_rows_shape() -> None:
    rows = [{"prompt": "p", "response": "r"}, {"prompt": "p"}, {"prompt": 3, "response": "r"}]
    profile = profile_rows([rows], ProfileConfig(toxicity=False))
    assert profile.shape == "instruction"
    assert profile.findings["invalid"].count == 2
    assert "missing column" in profile.findings["invalid"].samples[0].detail


def test_languages_ngrams_and_outliers() -> None:
    rows = [
        *BASE,
        {"text": "Ceci est une phrase en français sur la météo et le marché."},
        {"text": "word " * 3000},
    ]
    profile = profile_rows([rows], ProfileConfig(top_ngrams=3))
    assert profile.languages["en"] > 0.9 and "fr" in profile.languages
    assert profile.top_ngrams["2"][0] == ("word word", 2999)
    assert [s.row for s in profile.findings["length_outlier"].samples] == [61]
    assert json.loads(profile.model_dump_json())["row_count"] == 62


def test_local_tokenizer_file(tmp_path: Path) -> None:
    tokenizers = pytest.importorskip("tokenizers")
    model = tokenizers.models.WordLevel({"[UNK]": 0, "hello": 1, "world": 2}, unk_token="[UNK]")
    tok = tokenizers.Tokenizer(model)
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tok.save(str(tmp_path / "tokenizer.json"))
    counter = TextTokenizer(str(tmp_path))
    assert counter.count(["hello world", "hello"]) == [2, 1]
    profile = profile_rows(
        [[{"text": "hello world again"}]], ProfileConfig(tokenizer=str(tmp_path))
    )
    assert profile.tokens.max == 3 and profile.tokenizer == str(tmp_path)
    with pytest.raises(ConfigError, match="tokenizer file not found"):
        TextTokenizer(str(tmp_path / "missing")).count(["x"])


def test_text_measures() -> None:
    assert detect_language("The weather is lovely in the mountains today.") == "en"
    assert detect_language("1234 5678") == "und"
    low, high = toxicity_scores(["have a lovely day", "you are a fucking idiot"])
    assert low < 0.5 < high


def test_empty_and_bad_configs() -> None:
    with pytest.raises(InvalidInputError, match="empty dataset"):
        profile_rows([])
    with pytest.raises(ValueError):
        ProfileConfig(histogram_bins=1)
    with pytest.raises(ValueError):
        ProfileConfig(unknown=True)  # type: ignore[call-arg]
    profiler = Profiler(ProfileConfig(toxicity=False, pii=False))
    profiler.update([])
    profiler.update([{"text": "x"}, "not a row"])  # type: ignore[list-item]
    assert profiler.finish().findings["invalid"].count == 1


def test_report_is_self_contained_and_escaped() -> None:
    rows = [*BASE, {"text": "<script>alert('x')</script> mail a@b.co"}]
    profile = profile_rows([rows])
    page = render_report(profile, title="demo <1>")
    assert page.startswith("<!doctype html>") and "demo &lt;1&gt;" in page
    assert page.count("<svg") >= 3
    assert "<script>alert" not in page and "&lt;script&gt;" in page
    assert not re.search(r"(src|href)=[\"']https?:", page)
    assert "<link" not in page
    assert isinstance(DataProfile.model_validate_json(profile.model_dump_json()), DataProfile)
