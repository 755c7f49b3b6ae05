"""Top word n-grams of a stream, counted as 64-bit keys with numpy.

``NgramCounter`` takes each batch's words (indices into its distinct UTF-8 words, with the row
each ends in) and
their deterministic 64-bit keys (``batchtext``), counts n-gram keys with ``np.unique`` and keeps
the text of the current top ones only. It does not split text into words.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class NgramCounter:
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

    def update(
        self, words: Sequence[bytes], ids: np.ndarray, hashes: np.ndarray, row_end: np.ndarray
    ) -> None:
        """Count the n-grams of the word sequence ``ids`` (indices into ``words``, distinct
        UTF-8 words) that end inside their own row (word ``i``'s row ends before word
        ``row_end[i]``); ``hashes`` are the sequence's 64-bit word keys."""
        n = self.n
        if len(ids) < n:
            return
        starts = np.arange(len(ids) - n + 1)
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
                gram = b" ".join(words[i] for i in ids[at : at + n].tolist())
                self.texts[key] = gram.decode("utf-8", "surrogatepass")

    def top(self, k: int) -> list[tuple[str, int]]:
        """The ``k`` most frequent n-grams and their counts (ties: by key)."""
        order = np.lexsort((self.keys, -self.counts))[:k]
        return [
            (self.texts[int(key)], int(c))
            for key, c in zip(self.keys[order], self.counts[order], strict=True)
        ]
