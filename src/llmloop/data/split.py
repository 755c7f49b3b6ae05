"""Splits: train/validation/test by ratio, optionally stratified, deterministic, leakage-checked.

``split_rows`` shuffles with a seeded RNG (per stratum when ``stratify_by`` is set) and cuts by
ratio (largest remainder, so counts add up). With ``group_by`` the unit shuffled and cut is a
group (every row sharing that field's value, e.g. the turns of one conversation), so a group never
spans two splits; shares then count groups. It then looks for leakage: rows of a later split
that are exact (normalised text) or near (MinHash) duplicates of a row in an earlier split
(order: as the ratios are given), reports them, and removes them from the later split when
asked.

It holds the rows of the dataset in memory (a split is a permutation); it does not store them.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from llmloop.data.dedup import NearDupIndex, exact_key
from llmloop.data.shapes import Row, row_text
from llmloop.errors import InvalidInputError

MAX_LEAK_EXAMPLES = 5


class SplitConfig(BaseModel):
    """How to split."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ratios: dict[str, float] = Field(
        default_factory=lambda: {"train": 0.8, "validation": 0.1, "test": 0.1},
        description="Split name -> share; shares must be positive and sum to 1.",
    )
    seed: int = Field(default=0, description="Seed of the shuffle.")
    stratify_by: str | None = Field(default=None, description="Field whose values keep their mix.")
    group_by: str | None = Field(
        default=None,
        description="Field naming a group (e.g. a conversation id) whose rows stay in one split; "
        "shares then count groups, and a group's stratum is its first row's.",
    )
    check_leakage: bool = Field(default=True, description="Look for duplicates across splits.")
    near_dup_threshold: float = Field(default=0.8, gt=0, lt=1, description="MinHash Jaccard.")
    remove_leaks: bool = Field(default=False, description="Drop leaking rows from later splits.")

    @field_validator("ratios")
    @classmethod
    def _shares(cls, ratios: dict[str, float]) -> dict[str, float]:
        if not ratios or any(r <= 0 for r in ratios.values()):
            raise ValueError("give at least one split, each with a positive share")
        if abs(sum(ratios.values()) - 1.0) > 1e-6:
            raise ValueError(f"shares must sum to 1, not {sum(ratios.values()):.4f}")
        return ratios


class Leak(BaseModel):
    kind: str = Field(description="'exact' or 'near'.")
    split: str = Field(description="The later split holding the leaking row.")
    other_split: str = Field(description="The earlier split holding its twin.")
    text: str


class LeakageReport(BaseModel):
    exact: int = 0
    near: int = 0
    removed: int = 0
    examples: list[Leak] = Field(default_factory=list)


class SplitResult(BaseModel):
    splits: dict[str, list[Row]]
    counts: dict[str, int]
    strata: dict[str, dict[str, int]] = Field(
        default_factory=dict, description="Split -> stratum value -> rows, when stratified."
    )
    leakage: LeakageReport


def _cut(count: int, ratios: dict[str, float]) -> list[int]:
    exact = [count * r for r in ratios.values()]
    sizes = [int(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: exact[i] - sizes[i], reverse=True)
    for i in by_remainder[: count - sum(sizes)]:
        sizes[i] += 1
    return sizes


def _key(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


def _field(row: Row, index: int, name: str, purpose: str) -> Any:
    if name not in row:
        raise InvalidInputError(f"row {index} has no field {name!r} to {purpose}")
    return row[name]


def _units(data: list[Row], cfg: SplitConfig) -> dict[str, list[list[int]]]:
    """Stratum -> units (lists of row indices): one row each, or one group each."""
    units: dict[str, list[int]] = {}
    for index, row in enumerate(data):
        group = cfg.group_by
        key = _key(_field(row, index, group, "group by")) if group is not None else str(index)
        units.setdefault(key, []).append(index)
    strata: dict[str, list[list[int]]] = defaultdict(list)
    for members in units.values():
        first = members[0]
        by = cfg.stratify_by
        value = _field(data[first], first, by, "stratify by") if by is not None else ""
        strata[_key(value)].append(members)
    return strata


def split_rows(rows: Iterable[Row], config: SplitConfig | None = None) -> SplitResult:
    """Split ``rows`` as ``config`` says; the same rows and seed always give the same splits."""
    cfg = config if config is not None else SplitConfig()
    data = list(rows)
    if not data:
        raise InvalidInputError("cannot split an empty dataset")
    rng = random.Random(cfg.seed)
    assigned: dict[str, list[int]] = {name: [] for name in cfg.ratios}
    strata: dict[str, dict[str, int]] = {name: {} for name in cfg.ratios}
    for value, units in sorted(_units(data, cfg).items()):
        rng.shuffle(units)
        start = 0
        for name, size in zip(cfg.ratios, _cut(len(units), cfg.ratios), strict=True):
            taken = [index for unit in units[start : start + size] for index in unit]
            assigned[name].extend(taken)
            strata[name][value] = len(taken)
            start += size
    for indices in assigned.values():
        rng.shuffle(indices)
    splits = {name: [data[i] for i in indices] for name, indices in assigned.items()}
    leakage = (
        find_leakage(splits, cfg.near_dup_threshold, cfg.remove_leaks)
        if cfg.check_leakage
        else LeakageReport()
    )
    return SplitResult(
        splits=splits,
        counts={name: len(r) for name, r in splits.items()},
        strata=strata if cfg.stratify_by is not None else {},
        leakage=leakage,
    )


def find_leakage(
    splits: dict[str, list[Row]], threshold: float = 0.8, remove: bool = False
) -> LeakageReport:
    """Rows of later splits duplicating rows of earlier ones; removed in place when ``remove``."""
    report = LeakageReport()
    owner_exact: dict[bytes, str] = {}
    owner_near: dict[int, str] = {}
    index = NearDupIndex(threshold=threshold, num_perm=128)
    for name, rows in splits.items():
        texts = [row_text(r) for r in rows]
        near = index.similar(texts)
        keep: list[Row] = []
        for row, text, matches in zip(rows, texts, near, strict=True):
            key = exact_key(text)
            other = owner_exact.get(key)
            kind = "exact" if other is not None and other != name else None
            if kind is None:
                other = next((owner_near[m] for m in matches if owner_near[m] != name), None)
                kind = "near" if other is not None else None
            if kind is not None and other is not None:
                report.exact += kind == "exact"
                report.near += kind == "near"
                if len(report.examples) < MAX_LEAK_EXAMPLES:
                    report.examples.append(
                        Leak(kind=kind, split=name, other_split=other, text=text[:200])
                    )
                if remove:
                    report.removed += 1
                    continue
            keep.append(row)
            owner_exact.setdefault(key, name)
        kept_texts = [row_text(r) for r in keep]
        for node in index.add(kept_texts):
            owner_near[node] = name
        splits[name] = keep
    return report
