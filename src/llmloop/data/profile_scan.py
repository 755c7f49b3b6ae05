"""One part of a stream, scanned on its own: every per-row measure of the profile, as a
``PartScan`` that ``profile.Profiler`` merges in row order.

A part is a run of consecutive rows (a batch, or a slice of one) with the index of its first
row. Nothing here depends on other parts, so parts can be scanned in any process: field types,
shape-invalid rows, lengths in characters and tokens, empty rows, each row's exact key (the hash
of its normalised words, ``batchtext.row_keys``) and MinHash band keys, HTML markup, mojibake,
PII by kind, toxicity (all of the first ``full_scan_rows`` rows, then a sample by row-index
hash), the rows offered to the language sample (by a hash of the row index: the profile keeps
the ``language_sample`` rows with the smallest, a uniform sample whatever the batching), and,
when asked, top n-grams. What depends on the rows before a part (exact duplicates across parts,
near duplicates, samples of those) is the merger's.

Per-row work runs over whole columns (``batchtext.BatchText``): cheap C-level tests over the
column (pyarrow) pick the few rows that need a Python regex (PII, HTML) or a heuristic
(mojibake only looks at non-ASCII rows).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow.compute as pc
from ftfy.badness import is_bad

from llmloop.data.batchtext import BatchText, column_values, row_keys
from llmloop.data.dedup import MinHasher, band_keys, lsh_params
from llmloop.data.ngrams import NgramCounter
from llmloop.data.profile_models import ProfileConfig, SampleRow, sampled_rows
from llmloop.data.shapes import (
    Batch,
    batch_texts,
    field_types,
    json_type_of_class,
    row_problem,
    row_text,
    rows_all_valid,
)
from llmloop.data.text import TextTokenizer, toxicity_scores_of_ids
from llmloop.guards.pii import PiiConfig, PiiDetector, find_in_batch

_HTML = re.compile(r"</?(?:[a-zA-Z][a-zA-Z0-9]*)(?:\s[^<>]*)?/?>|&(?:[a-z]+|#\d+);")
_LOW32 = np.uint64(0xFFFFFFFF)
#: Characters of a row offered to the language sample.
LANGUAGE_CHARS = 500


@dataclass
class Tally:
    """A finding within a part: rows with it and the first few as samples (absolute rows)."""

    count: int = 0
    samples: list[SampleRow] = field(default_factory=list)


@dataclass
class PartScan:
    """Everything the profile takes from one part of the stream (picklable)."""

    base: int
    rows: int
    types: dict[str, Counter[str]]
    chars: np.ndarray
    tokens: np.ndarray
    empty: np.ndarray
    keys: np.ndarray  # exact key per row (meaningless for empty rows)
    band_keys: Any  # (rows, bands) uint64, or a Future of it (MinHash in the parent's thread)
    tallies: dict[str, Tally]  # invalid, html, mojibake, pii, toxic
    pii_counts: Counter[str]
    toxicity: tuple[tuple[int, int, int], tuple[int, int, int]]  # (rows, scored, toxic) x2
    languages: tuple[np.ndarray, list[str]]  # priorities and texts of the offered rows


def language_priorities(rows: np.ndarray, seed: int) -> np.ndarray:
    """A uniform, content-blind priority in [0, 1) per row index (splitmix64 of index and seed):
    the rows with the smallest form the language sample."""
    with np.errstate(over="ignore"):
        z = rows.astype(np.uint64) + np.uint64(0xD1B54A32D192ED03) * np.uint64(seed + 7)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


class Scanner:
    """Scans parts with one configuration; holds what is costly to build (detector, hasher)."""

    def __init__(self, config: ProfileConfig) -> None:
        self.config = config
        self.tokenizer = TextTokenizer(config.tokenizer)
        self.pii = PiiDetector(PiiConfig(name_model=config.pii_name_model)) if config.pii else None
        self.hasher = MinHasher(num_perm=config.num_perm, seed=1)
        self.bands, _ = lsh_params(config.near_dup_threshold, config.num_perm)
        #: Where MinHash runs (numpy, which releases the GIL); ``None``: inline.
        self.pool: Executor | None = None

    def scan(
        self,
        batch: Batch,
        base: int,
        shape: str | None,
        language_cut: float = 1.0,
        ngrams: dict[int, NgramCounter] | None = None,
    ) -> PartScan:
        """Scan ``batch`` (rows ``base ..``) against ``shape``; offer the language sample only
        rows with a priority under ``language_cut``; count n-grams into ``ngrams`` if given."""
        cfg = self.config
        text = BatchText(batch_texts(batch))
        tallies = {name: Tally() for name in ("invalid", "html", "mojibake", "pii", "toxic")}
        types = self._types(batch)
        self._validity(batch, base, shape, tallies["invalid"])
        if cfg.tokenizer is None:
            tokens = text.regex_tokens().astype(np.int32)
        else:
            tokens = np.asarray(self.tokenizer.count(text.texts), dtype=np.int32)
        empty = text.empty()
        _, _, lengths = text.word_ids()
        word_keys = text.word_keys()
        pii_counts: Counter[str] = Counter()
        self._markup(text, base, tallies)
        if self.pii is not None:
            for i, spans in sorted(find_in_batch(self.pii, text.texts, text.column).items()):
                kinds = sorted({s.kind for s in spans})
                pii_counts.update(s.kind for s in spans)
                self._sample(tallies["pii"], base + i, text.texts[i], ", ".join(kinds))
        if ngrams is not None and cfg.top_ngrams:
            self._count_ngrams(ngrams, text, max(0, cfg.ngram_rows - base))
        toxicity = ((0, 0, 0), (0, 0, 0))
        if cfg.toxicity:
            toxicity = self._toxicity(text, base, tallies["toxic"])
        return PartScan(
            base=base,
            rows=len(batch),
            types=types,
            chars=text.chars.astype(np.int32),
            tokens=tokens,
            empty=empty,
            keys=row_keys(word_keys, lengths),
            band_keys=self._band_keys(word_keys, lengths, self.pool),
            tallies=tallies,
            pii_counts=pii_counts,
            toxicity=toxicity,
            languages=self._languages(text.texts, empty, base, language_cut),
        )

    def _sample(self, tally: Tally, row: int, text: str, detail: str = "") -> None:
        tally.count += 1
        if len(tally.samples) < self.config.samples_per_finding:
            tally.samples.append(
                SampleRow(row=row, text=text[: self.config.sample_chars], detail=detail)
            )

    @staticmethod
    def _types(batch: Batch) -> dict[str, Counter[str]]:
        # One C-level Counter over (field, Python type) pairs; JSON type names per distinct pair.
        out: dict[str, Counter[str]] = {}
        for name, classes in field_types(batch).items():
            counter = out.setdefault(name, Counter())
            for cls, count in classes.items():
                counter[json_type_of_class(cls)] += count
        return out

    def _validity(self, batch: Batch, base: int, shape: str | None, tally: Tally) -> None:
        if shape is not None and rows_all_valid(batch, shape):  # type: ignore[arg-type]
            return
        for i, row in enumerate(batch):
            if not isinstance(row, Mapping):
                self._sample(tally, base + i, repr(row), "not an object")
                continue
            problem = row_problem(row, shape)  # type: ignore[arg-type]
            if problem is not None:
                self._sample(tally, base + i, row_text(row), problem)

    def _band_keys(self, word_keys: np.ndarray, lengths: np.ndarray, pool: Executor | None) -> Any:
        # MinHash on the words' crc32 (the low half of their keys); no words: one word, hash 1.
        hashes, counts = word_keys & _LOW32, lengths
        if not lengths.all():
            wordless = lengths == 0
            hashes = np.insert(hashes, (np.cumsum(lengths) - lengths)[wordless], np.uint64(1))
            counts = np.maximum(lengths, 1)
        if pool is not None:
            return pool.submit(self._signatures, hashes, counts)
        return self._signatures(hashes, counts)

    def _signatures(self, hashes: np.ndarray, counts: np.ndarray) -> np.ndarray:
        return band_keys(self.hasher.signatures_of_hashes(hashes, counts), self.bands)

    def _markup(self, text: BatchText, base: int, tallies: dict[str, Tally]) -> None:
        texts = text.texts
        for i in np.flatnonzero(~text.ascii).tolist():  # mojibake needs non-ASCII characters
            if is_bad(texts[i]):
                self._sample(tallies["mojibake"], base + i, texts[i])
        markup = (
            column_values(pc.match_substring_regex(text.column, "[<&]"))
            if text.column is not None
            else np.ones(len(texts), dtype=bool)
        )
        for i in np.flatnonzero(markup).tolist():
            if _HTML.search(texts[i]):
                self._sample(tallies["html"], base + i, texts[i])

    def _languages(
        self, texts: list[str], empty: np.ndarray, base: int, cut: float
    ) -> tuple[np.ndarray, list[str]]:
        if not self.config.language_sample:
            return np.zeros(0), []
        rows = np.flatnonzero(~empty)
        priorities = language_priorities(rows + base, self.config.seed)
        offered = np.flatnonzero(priorities < cut)
        # Only this part's own smallest can make the sample.
        if len(offered) > self.config.language_sample:
            smallest = np.argpartition(priorities[offered], self.config.language_sample)
            offered = np.sort(offered[smallest[: self.config.language_sample]])
        chosen = [texts[i][:LANGUAGE_CHARS] for i in rows[offered].tolist()]
        return priorities[offered], chosen

    @staticmethod
    def _count_ngrams(ngrams: dict[int, NgramCounter], text: BatchText, rows: int) -> None:
        if rows <= 0:
            return
        vocabulary, ids, lengths = text.word_ids()
        lengths = lengths[:rows]
        words = int(lengths.sum())
        row_end = np.repeat(np.cumsum(lengths), lengths)
        keys = text.word_keys()[:words]
        for counter in ngrams.values():
            counter.update(vocabulary, ids[:words], keys, row_end)

    def _toxicity(
        self, text: BatchText, base: int, tally: Tally
    ) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        cfg = self.config
        chosen = sampled_rows(base, len(text.texts), cfg)
        picked = np.flatnonzero(chosen)
        vocabulary, ids, lengths = text.word_ids()
        if len(picked) < len(text.texts):
            ids = ids[np.repeat(chosen, lengths)]
        texts = [text.texts[i] for i in picked.tolist()]
        scores = np.asarray(
            toxicity_scores_of_ids(texts, vocabulary, ids, lengths[picked]), dtype=float
        )
        in_full = base + picked < cfg.full_scan_rows
        toxic = scores >= cfg.toxicity_threshold
        tally.count += int(toxic.sum())
        room = max(0, cfg.samples_per_finding - len(tally.samples))
        for i in np.flatnonzero(toxic)[:room].tolist():
            row, snippet = int(picked[i]), texts[i][: cfg.sample_chars]
            detail = f"score {scores[i]:.2f}"
            tally.samples.append(SampleRow(row=base + row, text=snippet, detail=detail))
        rows_in_full = max(0, min(len(text.texts), cfg.full_scan_rows - base))
        full = (rows_in_full, int(in_full.sum()), int((toxic & in_full).sum()))
        rest = (
            len(text.texts) - rows_in_full,
            int((~in_full).sum()),
            int((toxic & ~in_full).sum()),
        )
        return full, rest


def scan_worker(connection: Any, scanner: Scanner) -> None:
    """A helper process's loop: scan each ``(batch, base, shape, cut)`` received, answer with
    ``("ok", PartScan)`` or ``("error", exception)``; stop on ``None`` or a closed pipe."""
    scanner.pool = None  # a forked copy of the parent's thread pool has no threads
    while True:
        try:
            job = connection.recv()
        except (EOFError, OSError):
            job = None
        if job is None:
            # Nothing to flush or finalise: skip tearing down the parent's inherited objects.
            os._exit(0)
        try:
            answer: tuple[str, Any] = ("ok", scanner.scan(*job))
        except Exception as exc:  # reported in the parent, which raises it
            answer = ("error", exc)
        try:
            connection.send(answer)
        except Exception as exc:  # an unpicklable exception: send its text
            connection.send(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))


class FieldValues:
    """Per field: how many values are the empty string, and whether every row holds one and the
    same value (a constant column says nothing to a model). Whole columns are compared with
    ``list.count`` (C-level ``==``), so nested values need no hashing; a field stops being
    checked once it varies."""

    _VARIES = object()

    def __init__(self) -> None:
        self.empty: Counter[str] = Counter()
        self.present: Counter[str] = Counter()
        self.first: dict[str, Any] = {}

    def update(self, rows: Batch) -> None:
        if not all(type(row) is dict for row in rows):
            return  # invalid rows are the validity finding's
        names = {name for row in rows for name in row}
        for name in names:
            column = [row[name] for row in rows if name in row]
            self.present[name] += len(column)
            self.empty[name] += column.count("")
            first = self.first.setdefault(name, column[0])
            if first is not self._VARIES and column.count(first) != len(column):
                self.first[name] = self._VARIES

    def constant(self, name: str, rows: int) -> tuple[bool, Any]:
        """Whether every one of ``rows`` rows holds the same non-null value, and that value."""
        value = self.first.get(name, self._VARIES)
        same = value is not self._VARIES and value is not None and self.present[name] == rows
        return same, value if same else None
