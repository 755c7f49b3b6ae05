"""Exploratory analysis: one streamed pass over batches of rows into a JSON-able ``DataProfile``.

Per field: types and null rates. Per row text: length in characters and tokens (histograms,
length outliers by z-score and IQR), exact and near duplicates (MinHash LSH band keys), PII hits
by kind (``guards.pii``), toxicity (alt-profanity-check, batched), HTML markup, mojibake
(ftfy's badness heuristic), empty and shape-invalid rows, top word n-grams, and a few sample
rows per finding (the result types live in ``profile_models``). Memory is bounded: per row only
a length, a 64-bit exact key (the hash of its normalised words) and MinHash band keys are kept;
languages are detected on a reservoir sample, n-grams counted over the first ``ngram_rows``
rows.

Per-row work is done per batch, over whole columns (``batchtext.BatchText``): rows' texts are
taken a column at a time (``shapes.batch_texts``), lengths, tokens, empty rows, words and their
64-bit keys come from numpy over the batch's UTF-8 buffer, exact duplicates are row keys checked
with ``np.unique`` and one set, MinHash runs on word hashes already computed, cheap C-level
tests over the column (pyarrow) pick the few rows that need a Python regex (PII, HTML) or a
heuristic (mojibake only looks at non-ASCII rows), and n-grams are counted as 64-bit keys
(``ngrams``). Python runs per row only for the rows a finding needs (and for non-ASCII rows).
Keys are deterministic (crc32 and BLAKE2b of words, never Python's salted ``hash``).

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

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from itertools import chain
from typing import Any

import numpy as np
import pyarrow.compute as pc
from ftfy.badness import is_bad

from llmloop.data.batchtext import BatchText, column_values, row_keys
from llmloop.data.dedup import MinHasher, band_keys, candidate_duplicates, lsh_params
from llmloop.data.languages import detect_languages, prefetch_language_model
from llmloop.data.ngrams import NgramCounter
from llmloop.data.profile_models import (
    DataProfile,
    FieldProfile,
    Finding,
    Histogram,
    LengthStats,
    ProfileConfig,
    SampleRow,
    sampled_rows,
    wilson_interval,
)
from llmloop.data.shapes import (
    Batch,
    batch_texts,
    detect_shape,
    field_types,
    json_type_of_class,
    row_problem,
    row_text,
    rows_all_valid,
)
from llmloop.data.text import TextTokenizer, toxicity_scores_of_utf8
from llmloop.errors import InvalidInputError
from llmloop.guards.pii import PiiConfig, PiiDetector, find_in_batch

__all__ = [
    "DataProfile",
    "FieldProfile",
    "Finding",
    "Histogram",
    "LengthStats",
    "ProfileConfig",
    "Profiler",
    "SampleRow",
    "profile_rows",
    "wilson_interval",
]

_HTML = re.compile(r"</?(?:[a-zA-Z][a-zA-Z0-9]*)(?:\s[^<>]*)?/?>|&(?:[a-z]+|#\d+);")
_LOW32 = np.uint64(0xFFFFFFFF)


#: Rows (from the start) whose text is kept for samples of findings known only at the end.
SAMPLE_TEXT_ROWS = 20_000


class _InlineExecutor(Executor):
    """Runs each task at once in the caller's thread (``threads=1``)."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_result(fn(*args, **kwargs))
        return future


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
        self.pii = (
            PiiDetector(PiiConfig(name_model=self.config.pii_name_model))
            if self.config.pii
            else None
        )
        self.hasher = MinHasher(num_perm=self.config.num_perm, seed=1)
        self.bands, _ = lsh_params(self.config.near_dup_threshold, self.config.num_perm)
        self.rows = 0
        self.shape: str | None = None
        self.types: dict[str, Counter[str]] = {}
        self.chars: list[np.ndarray] = []
        self.tokens: list[np.ndarray] = []
        # MinHash is numpy that releases the GIL: with threads > 1 it runs beside the rest of
        # the batch (results are the same either way; they are collected in batch order).
        self._pool: Executor = (
            ThreadPoolExecutor(1, thread_name_prefix="llmloop-minhash")
            if self.config.threads > 1
            else _InlineExecutor()
        )
        self.band_keys: list[Future[np.ndarray]] = []
        self.seen_exact: set[int] = set()
        self.not_near: list[np.ndarray] = []
        self.pii_counts: Counter[str] = Counter()
        self.ngrams = {n: NgramCounter(n, self.config.top_ngrams) for n in self.config.ngram_sizes}
        self.findings = {name: Finding() for name in self.FINDINGS}
        self.reservoir: list[str] = []
        self.short_texts: dict[int, str] = {}
        self._rng = np.random.default_rng(self.config.seed)
        self._eligible = 0  # non-empty rows offered to the language reservoir
        # Toxicity: (rows, rows scored, toxic rows) before and after ``full_scan_rows``.
        self.model_full = [0, 0, 0]
        self.model_rest = [0, 0, 0]
        if self.config.language_sample:
            prefetch_language_model(self.config.cache_dir)

    def update(self, batch: Batch) -> None:
        """Add one batch of rows."""
        if not batch:
            return
        base = self.rows
        text = BatchText(batch_texts(batch))
        self._fields_and_validity(batch, base)
        self.chars.append(text.chars.astype(np.int32))
        if self.config.tokenizer is None:
            self.tokens.append(text.regex_tokens().astype(np.int32))
        else:
            self.tokens.append(np.asarray(self.tokenizer.count(text.texts), dtype=np.int32))
        empty = text.empty()
        self._duplicates(text, empty, base)
        self._content(text, empty, base)
        self.rows += len(batch)

    def _sample(self, finding: str, row: int, text: str, detail: str = "") -> None:
        entry = self.findings[finding]
        entry.count += 1
        if len(entry.samples) < self.config.samples_per_finding:
            snippet = text[: self.config.sample_chars]
            entry.samples.append(SampleRow(row=row, text=snippet, detail=detail))

    def _record(self, finding: str, rows: np.ndarray, text: BatchText, base: int) -> None:
        """Count ``rows`` (indices in the batch) under ``finding``; sample the first ones."""
        entry = self.findings[finding]
        entry.count += len(rows)
        room = max(0, self.config.samples_per_finding - len(entry.samples))
        for i in rows[:room].tolist():
            snippet = text.texts[i][: self.config.sample_chars]
            entry.samples.append(SampleRow(row=base + i, text=snippet))

    def _fields_and_validity(self, batch: Batch, base: int) -> None:
        # One C-level Counter over (field, Python type) pairs; JSON type names per distinct pair.
        for name, types in field_types(batch).items():
            counter = self.types.setdefault(name, Counter())
            for cls, count in types.items():
                counter[json_type_of_class(cls)] += count
        if self.shape is None:
            first = next((row for row in batch if isinstance(row, Mapping)), None)
            self.shape = detect_shape(first) if first is not None else None
        if self.shape is not None and rows_all_valid(batch, self.shape):  # type: ignore[arg-type]
            return
        for i, row in enumerate(batch):
            if not isinstance(row, Mapping):
                self._sample("invalid", base + i, repr(row), "not an object")
                continue
            problem = row_problem(row, self.shape)  # type: ignore[arg-type]
            if problem is not None:
                self._sample("invalid", base + i, row_text(row), problem)

    def _duplicates(self, text: BatchText, empty: np.ndarray, base: int) -> None:
        # Empty rows and exact duplicates are counted once, not again as near duplicates.
        _, lengths = text.words()
        word_keys = text.word_keys()
        candidates = np.flatnonzero(~empty)
        keys = row_keys(word_keys, lengths)[candidates]
        _, first = np.unique(keys, return_index=True)  # first occurrence of each in the batch
        repeated = np.ones(len(keys), dtype=bool)
        repeated[first] = False
        seen = self.seen_exact
        earlier = np.fromiter(map(seen.__contains__, keys.tolist()), dtype=bool, count=len(keys))
        seen.update(keys[first].tolist())
        duplicates = candidates[repeated | earlier]
        self._record("empty", np.flatnonzero(empty), text, base)
        self._record("exact_duplicate", duplicates, text, base)
        skip = empty.copy()
        skip[duplicates] = True
        self.not_near.append(skip)
        # MinHash on the words' crc32 (the low half of their keys); no words: one word, hash 1.
        hashes, counts = word_keys & _LOW32, lengths
        if not lengths.all():
            wordless = lengths == 0
            hashes = np.insert(hashes, (np.cumsum(lengths) - lengths)[wordless], np.uint64(1))
            counts = np.maximum(lengths, 1)
        self.band_keys.append(self._pool.submit(self._band_keys, hashes, counts))
        if len(self.band_keys) > 2:  # bounded: at most two batches' words wait in the queue
            self.band_keys[-3].result()
        keep = max(0, min(len(text.texts), SAMPLE_TEXT_ROWS - len(self.short_texts)))
        chars = self.config.sample_chars
        self.short_texts.update(
            zip(range(base, base + keep), (t[:chars] for t in text.texts[:keep]), strict=True)
        )

    def _band_keys(self, hashes: np.ndarray, counts: np.ndarray) -> np.ndarray:
        return band_keys(self.hasher.signatures_of_hashes(hashes, counts), self.bands)

    def _content(self, text: BatchText, empty: np.ndarray, base: int) -> None:
        cfg, texts = self.config, text.texts
        for i in np.flatnonzero(~text.ascii).tolist():  # mojibake needs non-ASCII characters
            if is_bad(texts[i]):
                self._sample("mojibake", base + i, texts[i])
        markup = (
            column_values(pc.match_substring_regex(text.column, "[<&]"))
            if text.column is not None
            else np.ones(len(texts), dtype=bool)
        )
        for i in np.flatnonzero(markup).tolist():
            if _HTML.search(texts[i]):
                self._sample("html", base + i, texts[i])
        self._languages(texts, empty)
        if self.pii is not None:
            for i, spans in sorted(find_in_batch(self.pii, texts).items()):
                kinds = sorted({s.kind for s in spans})
                self.pii_counts.update(s.kind for s in spans)
                self._sample("pii", base + i, texts[i], ", ".join(kinds))
        if cfg.top_ngrams:
            self._count_ngrams(text, max(0, cfg.ngram_rows - base))
        if cfg.toxicity:
            self._toxicity(text, base)

    def _languages(self, texts: list[str], empty: np.ndarray) -> None:
        # Reservoir sampling (algorithm R) over the non-empty rows, random draws made per batch.
        size = self.config.language_sample
        if not size:
            return
        eligible = np.flatnonzero(~empty)
        seen = self._eligible + np.arange(len(eligible))
        slots = np.floor(self._rng.random(len(eligible)) * (seen + 1)).astype(np.int64)
        filling = seen < size
        self.reservoir.extend(texts[i][:500] for i in eligible[filling].tolist())
        replacing = ~filling & (slots < size)  # later rows replace a slot with odds size/(seen+1)
        for i, slot in zip(eligible[replacing].tolist(), slots[replacing].tolist(), strict=True):
            self.reservoir[slot] = texts[i][:500]
        self._eligible += len(eligible)

    def _count_ngrams(self, text: BatchText, rows: int) -> None:
        if rows <= 0:
            return
        flat, lengths = text.words()
        lengths = lengths[:rows]
        words = int(lengths.sum())
        row_end = np.repeat(np.cumsum(lengths), lengths)
        keys = text.word_keys()[:words]
        for counter in self.ngrams.values():
            counter.update(flat[:words] if words < len(flat) else flat, keys, row_end)

    def _toxicity(self, text: BatchText, base: int) -> None:
        chosen = sampled_rows(base, len(text.texts), self.config)
        picked = np.flatnonzero(chosen)
        flat, lengths = text.words()
        if len(picked) < len(text.texts):
            ends = np.cumsum(lengths)
            starts = ends - lengths
            flat = list(
                chain.from_iterable(
                    flat[s:e]
                    for s, e in zip(starts[picked].tolist(), ends[picked].tolist(), strict=True)
                )
            )
        texts = [text.texts[i] for i in picked.tolist()]
        scores = np.asarray(toxicity_scores_of_utf8(texts, flat, lengths[picked]), dtype=float)
        full = self.config.full_scan_rows
        in_full = base + picked < full
        toxic = scores >= self.config.toxicity_threshold
        for part, mask in ((self.model_full, in_full), (self.model_rest, ~in_full)):
            part[1] += int(mask.sum())
            part[2] += int((toxic & mask).sum())
        entry = self.findings["toxic"]
        entry.count += int(toxic.sum())
        room = max(0, self.config.samples_per_finding - len(entry.samples))
        for i in np.flatnonzero(toxic)[:room].tolist():
            row, snippet = int(picked[i]), texts[i][: self.config.sample_chars]
            detail = f"score {scores[i]:.2f}"
            entry.samples.append(SampleRow(row=base + row, text=snippet, detail=detail))
        rows_in_full = max(0, min(len(text.texts), full - base))
        self.model_full[0] += rows_in_full
        self.model_rest[0] += len(text.texts) - rows_in_full

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
        keys = np.concatenate([future.result() for future in self.band_keys])
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
