"""One batch of row texts as columns: the per-row measures the profile takes of every row.

Built once per batch: the texts as a pyarrow ``large_string`` column (one UTF-8 buffer), which
rows are ASCII, and, from a class per byte (word, space, other) with numpy over the whole batch,
the regex token count, the word count and the emptiness of every ASCII row. The words of all
rows come as one flat list of lower-cased UTF-8 words (the ASCII rows split in one C-level call
over the joined batch) with a count per row, and each word gets a deterministic 64-bit key (its
crc32, the MinHash word hash of ``dedup``, in the low half), from which rows get exact keys.
Non-ASCII rows (the rare case) take Python's regex, so every result equals the per-row
definition: ``dedup.words_of``, ``len(text._REGEX_TOKEN.findall(t))``, ``not t.strip()``.

It does not judge rows (``profile``) nor read them (``loaders``).
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Sequence
from itertools import chain
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
# ASCII bytes that are not \w become spaces: on ASCII text, translate + split == findall(\w+).
_ASCII_NON_WORD = bytes.maketrans(
    bytes(range(128)), bytes(c if c in _WORD_BYTES else ord(" ") for c in range(128))
)
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
        self._words: tuple[list[bytes], np.ndarray] | None = None

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

    def words(self) -> tuple[list[bytes], np.ndarray]:
        """The lower-cased ``\\w+`` words of every row, UTF-8, in one list; and words per row."""
        if self._words is None:
            texts = self.texts
            lengths = self._ascii_counts()[1].copy()
            if self.ascii.all():
                joined = "\n".join(texts)
            else:
                joined = "\n".join(texts[i] for i in np.flatnonzero(self.ascii).tolist())
                lengths[~self.ascii] = 0
            flat = joined.encode("ascii").lower().translate(_ASCII_NON_WORD).split()
            if not self.ascii.all():
                flat = self._splice(flat, lengths)
            self._words = (flat, lengths)
        return self._words

    def _splice(self, flat: list[bytes], lengths: np.ndarray) -> list[bytes]:
        # The non-ASCII rows' words (Python's regex) go in between the ASCII rows' words.
        before = np.cumsum(lengths) - lengths  # ASCII words before each row
        pieces: list[list[bytes]] = []
        cursor = 0
        for i in np.flatnonzero(~self.ascii).tolist():
            found = _WORD.findall(self.texts[i].lower())
            words = [w.encode("utf-8", "surrogatepass") for w in found]
            pieces.append(flat[cursor : int(before[i])])
            pieces.append(words)
            cursor = int(before[i])
            lengths[i] = len(words)
        pieces.append(flat[cursor:])
        return list(chain.from_iterable(pieces))

    def word_keys(self) -> np.ndarray:
        """The 64-bit key of every word of ``words()`` (uint64)."""
        flat, _ = self.words()
        if len(_KEYS) > _WORD_KEYS_SIZE:
            _KEYS.clear()
        return np.fromiter(map(_KEYS.__getitem__, flat), dtype=np.uint64, count=len(flat))
