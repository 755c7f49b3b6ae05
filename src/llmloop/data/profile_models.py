"""What a data profile reports and how it is configured: ``ProfileConfig`` and ``DataProfile``.

Plain pydantic values (stored as JSON on a dataset version, rendered by ``report``), with the
statistics of sampled estimates: which rows a per-row model scores (``sampled_rows``) and the
Wilson interval of a sampled rate.

It measures nothing itself: ``profile.Profiler`` fills these.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class ProfileConfig(BaseModel):
    """What the profile measures and how much it keeps."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tokenizer: str | None = Field(
        default=None, description="Local tokenizer.json (or folder); unset uses a regex tokenizer."
    )
    histogram_bins: int = Field(default=30, ge=2, le=200, description="Bins per histogram.")
    language_sample: int = Field(default=2000, ge=0, description="Rows sampled for languages.")
    near_dup_threshold: float = Field(default=0.8, gt=0, lt=1, description="MinHash Jaccard.")
    num_perm: int = Field(
        default=32, ge=8, le=512, description="MinHash permutations (more: finer, slower)."
    )
    pii: bool = Field(default=True, description="Count PII hits by kind.")
    pii_name_model: str | None = Field(
        default=None,
        description="A token-classification (NER) model directory: also count personal names "
        "(slower: the model reads every row).",
    )
    toxicity: bool = Field(default=True, description="Score toxicity (alt-profanity-check).")
    toxicity_threshold: float = Field(default=0.8, ge=0, le=1, description="Toxic above this.")
    ngram_sizes: list[int] = Field(default_factory=lambda: [2, 3], description="n of the n-grams.")
    top_ngrams: int = Field(default=20, ge=0, description="How many n-grams to report per n.")
    ngram_rows: int = Field(
        default=20_000, ge=0, description="Rows (from the start) whose n-grams are counted."
    )
    outlier_z: float = Field(default=4.0, gt=0, description="Length z-score that is an outlier.")
    samples_per_finding: int = Field(default=3, ge=0, le=50, description="Sample rows kept.")
    sample_chars: int = Field(default=200, ge=20, description="Characters kept of a sample.")
    seed: int = Field(default=0, description="Seed of the language and model samples.")
    threads: int = Field(
        default=2,
        ge=1,
        le=2,
        description="2: MinHash signatures run in a second thread beside the rest of each batch "
        "(numpy releases the GIL); 1: all in the caller's thread. Same results either way.",
    )
    processes: int = Field(
        default_factory=lambda: min(2, os.cpu_count() or 1),
        ge=1,
        le=64,
        description="Processes scanning each large batch (Linux: forked helpers scan parts of "
        "it beside this one; default: 2, or 1 on one CPU). Same results either way.",
    )
    split_rows: int = Field(
        default=4096, ge=1, description="Fewest rows per process when a batch is split."
    )
    cache_dir: str | None = Field(
        default=None,
        description="Folder for a decompressed copy of the language model (later runs load it "
        "in tens of ms instead of 0.3-0.5 s); unset: decompress it in every process.",
    )
    full_scan_rows: int = Field(
        default=20_000, ge=0, description="Rows (from the start) the toxicity model scores all of."
    )
    model_sample_rate: float = Field(
        default=0.05,
        gt=0,
        le=1,
        description="Share of later rows (uniform, by row-index hash) the toxicity model scores.",
    )


class FieldProfile(BaseModel):
    name: str
    types: dict[str, int] = Field(description="JSON type name -> count.")
    null_count: int
    null_rate: float
    empty_count: int = Field(default=0, description="Values that are the empty string.")
    constant: bool = Field(default=False, description="Every row holds the same non-null value.")
    constant_value: Any = Field(default=None, description="That value, when constant.")


class Histogram(BaseModel):
    edges: list[float]
    counts: list[int]


class LengthStats(BaseModel):
    mean: float = 0.0
    std: float = 0.0
    min: int = 0
    max: int = 0
    p50: float = 0.0
    p90: float = 0.0
    p99: float = 0.0
    histogram: Histogram = Field(default_factory=lambda: Histogram(edges=[], counts=[]))


class SampleRow(BaseModel):
    row: int = Field(description="0-based row index in the profiled stream.")
    text: str = Field(description="The start of the row's text.")
    detail: str = ""


class Finding(BaseModel):
    count: int = Field(default=0, description="Rows with the finding (estimated if ``estimated``).")
    rate: float = 0.0
    samples: list[SampleRow] = Field(default_factory=list)
    estimated: bool = Field(default=False, description="Count and rate come from a sample.")
    sample_size: int | None = Field(default=None, description="Rows examined, when sampled.")
    ci95: tuple[float, float] | None = Field(
        default=None, description="95% interval of the rate, when sampled."
    )


class DataProfile(BaseModel):
    """The profile of one dataset version (stored as JSON on the version)."""

    row_count: int
    shape: str
    fields: list[FieldProfile]
    tokenizer: str
    chars: LengthStats
    tokens: LengthStats
    languages: dict[str, float] = Field(description="Language code -> share of sampled rows.")
    language_sample_size: int
    language_ci95: dict[str, tuple[float, float]] = Field(
        default_factory=dict, description="Language code -> 95% interval of its share."
    )
    pii_counts: dict[str, int] = Field(description="PII kind -> number of hits.")
    top_ngrams: dict[str, list[tuple[str, int]]]
    findings: dict[str, Finding] = Field(
        description="Finding name -> rows, rate and samples: "
        + ", ".join(
            ("exact_duplicate", "near_duplicate", "pii", "toxic", "html", "mojibake", "empty")
        )
        + ", invalid, length_outlier."
    )
    notes: list[str] = Field(default_factory=list)

    def rate(self, finding: str) -> float:
        """Share of rows with ``finding`` (0 when it was not measured)."""
        return self.findings[finding].rate if finding in self.findings else 0.0


def wilson_interval(hits: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval of a proportion ``hits / n`` (``(0, 1)`` when ``n`` is 0)."""
    if n <= 0:
        return (0.0, 1.0)
    z = 1.959963984540054
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def sampled_rows(start: int, count: int, config: ProfileConfig) -> np.ndarray:
    """Which rows ``start .. start+count`` the per-row models score: the first ``full_scan_rows``,
    then a uniform sample by a splitmix64 hash of the row index (content-blind, reproducible)."""
    index = np.arange(start, start + count, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = index + np.uint64(0x9E3779B97F4A7C15) * np.uint64(config.seed + 1)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    chosen = (z >> np.uint64(11)).astype(np.float64) / float(1 << 53) < config.model_sample_rate
    return chosen | (index < np.uint64(config.full_scan_rows))
