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


def test_ngram_counts_match_a_plain_counter_across_batches() -> None:
    from collections import Counter

    from llmloop.data.dedup import words_of

    texts = [f"the cat sat on the mat {i % 7} and the cat ran" for i in range(300)]
    rows = [{"text": t} for t in texts]
    profile = profile_rows(
        [rows[:50], rows[50:170], rows[170:]], ProfileConfig(top_ngrams=5, toxicity=False)
    )
    for n in (2, 3):
        plain: Counter[str] = Counter()
        for t in texts:
            w = words_of(t)
            plain.update(" ".join(w[i : i + n]) for i in range(len(w) - n + 1))
        got = profile.top_ngrams[str(n)]
        assert [c for _, c in got] == [c for _, c in plain.most_common(5)]
        assert all(plain[gram] == count for gram, count in got)


def test_toxicity_is_sampled_above_the_threshold_and_reported_as_an_estimate() -> None:
    toxic = "you are a fucking idiot and a moron"
    rows = [
        {"text": toxic if i % 10 == 0 else f"a calm note about the weather {i}"}
        for i in range(2_000)
    ]
    config = ProfileConfig(full_scan_rows=500, model_sample_rate=0.5, pii=False)
    profile = profile_rows([rows[i : i + 300] for i in range(0, 2_000, 300)], config)
    toxic_finding = profile.findings["toxic"]
    assert toxic_finding.estimated and toxic_finding.ci95 is not None
    assert 500 < (toxic_finding.sample_size or 0) < 2_000
    low, high = toxic_finding.ci95
    assert low <= 0.1 <= high and abs(toxic_finding.rate - 0.1) < 0.03
    assert any("toxicity scored" in note for note in profile.notes)
    assert "estimate from" in render_report(profile)
    exact = profile_rows([rows[:400]], config).findings["toxic"]
    assert not exact.estimated and exact.count == 40 and exact.ci95 is None


def test_language_shares_carry_intervals_when_sampled() -> None:
    rows = [{"text": f"the weather today is lovely and warm number {i}"} for i in range(300)]
    profile = profile_rows([rows], ProfileConfig(language_sample=50, toxicity=False))
    assert profile.language_sample_size == 50
    low, high = profile.language_ci95["en"]
    assert low < profile.languages["en"] <= high


def test_batched_token_counts_match_the_regex() -> None:
    import random

    from llmloop.data.text import _REGEX_TOKEN

    rng = random.Random(3)
    alphabet = [chr(i) for i in range(128)] + list("éü日本ß\u00a0\u2028")
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30))) for _ in range(800)]
    texts += ["", "ab", "cd", "", "!!", "a\ud800b"]
    counts = TextTokenizer().count(texts)
    assert counts == [len(_REGEX_TOKEN.findall(t)) for t in texts]


def _mixed_rows(count: int) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for i in range(count):
        kind = i % 9
        if kind == 0:
            text = f"write to user{i % 40}@example.com or call +1 415-555-{i % 90:04d}"
        elif kind == 1:
            text = "you are a stupid idiot and a moron"
        elif kind == 2:
            text = "<b>bold</b> &amp; markup here"
        elif kind == 3:
            text = ""
        elif kind == 4:
            text = "Ceci est une phrase en français sur la météo."
        else:
            text = f"plain words about item {i % 300} and some more words {i % 11}"
        rows.append({"text": text, "n": i})
    return rows


def _split_config(processes: int) -> ProfileConfig:
    return ProfileConfig(
        processes=processes, split_rows=50, ngram_rows=200, language_sample=300, full_scan_rows=500
    )


def test_helper_processes_give_the_same_profile() -> None:
    rows = _mixed_rows(3000)
    batches = [rows[i : i + 400] for i in range(0, len(rows), 400)]
    alone = profile_rows(batches, _split_config(1))
    split = profile_rows(batches, _split_config(3))
    assert split.model_dump() == alone.model_dump()
    assert alone.findings["exact_duplicate"].count > 0 and alone.pii_counts["email"] > 0
    assert alone.language_sample_size == 300 and "fr" in alone.languages


def test_a_helper_that_dies_is_replaced_by_this_process() -> None:
    import os
    import signal

    rows = _mixed_rows(2400)
    batches = [rows[i : i + 400] for i in range(0, len(rows), 400)]
    expected = profile_rows(batches, _split_config(1))
    profiler = Profiler(_split_config(2))
    for number, batch in enumerate(batches):
        profiler.update(batch)
        if number == 2:
            helpers = profiler._helpers or []
            assert helpers, "the batch was split"
            os.kill(helpers[0].process.pid, signal.SIGKILL)
    assert profiler.finish().model_dump() == expected.model_dump()
    assert profiler._helpers == []


def test_a_helper_error_is_raised_here_and_ends_the_helpers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os

    from llmloop.data import profile_scan

    parent = os.getpid()
    scan = profile_scan.Scanner.scan

    def failing(
        self: profile_scan.Scanner, batch: list[object], base: int, *args: object
    ) -> object:
        if os.getpid() != parent:
            raise InvalidInputError(f"cannot read row {base}")
        return scan(self, batch, base, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(profile_scan.Scanner, "scan", failing)
    rows = _mixed_rows(1600)
    with Profiler(_split_config(2)) as profiler:
        with pytest.raises(InvalidInputError, match="cannot read row"):
            for batch in (rows[i : i + 400] for i in range(0, len(rows), 400)):
                profiler.update(batch)
            profiler.finish()
        helpers = profiler._helpers
    assert helpers == []


def test_toxicity_weights_cache_scores_alike(tmp_path: Path) -> None:
    from llmloop.data import toxicity_weights as tw

    words = [["you", "stupid", "idiot"], ["lovely", "weather", "today"], []]
    package = tw._from_package(tw._package_data())
    for _ in range(2):  # written, then read back
        cached = tw._load(str(tmp_path))
        assert cached.scores(words).tolist() == package.scores(words).tolist()
    assert len(list(tmp_path.glob("profanity-check-*.npz"))) == 1
    (next(tmp_path.glob("*.npz"))).write_bytes(b"not a zip")  # a damaged copy: rebuilt
    assert tw._load(str(tmp_path)).scores(words).tolist() == package.scores(words).tolist()


def test_empty_null_and_constant_columns_are_called_out() -> None:
    rows = [
        {"text": f"row {i}", "blank": "", "gone": None, "kind": "faq", "meta": {"v": 1}, "n": i}
        for i in range(30)
    ]
    rows[-1] = {**rows[-1], "note": "only here"}
    first = profile_rows([rows[:10], rows[10:]], ProfileConfig(toxicity=False))
    fields = {f.name: f for f in first.fields}
    assert fields["blank"].empty_count == 30 and fields["blank"].constant
    assert fields["kind"].constant and fields["kind"].constant_value == "faq"
    assert fields["meta"].constant and fields["meta"].constant_value == {"v": 1}
    assert not fields["gone"].constant and not fields["n"].constant and not fields["text"].constant
    assert not fields["note"].constant  # present in one row of 30
    html = render_report(first)
    assert "all empty" in html and "all null or missing" in html
    assert "constant: &#x27;faq&#x27;" in html and "constant: {&#x27;v&#x27;: 1}" in html
