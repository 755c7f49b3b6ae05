"""Exploratory analysis: one streamed pass over batches of rows into a JSON-able ``DataProfile``.

Per field: types and null rates. Per row text: length in characters and tokens (histograms,
length outliers by z-score and IQR), exact and near duplicates (MinHash LSH band keys), PII hits
by kind (``guards.pii``), toxicity (alt-profanity-check, batched), HTML markup, mojibake
(ftfy's badness heuristic), empty and shape-invalid rows, top word n-grams, and a few sample
rows per finding (the result types live in ``profile_models``). Memory is bounded: per row only
a length, a 64-bit exact key (the hash of its normalised words) and MinHash band keys are kept;
languages are detected on a uniform sample, n-grams counted over the first ``ngram_rows`` rows.

The per-row measures of a part of the stream are ``profile_scan``'s (``Scanner.scan`` gives a
``PartScan``); ``Profiler`` merges parts in row order and owns what depends on earlier rows:
exact duplicates (a set of row keys), near duplicates (all band keys, at the end), samples,
the language sample (the ``language_sample`` rows with the smallest row-index hash) and the
toxicity estimate. With ``processes`` > 1 on Linux, each large batch after the first
``ngram_rows`` rows is cut into that many parts: this process scans the first while forked
helper processes scan the others (the GIL allows one core per process), one batch behind, so a
helper works while this process reads the next batch. The profile is the same either way.

Sampling: the toxicity classifier scores every one of the first ``full_scan_rows`` rows and,
after them, a uniform random sample (``model_sample_rate``, drawn by a hash of the row index, so
independent of content and reproducible). Below the threshold the count is exact; above it the
``toxic`` finding is an estimate (``Finding.estimated``) with the rows scored
(``Finding.sample_size``) and a 95% interval of the rate (``Finding.ci95``, Wilson's interval on
the sampled part). Languages are shares of the sample (intervals in ``language_ci95``). Every
other count is over every row.

It does not change rows (``steps``) or render anything (``report``).
"""

from __future__ import annotations

import multiprocessing
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any

import numpy as np

from llmloop.data.dedup import candidate_duplicates
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
    wilson_interval,
)
from llmloop.data.profile_scan import FieldValues, PartScan, Scanner, scan_worker
from llmloop.data.shapes import Batch, batch_texts, detect_shape, row_text
from llmloop.data.toxicity_weights import toxicity_weights
from llmloop.errors import InvalidInputError

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

#: Rows (from the start) whose text is kept for samples of findings known only at the end.
SAMPLE_TEXT_ROWS = 20_000


class _Helper:
    """A forked process scanning parts (``profile_scan.scan_worker``), one job at a time: a job
    is sent only after the previous answer is read, so neither side blocks on a full pipe."""

    def __init__(self, scanner: Scanner) -> None:
        context = multiprocessing.get_context("fork")
        self.connection, child = context.Pipe()
        self.process = context.Process(
            target=scan_worker, args=(child, scanner), name="llmloop-profile", daemon=True
        )
        self.process.start()
        child.close()
        self.job: tuple[Batch, int] | None = None  # rows and base of the job in flight

    def send(self, rows: Batch, base: int, shape: str | None, cut: float) -> None:
        self.connection.send((rows, base, shape, cut))
        self.job = (rows, base)

    def receive(self) -> PartScan:
        self.job = None
        kind, value = self.connection.recv()
        if kind == "error":
            raise value
        return value  # type: ignore[no-any-return]

    def close(self) -> None:
        try:
            self.connection.send(None)
        except OSError:
            pass
        self.connection.close()
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


class Profiler:
    """Accumulates a profile batch by batch; ``finish`` returns the ``DataProfile``.

    Use it as a context manager (or call ``close``) when a stream may stop before ``finish``:
    that ends the helper processes at once instead of at exit.
    """

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
        self.scanner = Scanner(self.config)
        self.tokenizer = self.scanner.tokenizer
        # MinHash is numpy that releases the GIL: with threads > 1 it runs beside the rest of
        # the batch (results are the same either way; they are collected in batch order).
        self._pool = (
            ThreadPoolExecutor(1, thread_name_prefix="llmloop-minhash")
            if self.config.threads > 1
            else None
        )
        self.scanner.pool = self._pool
        self.rows = 0  # rows received (the parts helpers still scan included)
        self.shape: str | None = None
        self.types: dict[str, Counter[str]] = {}
        self.values = FieldValues()
        self.chars: list[np.ndarray] = []
        self.tokens: list[np.ndarray] = []
        self.band_keys: list[Any] = []
        self.seen_exact: set[int] = set()
        self.not_near: list[np.ndarray] = []
        self.pii_counts: Counter[str] = Counter()
        self.ngrams = {n: NgramCounter(n, self.config.top_ngrams) for n in self.config.ngram_sizes}
        self.findings = {name: Finding() for name in self.FINDINGS}
        self.short_texts: dict[int, str] = {}
        self._eligible = 0  # non-empty rows (each offered to the language sample)
        self._language_priority = np.zeros(0)
        self._language_texts: list[str] = []
        # Toxicity: (rows, rows scored, toxic rows) before and after ``full_scan_rows``.
        self.model_full = [0, 0, 0]
        self.model_rest = [0, 0, 0]
        self._helpers: list[_Helper] | None = None  # started at the first batch worth splitting
        if self.config.language_sample:
            prefetch_language_model(self.config.cache_dir)
        if self.config.toxicity:
            toxicity_weights(self.config.cache_dir)  # loaded once, from the cache when there

    def __enter__(self) -> Profiler:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """End the helper processes and thread (``finish`` does it too); no more rows."""
        self._end_helpers()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _end_helpers(self) -> None:
        helpers, self._helpers = self._helpers or [], []
        for helper in helpers:
            helper.close()

    def update(self, batch: Batch) -> None:
        """Add one batch of rows."""
        if not batch:
            return
        if self.shape is None:
            first = next((row for row in batch if isinstance(row, Mapping)), None)
            self.shape = detect_shape(first) if first is not None else None
        base = self.rows
        self.rows += len(batch)
        # The previous batch's helper parts come before this batch's rows.
        self._collect()
        helpers = self._helpers_for(batch, base)
        size = -(-len(batch) // (len(helpers) + 1))
        parts = [(batch[k : k + size], base + k) for k in range(0, len(batch), size)]
        try:
            for helper, (rows, start) in zip(helpers, parts[1:], strict=True):
                helper.send(rows, start, self.shape, self._language_cut())
        except OSError:  # a helper is gone: every part of this batch is scanned here
            self._end_helpers()
            helpers = []
        ngrams = self.ngrams if base < self.config.ngram_rows else None
        for rows, start in parts if not helpers else parts[:1]:
            scan = self.scanner.scan(rows, start, self.shape, self._language_cut(), ngrams)
            self._merge(scan, rows)

    def _helpers_for(self, batch: Batch, base: int) -> list[_Helper]:
        cfg = self.config
        parts = min(cfg.processes, len(batch) // cfg.split_rows)
        if parts < 2 or (cfg.top_ngrams and base < cfg.ngram_rows):
            return []  # n-grams are counted here, over whole batches
        if self._helpers is None:
            self._helpers = []
            if _can_fork() and cfg.tokenizer is None and cfg.pii_name_model is None:
                try:
                    for _ in range(cfg.processes - 1):
                        self._helpers.append(_Helper(self.scanner))
                except (OSError, AssertionError):  # no processes here (a daemon, a limit)
                    self._end_helpers()
        return self._helpers[: parts - 1]

    def _collect(self) -> None:
        """Merge the parts the helpers are scanning, in row order."""
        for helper in self._helpers or []:
            if helper.job is None:
                continue
            rows, base = helper.job
            try:
                scan = helper.receive()
            except (EOFError, OSError):  # the helper died: scan its part here, go on alone
                self._end_helpers()
                scan = self.scanner.scan(rows, base, self.shape, self._language_cut())
            except BaseException:
                self._end_helpers()
                raise
            self._merge(scan, rows)

    def _language_cut(self) -> float:
        # Rows with a larger priority than the current sample's largest cannot get in.
        full = len(self._language_priority) >= self.config.language_sample
        return float(self._language_priority.max()) if full and self.config.language_sample else 1.0

    def _record(self, finding: str, indices: np.ndarray, rows: Batch, base: int) -> None:
        """Count ``indices`` (rows of the part) under ``finding``; sample the first ones."""
        entry = self.findings[finding]
        entry.count += len(indices)
        room = max(0, self.config.samples_per_finding - len(entry.samples))
        for i in indices[:room].tolist():
            row = rows[i]
            text = row_text(row) if isinstance(row, Mapping) else ""
            entry.samples.append(SampleRow(row=base + i, text=text[: self.config.sample_chars]))

    def _merge(self, scan: PartScan, rows: Batch) -> None:
        base = scan.base
        for name, counts in scan.types.items():
            self.types.setdefault(name, Counter()).update(counts)
        self.values.update(rows)
        self.chars.append(scan.chars)
        self.tokens.append(scan.tokens)
        self._duplicates(scan, rows)
        for name, tally in scan.tallies.items():
            entry = self.findings[name]
            entry.count += tally.count
            room = max(0, self.config.samples_per_finding - len(entry.samples))
            entry.samples.extend(tally.samples[:room])
        self.pii_counts.update(scan.pii_counts)
        for total, part in (
            (self.model_full, scan.toxicity[0]),
            (self.model_rest, scan.toxicity[1]),
        ):
            for i in range(3):
                total[i] += part[i]
        self._sample_languages(scan)
        keep = max(0, min(scan.rows, SAMPLE_TEXT_ROWS - base))
        if keep:
            chars = self.config.sample_chars
            texts = batch_texts(rows[:keep])
            self.short_texts.update(
                zip(range(base, base + keep), (t[:chars] for t in texts), strict=True)
            )

    def _duplicates(self, scan: PartScan, rows: Batch) -> None:
        # Empty rows and exact duplicates are counted once, not again as near duplicates.
        candidates = np.flatnonzero(~scan.empty)
        keys = scan.keys[candidates]
        _, first = np.unique(keys, return_index=True)  # first occurrence of each in the part
        repeated = np.ones(len(keys), dtype=bool)
        repeated[first] = False
        seen = self.seen_exact
        earlier = np.fromiter(map(seen.__contains__, keys.tolist()), dtype=bool, count=len(keys))
        seen.update(keys[first].tolist())
        duplicates = candidates[repeated | earlier]
        self._record("empty", np.flatnonzero(scan.empty), rows, scan.base)
        self._record("exact_duplicate", duplicates, rows, scan.base)
        skip = scan.empty.copy()
        skip[duplicates] = True
        self.not_near.append(skip)
        self.band_keys.append(scan.band_keys)
        if len(self.band_keys) > 2 and isinstance(self.band_keys[-3], Future):
            self.band_keys[-3].result()  # bounded: at most two parts' words wait in the queue

    def _sample_languages(self, scan: PartScan) -> None:
        size = self.config.language_sample
        if not size:
            return
        self._eligible += int((~scan.empty).sum())
        priorities, texts = scan.languages
        self._language_priority = np.concatenate((self._language_priority, priorities))
        self._language_texts.extend(texts)
        if len(self._language_priority) > size:
            keep = np.sort(np.argpartition(self._language_priority, size)[:size])
            self._language_priority = self._language_priority[keep]
            self._language_texts = [self._language_texts[i] for i in keep.tolist()]

    def finish(self) -> DataProfile:
        """The profile of everything added so far."""
        try:
            self._collect()
        finally:
            self._end_helpers()
        if self.rows == 0:
            self.close()
            raise InvalidInputError("cannot profile an empty dataset")
        chars = np.concatenate(self.chars)
        tokens = np.concatenate(self.tokens)
        # Near duplicates are numpy sorts (no GIL): in the MinHash thread, after its last
        # signatures, while this thread classifies the language sample.
        near = self._pool.submit(self._near_flags) if self._pool is not None else None
        languages, notes = detect_languages(self._language_texts)
        self._near_duplicates(near.result() if near is not None else self._near_flags())
        self.close()
        self._outliers(chars)
        for finding in self.findings.values():
            finding.rate = finding.count / self.rows
        language_ci95: dict[str, tuple[float, float]] = {}
        if len(self._language_texts) < self._eligible:
            n = len(self._language_texts)
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
            fields=[self._field(name, counts) for name, counts in sorted(self.types.items())],
            tokenizer=self.tokenizer.name,
            chars=self._stats(chars),
            tokens=self._stats(tokens),
            languages=languages,
            language_sample_size=len(self._language_texts),
            language_ci95=language_ci95,
            pii_counts=dict(self.pii_counts),
            top_ngrams={
                str(n): counter.top(self.config.top_ngrams) for n, counter in self.ngrams.items()
            },
            findings=self.findings,
            notes=notes,
        )

    def _field(self, name: str, counts: Counter[str]) -> FieldProfile:
        nulls = self.rows - sum(counts.values()) + counts.get("null", 0)
        constant, value = self.values.constant(name, self.rows)
        return FieldProfile(
            name=name,
            types=dict(counts),
            null_count=nulls,
            null_rate=nulls / self.rows,
            empty_count=self.values.empty[name],
            constant=constant,
            constant_value=value,
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

    def _near_flags(self) -> np.ndarray:
        """Per row: a near duplicate of an earlier row (and neither empty nor exact)?"""
        keys = np.concatenate([k.result() if isinstance(k, Future) else k for k in self.band_keys])
        return candidate_duplicates(keys) & ~np.concatenate(self.not_near)  # type: ignore[no-any-return]

    def _near_duplicates(self, later: np.ndarray) -> None:
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
    with Profiler(config) as profiler:
        for batch in batches:
            profiler.update(batch)
        return profiler.finish()


def _can_fork() -> bool:
    # Linux only: elsewhere forking a process with threads is unsafe or unsupported.
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()
