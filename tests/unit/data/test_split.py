"""Splits: ratios, stratification, determinism and leakage."""

from __future__ import annotations

import pytest

from llmloop.data.split import SplitConfig, find_leakage, split_rows
from llmloop.errors import InvalidInputError

ROWS = [
    {"text": f"example {i} talks about subject {i * 13} in its own words", "label": i % 3}
    for i in range(90)
]


def test_ratios_and_determinism() -> None:
    first = split_rows(ROWS, SplitConfig(seed=7))
    assert first.counts == {"train": 72, "validation": 9, "test": 9}
    assert split_rows(ROWS, SplitConfig(seed=7)).splits == first.splits
    assert split_rows(ROWS, SplitConfig(seed=8)).splits != first.splits
    together = [r["text"] for part in first.splits.values() for r in part]
    assert sorted(together) == sorted(r["text"] for r in ROWS)


def test_stratified_split_keeps_the_mix() -> None:
    result = split_rows(
        ROWS, SplitConfig(stratify_by="label", ratios={"train": 2 / 3, "test": 1 / 3})
    )
    assert result.strata == {
        "train": {"0": 20, "1": 20, "2": 20},
        "test": {"0": 10, "1": 10, "2": 10},
    }
    assert sorted(r["label"] for r in result.splits["test"]) == [0] * 10 + [1] * 10 + [2] * 10


def test_leakage_reported_and_removed() -> None:
    leaky = [*ROWS, *ROWS[:10], {"text": ROWS[11]["text"] + " indeed", "label": 0}]
    report_only = split_rows(leaky, SplitConfig(seed=1))
    found = report_only.leakage.exact + report_only.leakage.near
    assert found > 0 and report_only.leakage.removed == 0
    cleaned = split_rows(leaky, SplitConfig(seed=1, remove_leaks=True))
    assert cleaned.leakage.removed == found
    assert sum(cleaned.counts.values()) == len(leaky) - found
    again = find_leakage(cleaned.splits)
    assert again.exact == again.near == 0


def test_near_duplicate_leak_across_splits() -> None:
    text = "the quick brown fox jumps over the lazy dog near the quiet river bank"
    splits = {"train": [{"text": text}], "test": [{"text": text + " today"}, {"text": "unrelated"}]}
    report = find_leakage(splits, threshold=0.7, remove=True)
    assert (report.exact, report.near, report.removed) == (0, 1, 1)
    assert report.examples[0].split == "test" and report.examples[0].other_split == "train"
    assert splits["test"] == [{"text": "unrelated"}]


def test_bad_input() -> None:
    with pytest.raises(InvalidInputError, match="empty dataset"):
        split_rows([])
    with pytest.raises(InvalidInputError, match="no field 'topic'"):
        split_rows(ROWS, SplitConfig(stratify_by="topic"))
    with pytest.raises(ValueError, match="sum to 1"):
        SplitConfig(ratios={"train": 0.5, "test": 0.2})
    with pytest.raises(ValueError, match="positive share"):
        SplitConfig(ratios={"train": 1.0, "test": 0.0})


def test_group_by_keeps_a_conversation_in_one_split() -> None:
    # Turns of a conversation differ in text, so the leakage check alone would not see them.
    turns = [
        {
            "conversation": f"c{c}",
            "text": f"turn {t} of talk {c}: " + "word " * (c + t),
            "lang": c % 2,
        }
        for c in range(40)
        for t in range(c % 4 + 1)
    ]
    config = SplitConfig(group_by="conversation", seed=3)
    result = split_rows(turns, config)
    owners: dict[str, set[str]] = {}
    for name, part in result.splits.items():
        for row in part:
            owners.setdefault(row["conversation"], set()).add(name)
    assert all(len(splits) == 1 for splits in owners.values()) and len(owners) == 40
    groups = {name: {r["conversation"] for r in part} for name, part in result.splits.items()}
    assert {name: len(g) for name, g in groups.items()} == {"train": 32, "validation": 4, "test": 4}
    assert sum(result.counts.values()) == len(turns)
    assert split_rows(turns, config).splits == result.splits
    assert split_rows(turns, SplitConfig(group_by="conversation", seed=4)).splits != result.splits
    both = split_rows(turns, SplitConfig(group_by="conversation", stratify_by="lang"))
    assert set(both.strata["train"]) == {"0", "1"}
    with pytest.raises(InvalidInputError, match="row 0 has no field 'session' to group by"):
        split_rows(turns, SplitConfig(group_by="session"))


def test_seeded_splits_do_not_move_when_grouping_is_off() -> None:
    # The same seed must give the same rows as before group_by existed (saved splits stay valid).
    result = split_rows(ROWS[:10], SplitConfig(seed=0, ratios={"train": 0.7, "test": 0.3}))
    assert [r["text"].split()[1] for r in result.splits["test"]] == ["6", "9", "0"]


@pytest.mark.parametrize(
    ("size", "counts"), [(1, [1, 0, 0]), (2, [2, 0, 0]), (3, [3, 0, 0]), (7, [5, 1, 1])]
)
def test_tiny_sizes_add_up(size: int, counts: list[int]) -> None:
    result = split_rows(ROWS[:size], SplitConfig())
    assert list(result.counts.values()) == counts
