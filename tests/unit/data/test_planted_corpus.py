"""The corpus with planted problems goes through profile -> clean -> split; each problem is found.

``tests/fixtures/data/problem_corpus.jsonl`` labels every row with what was planted in it
(``planted``): duplicates, near duplicates, PII of every kind, HTML, mojibake, toxic lines,
empty rows, a length outlier, a French line and model boilerplate.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from llmloop.data.loaders import LoadOptions, RowReader
from llmloop.data.profile import DataProfile, ProfileConfig, profile_rows
from llmloop.data.recipes import RecipeReport, apply_recipe
from llmloop.data.report import render_report
from llmloop.data.split import SplitConfig, split_rows

CORPUS = Path(__file__).parents[2] / "fixtures" / "data" / "problem_corpus.jsonl"
RECIPE = """
name: planted-cleanup
steps:
  - fix_unicode: {}
  - strip_html: {}
  - whitespace: {}
  - drop_empty: {}
  - deny_list: {builtin: [boilerplate]}
  - exact_dedup: {}
  - near_dedup: {threshold: 0.7}
  - pii: {action: redact}
  - toxicity_filter: {threshold: 0.8}
  - language_filter: {languages: [en]}
  - length_filter: {min: 10, max: 2000}
"""


@pytest.fixture(scope="module")
def rows() -> list[dict[str, object]]:
    return [row for batch in RowReader(str(CORPUS), LoadOptions(batch_size=64)) for row in batch]


@pytest.fixture(scope="module")
def profile(rows: list[dict[str, object]]) -> DataProfile:
    return profile_rows(
        [rows[i : i + 50] for i in range(0, len(rows), 50)], ProfileConfig(samples_per_finding=50)
    )


@pytest.fixture(scope="module")
def cleaned(rows: list[dict[str, object]]) -> tuple[list[dict[str, object]], RecipeReport]:
    return apply_recipe(RECIPE, [rows])


def test_profile_finds_every_planted_problem(
    rows: list[dict[str, object]], profile: DataProfile
) -> None:
    planted = {row["id"]: row["planted"] for row in rows}
    expected = Counter(planted.values())
    for finding, label in [
        ("exact_duplicate", "exact_duplicate"),
        ("near_duplicate", "near_duplicate"),
        ("pii", "pii"),
        ("toxic", "toxic"),
        ("html", "html"),
        ("mojibake", "mojibake"),
        ("empty", "empty"),
        ("length_outlier", "length_outlier"),
    ]:
        flagged = {planted[s.row] for s in profile.findings[finding].samples}
        assert flagged == {label}, finding
        assert profile.findings[finding].count == expected[label], finding
    assert set(profile.pii_counts) == {
        "email",
        "phone",
        "credit_card",
        "iban",
        "ssn",
        "national_id",
        "ip_address",
        "url_credentials",
        "secret",
    }
    assert "fr" in profile.languages
    assert "<svg" in render_report(profile)


def test_recipe_removes_or_fixes_each_problem(
    cleaned: tuple[list[dict[str, object]], RecipeReport],
) -> None:
    out, report = cleaned
    left = Counter(row["planted"] for row in out)
    for gone in (
        "exact_duplicate",
        "near_duplicate",
        "toxic",
        "empty",
        "french",
        "boilerplate",
        "length_outlier",
    ):
        assert left[gone] == 0, gone
    assert left["clean"] == 170 and left["pii"] == 9 and left["html"] == 5 and left["mojibake"] == 5
    removed = {s.step: s.rows_removed for s in report.steps}
    assert removed == {
        "fix_unicode": 0,
        "strip_html": 0,
        "whitespace": 0,
        "drop_empty": 3,
        "deny_list": 1,
        "exact_dedup": 5,
        "near_dedup": 5,
        "pii": 0,
        "toxicity_filter": 5,
        "language_filter": 1,
        "length_filter": 1,
    }
    assert report.step("fix_unicode").rows_changed == 5
    assert report.step("strip_html").rows_changed == 5
    assert report.step("pii").rows_changed == 9
    text = "\n".join(str(row["text"]) for row in out)
    assert "<" not in text and "Ã" not in text and "@" not in text and "AKIA" not in text
    assert report.rows_out == len(out) == 189


def test_split_of_cleaned_rows_has_no_leakage(
    rows: list[dict[str, object]], cleaned: tuple[list[dict[str, object]], RecipeReport]
) -> None:
    out, _ = cleaned
    result = split_rows(out, SplitConfig(seed=3))
    assert sum(result.counts.values()) == len(out)
    assert result.leakage.exact == result.leakage.near == 0
    raw = split_rows(rows, SplitConfig(seed=3))
    assert raw.leakage.exact + raw.leakage.near > 0
