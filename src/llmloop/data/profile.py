"""Exploratory analysis: one streamed pass over batches of rows into a JSON-able ``DataProfile``.

Per field: types and null rates. Per row text: length in characters and tokens (histograms,
length outliers by z-score and IQR), exact and near duplicates (MinHash LSH band keys), PII hits
by kind (``guards.pii``), toxicity (alt-profanity-check, batched), HTML markup, mojibake
(ftfy's badness heuristic), empty and shape-invalid rows,
top word n-grams, and a few sample rows per finding. Memory is bounded: per row only a length,
an 8-byte exact key and MinHash band keys are kept; languages are detected on a reservoir
sample, n-grams counted over the first ``ngram_rows`` rows.

It does not change rows (``steps``) or render anything (``report``).
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from itertools import chain
from typing import Any

import numpy as np
from ftfy.badness import is_bad
from pydantic import BaseModel, ConfigDict, Field

from llmloop.data.dedup import (
    MinHasher,
    band_keys,
    candidate_duplicates,
    exact_key_of_words,
    lsh_params,
    words_of,
)
from llmloop.data.shapes import Batch, detect_shape, row_problem, row_text
from llmloop.data.text import TextTokenizer, detect_languages, toxicity_scores
from llmloop.errors import InvalidInputError
from llmloop.guards.pii import PiiDetector

_HTML = re.compile(r"</?(?:[a-zA-Z][a-zA-Z0-9]*)(?:\s[^<>]*)?/?>|&(?:[a-z]+|#\d+);")


#: Rows (from the start) whose text is kept for samples of findings known only at the end.
SAMPLE_TEXT_ROWS = 20_000


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
    seed: int = Field(default=0, description="Seed of the language reservoir sample.")


class FieldProfile(BaseModel):
    name: str
    types: dict[str, int] = Field(description="JSON type name -> count.")
    null_count: int
    null_rate: float


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
    count: int = 0
    rate: float = 0.0
    samples: list[SampleRow] = Field(default_factory=list)


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


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


class Profiler:
    """Accumulates a profile batch by batch; ``finish`` returns the ``DataProfile``."""

    FINDINGS = (
        "exact_duplicate",
        "near_duplicate",
        "pii",
        "toxic",
        "html",
        "mojibake",
        "empty",
        "invalid",
        "length_outlier",
    )

    def __init__(self, config: ProfileConfig | None = None) -> None:
        self.config = config if config is not None else ProfileConfig()
        self.tokenizer = TextTokenizer(self.config.tokenizer)
        self.pii = PiiDetector() if self.config.pii else None
        self.hasher = MinHasher(num_perm=self.config.num_perm, seed=1)
        self.bands, _ = lsh_params(self.config.near_dup_threshold, self.config.num_perm)
        self.rows = 0
        self.shape: str | None = None
        self.types: dict[str, Counter[str]] = {}
        self.chars: list[np.ndarray] = []
        self.tokens: list[np.ndarray] = []
        self.band_keys: list[np.ndarray] = []
        self.seen_exact: set[bytes] = set()
        self.not_near: list[np.ndarray] = []
        self.pii_counts: Counter[str] = Counter()
        self.ngrams: dict[int, Counter[tuple[str, ...]]] = {
            n: Counter() for n in self.config.ngram_sizes
        }
        self.findings = {name: Finding() for name in self.FINDINGS}
        self.reservoir: list[str] = []
        self.short_texts: dict[int, str] = {}
        self._rng = random.Random(self.config.seed)

    def update(self, batch: Batch) -> None:
        """Add one batch of rows."""
        if not batch:
            return
        texts = [row_text(row) if isinstance(row, Mapping) else "" for row in batch]
        base = self.rows
        words = [words_of(t) for t in texts]
        self._fields_and_validity(batch, base)
        self._lengths(texts)
        self._duplicates(texts, words, base)
        self._content(texts, words, base)
        self.rows += len(batch)

    def _sample(self, finding: str, row: int, text: str, detail: str = "") -> None:
        entry = self.findings[finding]
        entry.count += 1
        if len(entry.samples) < self.config.samples_per_finding:
            snippet = text[: self.config.sample_chars]
            entry.samples.append(SampleRow(row=row, text=snippet, detail=detail))

    def _fields_and_validity(self, batch: Batch, base: int) -> None:
        for i, row in enumerate(batch):
            if not isinstance(row, Mapping):
                self._sample("invalid", base + i, repr(row), "not an object")
                continue
            if self.shape is None:
                self.shape = detect_shape(row)
            for name, value in row.items():
                self.types.setdefault(name, Counter())[_json_type(value)] += 1
            problem = row_problem(row, self.shape)  # type: ignore[arg-type]
            if problem is not None:
                self._sample("invalid", base + i, row_text(row), problem)

    def _lengths(self, texts: list[str]) -> None:
        self.chars.append(np.fromiter((len(t) for t in texts), dtype=np.int32, count=len(texts)))
        self.tokens.append(np.asarray(self.tokenizer.count(texts), dtype=np.int32))

    def _duplicates(self, texts: list[str], words: list[list[str]], base: int) -> None:
        # Empty rows and exact duplicates are counted once, not again as near duplicates.
        skip = np.zeros(len(texts), dtype=bool)
        for i, text in enumerate(texts):
            if not text.strip():
                self._sample("empty", base + i, text)
                skip[i] = True
                continue
            key = exact_key_of_words(words[i])[:8]
            if key in self.seen_exact:
                self._sample("exact_duplicate", base + i, text)
                skip[i] = True
            else:
                self.seen_exact.add(key)
        self.not_near.append(skip)
        self.band_keys.append(band_keys(self.hasher.signatures_of_words(words), self.bands))
        for i, text in enumerate(texts[: max(0, SAMPLE_TEXT_ROWS - len(self.short_texts))]):
            self.short_texts[base + i] = text[: self.config.sample_chars]

    def _content(self, texts: list[str], words: list[list[str]], base: int) -> None:
        cfg = self.config
        for i, text in enumerate(texts):
            index = base + i
            if not text.isascii() and is_bad(text):  # mojibake needs non-ASCII characters
                self._sample("mojibake", index, text)
            if ("<" in text or "&" in text) and _HTML.search(text):
                self._sample("html", index, text)
            if cfg.language_sample and text.strip():
                if len(self.reservoir) < cfg.language_sample:
                    self.reservoir.append(text[:500])
                else:
                    slot = self._rng.randrange(index + 1)
                    if slot < cfg.language_sample:
                        self.reservoir[slot] = text[:500]
            if self.pii is not None:
                spans = self.pii.find(text)
                if spans:
                    kinds = sorted({s.kind for s in spans})
                    self.pii_counts.update(s.kind for s in spans)
                    self._sample("pii", index, text, ", ".join(kinds))
        counted = words[: max(0, cfg.ngram_rows - base)] if cfg.top_ngrams else []
        for n, counter in self.ngrams.items():
            # One C-level update per batch; n-grams never span two rows.
            grams = (zip(*(w[j:] for j in range(n)), strict=False) for w in counted)
            counter.update(chain.from_iterable(grams))
        if cfg.toxicity:
            for i, score in enumerate(toxicity_scores(texts, words)):
                if score >= cfg.toxicity_threshold:
                    self._sample("toxic", base + i, texts[i], f"score {score:.2f}")
        if sum(len(c) for c in self.ngrams.values()) > 300_000:
            # Bounded memory: keep the heavy hitters only (counts of rare n-grams are lost).
            for n, counter in self.ngrams.items():
                self.ngrams[n] = Counter(dict(counter.most_common(20_000)))

    def finish(self) -> DataProfile:
        """The profile of everything added so far."""
        if self.rows == 0:
            raise InvalidInputError("cannot profile an empty dataset")
        chars = np.concatenate(self.chars)
        tokens = np.concatenate(self.tokens)
        self._near_duplicates()
        self._outliers(chars)
        for finding in self.findings.values():
            finding.rate = finding.count / self.rows
        languages, notes = detect_languages(self.reservoir)
        if self.rows > SAMPLE_TEXT_ROWS:
            notes.append(
                f"near-duplicate and length-outlier samples show text for the first "
                f"{SAMPLE_TEXT_ROWS} rows only; later samples give the row index"
            )
        if self.config.top_ngrams and self.rows > self.config.ngram_rows:
            notes.append(f"n-grams counted over the first {self.config.ngram_rows} rows")
        return DataProfile(
            row_count=self.rows,
            shape=self.shape or "table",
            fields=[
                FieldProfile(
                    name=name,
                    types=dict(counts),
                    null_count=self.rows - sum(counts.values()) + counts.get("null", 0),
                    null_rate=(self.rows - sum(counts.values()) + counts.get("null", 0))
                    / self.rows,
                )
                for name, counts in sorted(self.types.items())
            ],
            tokenizer=self.tokenizer.name,
            chars=self._stats(chars),
            tokens=self._stats(tokens),
            languages=languages,
            language_sample_size=len(self.reservoir),
            pii_counts=dict(self.pii_counts),
            top_ngrams={
                str(n): [
                    (" ".join(gram), count)
                    for gram, count in counter.most_common(self.config.top_ngrams)
                ]
                for n, counter in self.ngrams.items()
            },
            findings=self.findings,
            notes=notes,
        )

    def _near_duplicates(self) -> None:
        keys = np.concatenate(self.band_keys)
        later = candidate_duplicates(keys) & ~np.concatenate(self.not_near)
        finding = self.findings["near_duplicate"]
        finding.count = int(later.sum())
        for index in np.flatnonzero(later)[: self.config.samples_per_finding]:
            text = self.short_texts.get(int(index), "")
            finding.samples.append(SampleRow(row=int(index), text=text))

    def _outliers(self, chars: np.ndarray) -> None:
        mean, std = float(chars.mean()), float(chars.std())
        q1, q3 = np.percentile(chars, [25, 75])
        iqr = q3 - q1
        zscores = (chars - mean) / std if std > 0 else np.zeros_like(chars, dtype=float)
        flagged = np.abs(zscores) > self.config.outlier_z
        if iqr > 0:  # Tukey's far-out fences; with no spread only the z-score speaks.
            flagged |= (chars > q3 + 3 * iqr) | (chars < q1 - 3 * iqr)
        outliers = np.flatnonzero(flagged)
        finding = self.findings["length_outlier"]
        finding.count = len(outliers)
        for index in outliers[: self.config.samples_per_finding]:
            text = self.short_texts.get(int(index), "")
            finding.samples.append(
                SampleRow(row=int(index), text=text, detail=f"{chars[index]} chars")
            )

    def _stats(self, values: np.ndarray) -> LengthStats:
        counts, edges = np.histogram(values, bins=self.config.histogram_bins)
        p50, p90, p99 = np.percentile(values, [50, 90, 99])
        return LengthStats(
            mean=float(values.mean()),
            std=float(values.std()),
            min=int(values.min()),
            max=int(values.max()),
            p50=float(p50),
            p90=float(p90),
            p99=float(p99),
            histogram=Histogram(edges=[float(e) for e in edges], counts=[int(c) for c in counts]),
        )


def profile_rows(batches: Iterable[Batch], config: ProfileConfig | None = None) -> DataProfile:
    """Profile a stream of batches in one pass."""
    profiler = Profiler(config)
    for batch in batches:
        profiler.update(batch)
    return profiler.finish()
