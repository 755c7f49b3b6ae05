"""One batch of row texts as columns: the per-row measures the profile takes of every row.

Built once per batch: the texts as a pyarrow ``large_string`` column (one UTF-8 buffer), which
rows are ASCII, and, from a class per byte (word, space, other) with numpy over the whole batch,
the regex token count, the word count and the emptiness of every ASCII row. The lower-cased
words of all rows come as indices into the batch's distinct UTF-8 words, with a count per row
(the ASCII rows' word bytes packed by numpy and dictionary-encoded by pyarrow, no Python object
per word), and each distinct word gets a deterministic 64-bit key (its crc32, the MinHash word
hash of ``dedup``, in the low half), from which rows get exact keys.
Non-ASCII rows (the rare case) take Python's regex, so every result equals the per-row
definition: ``dedup.words_of``, ``len(text._REGEX_TOKEN.findall(t))``, ``not t.strip()``.

It does not judge rows (``profile``) nor read them (``loaders``).
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

_WORD = re.compile(r"\w+", re.UNICODE)
_REGEX_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)

# On ASCII text Python's \w is [A-Za-z0-9_] and its \s [\t\n\v\f\r \x1c-\x1f].
_WORD_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_"
_SPACE_BYTES = b"\t\n\x0b\x0c\r \x1c\x1d\x1e\x1f"
_KIND = np.zeros(256, dtype=np.uint8)  # 0 other, 1 word, 2 space
_KIND[list(_WORD_BYTES)] = 1
_KIND[list(_SPACE_BYTES)] = 2
_WORD_KEYS_SIZE = 500_000
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


class _WordKeys(dict[bytes, int]):
    """UTF-8 word -> 64-bit key, computed on first use: crc32 (0 read as 1, as ``dedup`` does)
    in the low half, a 4-byte BLAKE2b in the high half. Deterministic across processes."""

    def __missing__(self, word: bytes) -> int:
        high = int.from_bytes(hashlib.blake2b(word, digest_size=4).digest(), "little")
        value = self[word] = (zlib.crc32(word) or 1) | high << 32
        return value


_KEYS = _WordKeys()


def text_column(texts: Sequence[str]) -> Any:
    """``texts`` as a pyarrow ``large_string`` array, or ``None`` if one holds a lone surrogate.

    Built from buffers: ``pa.array(list)`` and ``to_numpy`` import pandas (about 0.4 s). An
    ASCII batch is encoded in one call.
    """
    import pyarrow as pa

    joined = "".join(texts)
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    if joined.isascii():
        data = joined.encode("ascii")
        np.cumsum(np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)), out=offsets[1:])
    else:
        try:
            encoded = [t.encode() for t in texts]
        except UnicodeEncodeError:
            return None
        data = b"".join(encoded)
        np.cumsum(
            np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)), out=offsets[1:]
        )
    return pa.LargeStringArray.from_buffers(len(texts), pa.py_buffer(offsets), pa.py_buffer(data))


def column_values(array: Any) -> Any:
    """A numpy copy of a null-free boolean or integer pyarrow array (read from its buffers)."""
    import pyarrow as pa

    values = array.buffers()[1]
    if pa.types.is_boolean(array.type):
        bits = np.unpackbits(np.frombuffer(values, dtype=np.uint8), bitorder="little")
        return bits[array.offset : array.offset + len(array)].astype(bool)
    dtype = np.dtype(array.type.to_pandas_dtype())
    return np.frombuffer(values, dtype=dtype)[array.offset : array.offset + len(array)].copy()


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser over a uint64 array (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def row_keys(word_keys: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """A 64-bit key per row, equal for rows with the same words in the same order: the sum of
    mixed (word key, position) terms, mixed again with the word count."""
    ends = np.cumsum(lengths)
    starts = ends - lengths
    position = (np.arange(len(word_keys)) - np.repeat(starts, lengths) + 1).astype(np.uint64)
    terms = _mix(word_keys + position * _GOLDEN)
    totals = np.concatenate((np.zeros(1, dtype=np.uint64), np.cumsum(terms, dtype=np.uint64)))
    return _mix(totals[ends] - totals[starts] + lengths.astype(np.uint64) * _GOLDEN)


class BatchText:
    """The texts of one batch and their column-wise measures (computed once, on first use)."""

    def __init__(self, texts: list[str]) -> None:
        import pyarrow.compute as pc

        self.texts = texts
        self.chars = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
        #: None when a text holds a lone surrogate: then every row takes the Python path.
        self.column = text_column(texts)
        if self.column is None:
            self.ascii = np.zeros(len(texts), dtype=bool)
        elif int(self.chars.sum()) == len(self.column.buffers()[2] or b""):
            self.ascii = np.ones(len(texts), dtype=bool)  # one byte per character: all ASCII
        else:
            self.ascii = column_values(pc.string_is_ascii(self.column))
        self._counts: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._ids: tuple[list[bytes], np.ndarray, np.ndarray] | None = None
        self._keys: np.ndarray | None = None
        #: Per byte of the column: is it a word byte, does it start a word (``_ascii_counts``).
        self._word_bytes: tuple[np.ndarray, np.ndarray] | None = None

    def _ascii_counts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(regex tokens, words, non-space bytes) per row, right for the ASCII rows."""
        if self._counts is None:
            n = len(self.texts)
            if self.column is None or not n:
                zeros = np.zeros(n, dtype=np.int64)
                self._counts = (zeros, zeros, zeros)
                return self._counts
            buffers = self.column.buffers()
            offsets = np.frombuffer(buffers[1], dtype=np.int64)[: n + 1]
            data = np.frombuffer(buffers[2] or b"", dtype=np.uint8)[: offsets[-1]]
            # One pad byte of class "space" (counts nothing) lets every row start index in.
            classes = np.empty(len(data) + 1, dtype=np.uint8)
            np.take(_KIND, data, out=classes[:-1])
            classes[-1] = 2
            word, space = classes == 1, classes == 2
            starts = word.copy()
            starts[1:] &= ~word[:-1]
            begin = offsets[:-1]
            sized = offsets[1:] > begin
            starts[begin[sized]] = word[begin[sized]]  # a row's first byte starts its own word

            def per_row(flags: np.ndarray) -> np.ndarray:
                # One pass over the bytes; reduceat gives an empty row its next byte: zero it.
                return np.where(sized, np.add.reduceat(flags, begin, dtype=np.int64), 0)

            self._counts = (per_row(starts | ~(word | space)), per_row(starts), per_row(~space))
            self._word_bytes = (word[:-1], starts[:-1])
        return self._counts

    def regex_tokens(self) -> np.ndarray:
        """``len(_REGEX_TOKEN.findall(t))`` of each text."""
        counts = self._ascii_counts()[0].copy()
        for i in np.flatnonzero(~self.ascii).tolist():
            counts[i] = len(_REGEX_TOKEN.findall(self.texts[i]))
        return counts

    def empty(self) -> np.ndarray:
        """``not t.strip()`` of each text."""
        empty = self._ascii_counts()[2] == 0
        for i in np.flatnonzero(~self.ascii).tolist():
            empty[i] = not self.texts[i].strip()
        return empty

    def word_ids(self) -> tuple[list[bytes], np.ndarray, np.ndarray]:
        """The lower-cased ``\\w+`` words of every row, in row order, as (the distinct words in
        UTF-8, each word's index in them, words per row): no Python object per word.

        ASCII rows: their word bytes (``_ascii_counts``' byte classes), lower-cased and packed
        end to end by numpy, dictionary-encoded by pyarrow. Non-ASCII rows (the rare case) take
        Python's regex and are spliced in.
        """
        if self._ids is None:
            self._ids = self._ascii_word_ids()
            if not self.ascii.all():
                self._ids = self._splice(*self._ids)
        return self._ids

    def _ascii_word_ids(self) -> tuple[list[bytes], np.ndarray, np.ndarray]:
        import pyarrow as pa
        import pyarrow.compute as pc

        n = len(self.texts)
        if self.column is None or not self.ascii.any():
            return [], np.zeros(0, dtype=np.int64), np.zeros(n, dtype=np.int64)
        lengths = self._ascii_counts()[1].copy()
        assert self._word_bytes is not None
        word, starts = self._word_bytes
        buffers = self.column.buffers()
        offsets = np.frombuffer(buffers[1], dtype=np.int64)[: n + 1]
        if not self.ascii.all():  # the other rows' bytes hold no words here
            inside = np.repeat(self.ascii, np.diff(offsets))
            word, starts = word & inside, starts & inside
            lengths[~self.ascii] = 0
        # The word bytes, lower-cased, end to end: with each word's length, a string column.
        data = bytes(memoryview(buffers[2] or b"")[: int(offsets[-1])]).lower()
        packed = np.frombuffer(data, dtype=np.uint8)[word]
        # A word ends where the next byte is no word byte or starts a word (the next row's).
        last = word.copy()
        last[:-1] &= ~word[1:] | starts[1:]
        word_sizes = np.flatnonzero(last) - np.flatnonzero(starts) + 1
        ends = np.zeros(len(word_sizes) + 1, dtype=np.int64)
        np.cumsum(word_sizes, out=ends[1:])
        flat = pa.LargeStringArray.from_buffers(
            len(word_sizes), pa.py_buffer(ends), pa.py_buffer(packed)
        )
        # (Arrays cross to numpy by their buffers: pa.array and to_numpy import pandas.)
        encoded = pc.dictionary_encode(flat)
        ids = column_values(encoded.indices).astype(np.int64)
        vocabulary = encoded.dictionary.cast(pa.large_binary()).to_pylist()
        return vocabulary, ids, lengths

    def _splice(
        self, vocabulary: list[bytes], ids: np.ndarray, lengths: np.ndarray
    ) -> tuple[list[bytes], np.ndarray, np.ndarray]:
        # The non-ASCII rows' words (Python's regex) go in between the ASCII rows' words.
        index = {word: i for i, word in enumerate(vocabulary)}
        rows = np.flatnonzero(~self.ascii)
        extra: list[int] = []
        for i in rows.tolist():
            found = _WORD.findall(self.texts[i].lower())
            words = [w.encode("utf-8", "surrogatepass") for w in found]
            for word in words:
                if word not in index:
                    index[word] = len(vocabulary)
                    vocabulary.append(word)
            extra.extend(index[w] for w in words)
            lengths[i] = len(words)
        before = np.cumsum(lengths) - lengths  # words before each row
        at = np.repeat(before[rows] - np.cumsum(lengths[rows]) + lengths[rows], lengths[rows])
        return vocabulary, np.insert(ids, at, np.asarray(extra, dtype=np.int64)), lengths

    def word_keys(self) -> np.ndarray:
        """The 64-bit key of every word of ``word_ids()`` (uint64; computed once)."""
        if self._keys is None:
            vocabulary, ids, _ = self.word_ids()
            if len(_KEYS) > _WORD_KEYS_SIZE:
                _KEYS.clear()
            keys = np.fromiter(
                map(_KEYS.__getitem__, vocabulary), dtype=np.uint64, count=len(vocabulary)
            )
            self._keys = keys[ids]
        return self._keys
