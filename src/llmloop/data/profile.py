"""Exploratory analysis: one streamed pass over batches of rows into a JSON-able ``DataProfile``.

Per field: types and null rates. Per row text: length in characters and tokens (histograms,
length outliers by z-score and IQR), exact and near duplicates (MinHash LSH band keys), PII hits
by kind (``guards.pii``), toxicity (alt-profanity-check, batched), HTML markup, mojibake
(ftfy's badness heuristic), empty and shape-invalid rows,
top word n-grams, and a few sample rows per finding. Memory is bounded: per row only a length,
a 64-bit exact key (the hash of its normalised words) and
MinHash band keys are kept; languages are detected on a reservoir
sample, n-grams counted over the first ``ngram_rows`` rows.

Per-row work is done per batch where it can be: cheap C-level tests over the whole batch column
(pyarrow) pick the few rows that need a Python regex (PII, HTML) or a heuristic (mojibake only
looks at non-ASCII rows), and n-grams are counted as 64-bit hashes with numpy.

Sampling: the toxicity classifier scores every one of the first ``full_scan_rows`` rows and,
after them, a uniform random sample (``model_sample_rate``, drawn by a hash of the row index, so
independent of content and reproducible). Below the threshold the count is exact; above it the
``toxic`` finding is an estimate (``Finding.estimated``) with the rows scored
(``Finding.sample_size``) and a 95% interval of the rate (``Finding.ci95``, Wilson's interval on
the sampled part). Languages are shares of a reservoir sample (``language_sample_size`` rows,
intervals in ``language_ci95``). Every other count is over every row.

It does not change rows (``steps``) or render anything (``report``).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np
import pyarrow.compute as pc
from ftfy.badness import is_bad
from pydantic import BaseModel, ConfigDict, Field

from llmloop.data.dedup import (
    MinHasher,
    band_keys,
    candidate_duplicates,
    lsh_params,
    words_of_batch,
)
from llmloop.data.shapes import Batch, detect_shape, row_problem, row_text
from llmloop.data.text import (
    TextTokenizer,
    column_values,
    detect_languages,
    prefetch_language_model,
    text_column,
    toxicity_scores,
)
from llmloop.errors import InvalidInputError
from llmloop.guards.pii import PiiDetector, find_in_batch

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
    seed: int = Field(default=0, description="Seed of the language and model samples.")
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


def _json_type(value: Any) -> str:
    return _json_type_of_class(type(value))


def _json_type_of_class(cls: type) -> str:
    if cls is type(None):
        return "null"
    if issubclass(cls, bool):
        return "boolean"
    if issubclass(cls, int | float):
        return "number"
    if issubclass(cls, str):
        return "string"
    return "array" if issubclass(cls, list) else "object"


def _field_types(batch: Batch) -> dict[str, Counter[type]]:
    """Field name -> Python type -> rows, by C-level passes when rows share their fields."""
    if all(type(row) is dict for row in batch):
        layouts = Counter(map(tuple, batch))
        if len(layouts) == 1:  # the usual case: one type Counter per column over map()s
            names = next(iter(layouts))
            return {name: Counter(map(type, map(itemgetter(name), batch))) for name in names}
    pairs = Counter(
        (name, type(value))
        for row in batch
        if isinstance(row, Mapping)
        for name, value in row.items()
    )
    out: dict[str, Counter[type]] = {}
    for (name, cls), count in pairs.items():
        out.setdefault(name, Counter())[cls] += count
    return out


def wilson_interval(hits: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval of a proportion ``hits / n`` (``(0, 1)`` when ``n`` is 0)."""
    if n <= 0:
        return (0.0, 1.0)
    z = 1.959963984540054
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def _sampled_rows(start: int, count: int, config: ProfileConfig) -> np.ndarray:
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


class _NgramCounter:
    """Word n-gram counts as 64-bit hashes (numpy), with the text of the current top ones.

    A key absent from a batch can only fall in the (count, key) order, so every key in the top
    ``keep_text`` after a batch either had its text already or occurs in that batch.
    """

    def __init__(self, n: int, keep_text: int, max_keys: int = 1_000_000) -> None:
        self.n = n
        self.keep_text = keep_text
        self.max_keys = max_keys
        self.keys = np.zeros(0, dtype=np.uint64)
        self.counts = np.zeros(0, dtype=np.int64)
        self.texts: dict[int, str] = {}

    def update(self, flat: list[str], hashes: np.ndarray, row_end: np.ndarray) -> None:
        n = self.n
        if len(flat) < n:
            return
        starts = np.arange(len(flat) - n + 1)
        valid = starts + n <= row_end[: len(starts)]  # the window ends inside its own row
        keys = np.zeros(len(starts), dtype=np.uint64)
        with np.errstate(over="ignore"):
            for k in range(n):
                keys = keys * np.uint64(0x100000001B3) + hashes[k : k + len(starts)]
        keys[~valid] = 0  # windows across rows: key 0, never counted
        batch_keys, counts = np.unique(keys[valid], return_counts=True)
        if len(self.keys):
            merged, inverse = np.unique(
                np.concatenate((self.keys, batch_keys)), return_inverse=True
            )
            self.counts = np.bincount(inverse, np.concatenate((self.counts, counts))).astype(
                np.int64
            )
            self.keys = merged
        else:
            self.keys, self.counts = batch_keys, counts.astype(np.int64)
        order = np.lexsort((self.keys, -self.counts))
        if len(order) > self.max_keys:  # bounded memory: rare n-grams' counts are dropped
            order = np.sort(order[: self.max_keys])
            self.keys, self.counts = self.keys[order], self.counts[order]
            order = np.lexsort((self.keys, -self.counts))
        for key in self.keys[order[: self.keep_text]].tolist():
            if key not in self.texts:
                at = int(np.flatnonzero((keys == np.uint64(key)) & valid)[0])
                self.texts[key] = " ".join(flat[at : at + n])

    def top(self, k: int) -> list[tuple[str, int]]:
        order = np.lexsort((self.keys, -self.counts))[:k]
        return [
            (self.texts[int(key)], int(c))
            for key, c in zip(self.keys[order], self.counts[order], strict=True)
        ]


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
        self.seen_exact: set[int] = set()
        self.not_near: list[np.ndarray] = []
        self.pii_counts: Counter[str] = Counter()
        self.ngrams = {n: _NgramCounter(n, self.config.top_ngrams) for n in self.config.ngram_sizes}
        self.findings = {name: Finding() for name in self.FINDINGS}
        self.reservoir: list[str] = []
        self.short_texts: dict[int, str] = {}
        self._rng = np.random.default_rng(self.config.seed)
        self._eligible = 0  # non-empty rows offered to the language reservoir
        # Toxicity: (rows, rows scored, toxic rows) before and after ``full_scan_rows``.
        self.model_full = [0, 0, 0]
        self.model_rest = [0, 0, 0]
        if self.config.language_sample:
            prefetch_language_model()

    def update(self, batch: Batch) -> None:
        """Add one batch of rows."""
        if not batch:
            return
        texts = [row_text(row) if isinstance(row, Mapping) else "" for row in batch]
        base = self.rows
        words = words_of_batch(texts)
        column = text_column(texts)  # None (lone surrogates): every row takes the slow path
        ascii_rows = (
            column_values(pc.string_is_ascii(column))
            if column is not None
            else np.zeros(len(texts), dtype=bool)
        )
        self._fields_and_validity(batch, base)
        self._lengths(texts)
        self._duplicates(texts, words, base)
        self._content(texts, words, column, ascii_rows, base)
        self.rows += len(batch)

    def _sample(self, finding: str, row: int, text: str, detail: str = "") -> None:
        entry = self.findings[finding]
        entry.count += 1
        if len(entry.samples) < self.config.samples_per_finding:
            snippet = text[: self.config.sample_chars]
            entry.samples.append(SampleRow(row=row, text=snippet, detail=detail))

    def _fields_and_validity(self, batch: Batch, base: int) -> None:
        # One C-level Counter over (field, Python type) pairs; JSON type names per distinct pair.
        for name, types in _field_types(batch).items():
            counter = self.types.setdefault(name, Counter())
            for cls, count in types.items():
                counter[_json_type_of_class(cls)] += count
        for i, row in enumerate(batch):
            if not isinstance(row, Mapping):
                self._sample("invalid", base + i, repr(row), "not an object")
                continue
            if self.shape is None:
                self.shape = detect_shape(row)
            problem = row_problem(row, self.shape)  # type: ignore[arg-type]
            if problem is not None:
                self._sample("invalid", base + i, row_text(row), problem)

    def _lengths(self, texts: list[str]) -> None:
        self.chars.append(np.fromiter(map(len, texts), dtype=np.int32, count=len(texts)))
        self.tokens.append(np.asarray(self.tokenizer.count(texts), dtype=np.int32))

    def _duplicates(self, texts: list[str], words: list[list[str]], base: int) -> None:
        # Empty rows and exact duplicates are counted once, not again as near duplicates.
        skip = np.zeros(len(texts), dtype=bool)
        seen = self.seen_exact
        for i, text in enumerate(texts):
            if not text.strip():
                self._sample("empty", base + i, text)
                skip[i] = True
                continue
            # Python's 64-bit string hash: one profile lives in one process, and at 10**6 rows
            # a collision has odds of about 3e-8.
            key = hash(" ".join(words[i]))
            if key in seen:
                self._sample("exact_duplicate", base + i, text)
                skip[i] = True
            else:
                seen.add(key)
        self.not_near.append(skip)
        self.band_keys.append(band_keys(self.hasher.signatures_of_words(words), self.bands))
        for i, text in enumerate(texts[: max(0, SAMPLE_TEXT_ROWS - len(self.short_texts))]):
            self.short_texts[base + i] = text[: self.config.sample_chars]

    def _content(
        self,
        texts: list[str],
        words: list[list[str]],
        column: Any,
        ascii_rows: np.ndarray,
        base: int,
    ) -> None:
        cfg = self.config
        for i in np.flatnonzero(~ascii_rows).tolist():  # mojibake needs non-ASCII characters
            if is_bad(texts[i]):
                self._sample("mojibake", base + i, texts[i])
        markup = (
            column_values(pc.match_substring_regex(column, "[<&]"))
            if column is not None
            else np.ones(len(texts), dtype=bool)
        )
        for i in np.flatnonzero(markup).tolist():
            if _HTML.search(texts[i]):
                self._sample("html", base + i, texts[i])
        self._languages(texts)
        if self.pii is not None:
            for i, spans in sorted(find_in_batch(self.pii, texts).items()):
                kinds = sorted({s.kind for s in spans})
                self.pii_counts.update(s.kind for s in spans)
                self._sample("pii", base + i, texts[i], ", ".join(kinds))
        self._count_ngrams(words[: max(0, cfg.ngram_rows - base)] if cfg.top_ngrams else [])
        if cfg.toxicity:
            self._toxicity(texts, words, base)

    def _languages(self, texts: list[str]) -> None:
        # Reservoir sampling (algorithm R) over the non-empty rows, random draws made per batch.
        size = self.config.language_sample
        if not size:
            return
        eligible = [t for t in texts if t.strip()]
        seen = self._eligible + np.arange(len(eligible))
        slots = np.floor(self._rng.random(len(eligible)) * (seen + 1)).astype(np.int64)
        for text, position, slot in zip(eligible, seen.tolist(), slots.tolist(), strict=True):
            if position < size:
                self.reservoir.append(text[:500])
            elif slot < size:
                self.reservoir[slot] = text[:500]
        self._eligible += len(eligible)

    def _count_ngrams(self, counted: list[list[str]]) -> None:
        if not counted:
            return
        lengths = np.fromiter(map(len, counted), dtype=np.int64, count=len(counted))
        flat = list(chain.from_iterable(counted))
        # Word hashes only need to agree within this process (one profile): Python's str hash.
        hashes = np.fromiter(map(hash, flat), dtype=np.int64, count=len(flat)).astype(np.uint64)
        row_end = np.repeat(np.cumsum(lengths), lengths)
        for counter in self.ngrams.values():
            counter.update(flat, hashes, row_end)

    def _toxicity(self, texts: list[str], words: list[list[str]], base: int) -> None:
        chosen = _sampled_rows(base, len(texts), self.config)
        picked = np.flatnonzero(chosen).tolist()
        scores = toxicity_scores([texts[i] for i in picked], [words[i] for i in picked])
        full = self.config.full_scan_rows
        for i, score in zip(picked, scores, strict=True):
            part = self.model_full if base + i < full else self.model_rest
            part[1] += 1
            if score >= self.config.toxicity_threshold:
                part[2] += 1
                self._sample("toxic", base + i, texts[i], f"score {score:.2f}")
        in_full = max(0, min(len(texts), full - base))
        self.model_full[0] += in_full
        self.model_rest[0] += len(texts) - in_full

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
        language_ci95: dict[str, tuple[float, float]] = {}
        if len(self.reservoir) < self._eligible:
            n = len(self.reservoir)
            language_ci95 = {k: wilson_interval(round(v * n), n) for k, v in languages.items()}
            notes.append(
                f"languages are shares of a uniform sample of {n} of {self._eligible} non-empty "
                "rows (95% intervals in language_ci95)"
            )
        if self.config.toxicity:
            self._estimate_toxicity(notes)
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
            language_ci95=language_ci95,
            pii_counts=dict(self.pii_counts),
            top_ngrams={
                str(n): counter.top(self.config.top_ngrams) for n, counter in self.ngrams.items()
            },
            findings=self.findings,
            notes=notes,
        )

    def _estimate_toxicity(self, notes: list[str]) -> None:
        # Exact over the fully scored rows; the sampled rest scaled up, with Wilson's interval.
        rows, scored, hits = self.model_rest
        if scored >= rows:
            return
        full_hits = self.model_full[2]
        low, high = wilson_interval(hits, scored)
        finding = self.findings["toxic"]
        finding.count = full_hits + round(hits * rows / scored) if scored else full_hits
        finding.rate = finding.count / self.rows
        finding.estimated = True
        finding.sample_size = self.model_full[1] + scored
        finding.ci95 = ((full_hits + low * rows) / self.rows, (full_hits + high * rows) / self.rows)
        notes.append(
            f"toxicity scored on the first {self.model_full[0]} rows and a uniform "
            f"{self.config.model_sample_rate:.0%} sample of the rest ({finding.sample_size} rows "
            f"in all): the toxic count is an estimate, 95% interval of the rate "
            f"{finding.ci95[0]:.2%}-{finding.ci95[1]:.2%}"
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
