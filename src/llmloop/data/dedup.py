"""Duplicate detection: exact (normalised-text hash) and near (MinHash signatures + LSH).

Signatures are computed for a whole batch at once with numpy (word 3-gram shingles from crc32
word hashes, then ``num_perm`` multiply-shift hash permutations) and banded into LSH keys with
numpy, so indexing one row costs a few dictionary look-ups. Deterministic for a given seed.
(datasketch's ``MinHashLSH`` was the first index here; at a million rows its per-row Python
cost and its bytes-keyed tables were several times slower and larger, so the banding is ours.)

It does not decide what to drop: the profile counts and the dedup steps remove.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Sequence
from itertools import chain

import numpy as np

from llmloop.errors import ConfigError

_WORD = re.compile(r"\w+", re.UNICODE)
_MAX_HASH = np.uint64((1 << 32) - 1)
_SHINGLE_MULTIPLIERS = [np.uint64(m) for m in (1_000_003, 2_654_435_761, 1, 40_503, 97, 7)]


_WORD_CACHE_SIZE = 500_000


def _crc(word: str) -> int:
    # 0 is reserved so that a cached hash is always truthy.
    return zlib.crc32(word.encode()) or 1


class _CrcCache(dict[str, int]):
    """Word -> ``_crc(word)``, computed on first use."""

    def __missing__(self, word: str) -> int:
        value = self[word] = _crc(word)
        return value


def normalise_for_match(text: str) -> str:
    """Lower-cased words joined by single spaces: the text compared for duplicates."""
    return " ".join(_WORD.findall(text.lower()))


def exact_key(text: str) -> bytes:
    """A 16-byte digest of the normalised text (equal for exact duplicates)."""
    return hashlib.blake2b(normalise_for_match(text).encode(), digest_size=16).digest()


def words_of(text: str) -> list[str]:
    """The lower-cased words of ``text`` (what duplicates are compared on)."""
    return _WORD.findall(text.lower())


# ASCII bytes that are not \w become spaces: on ASCII text, translate + split == findall(\w+).
_ASCII_NON_WORD = bytes.maketrans(
    bytes(range(128)),
    bytes(c if chr(c).isalnum() or c == ord("_") else ord(" ") for c in range(128)),
)


def words_of_batch(texts: Sequence[str]) -> list[list[str]]:
    """``words_of`` of each text; ASCII rows take a C-level translate and split (twice as fast)."""
    return [
        t.lower().encode().translate(_ASCII_NON_WORD).decode().split()
        if t.isascii()
        else _WORD.findall(t.lower())
        for t in texts
    ]


def exact_key_of_words(words: list[str]) -> bytes:
    """``exact_key`` from words already split by ``words_of``."""
    return hashlib.blake2b(" ".join(words).encode(), digest_size=16).digest()


def shingles(text: str, size: int = 3) -> list[int]:
    """crc32 hashes of the word ``size``-grams of ``text`` (the whole text when shorter)."""
    return shingles_of_words(words_of(text), size)


def shingles_of_words(words: list[str], size: int = 3) -> list[int]:
    """crc32 hashes of the ``size``-grams of ``words``."""
    if len(words) <= size:
        return [zlib.crc32(" ".join(words).encode())]
    return [
        zlib.crc32(" ".join(words[i : i + size]).encode()) for i in range(len(words) - size + 1)
    ]


class MinHasher:
    """Batch MinHash signatures with ``num_perm`` permutations and a fixed seed."""

    def __init__(self, num_perm: int = 64, seed: int = 1, shingle_size: int = 3) -> None:
        if not 8 <= num_perm <= 512:
            raise ConfigError("num_perm must be between 8 and 512")
        rng = np.random.RandomState(seed)
        self.num_perm = num_perm
        self.seed = seed
        self.shingle_size = shingle_size
        self._word_hashes = _CrcCache()
        # Odd 64-bit multipliers and offsets for multiply-shift hashing.
        self._a = rng.randint(0, 1 << 62, size=num_perm, dtype=np.int64).astype(
            np.uint64
        ) * np.uint64(2) + np.uint64(1)
        self._b = rng.randint(0, 1 << 62, size=num_perm, dtype=np.int64).astype(np.uint64)

    def signatures(self, texts: Sequence[str]) -> np.ndarray:
        """A (len(texts), num_perm) uint64 array of signatures."""
        return self.signatures_of_words([words_of(t) for t in texts])

    def signatures_of_words(self, word_lists: Sequence[list[str]]) -> np.ndarray:
        """Signatures from texts already split into words.

        Word hashes (crc32) are combined into shingle hashes with numpy, so the Python-level work
        is one crc32 per word; a text shorter than a shingle is one shingle of all its words.
        """
        if not word_lists:
            return np.zeros((0, self.num_perm), dtype=np.uint64)
        lists = [w if w else [""] for w in word_lists]
        lengths = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
        cache = self._word_hashes
        if len(cache) > _WORD_CACHE_SIZE:
            cache.clear()
        # C-level map over a dict whose __missing__ computes the crc: Python runs per new word.
        flat = np.fromiter(
            map(cache.__getitem__, chain.from_iterable(lists)),
            dtype=np.uint64,
            count=int(lengths.sum()),
        )
        return self.signatures_of_hashes(flat, lengths)

    def signatures_of_hashes(self, flat: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Signatures from the 32-bit word hashes of all rows in a row (``flat``, uint64) and
        the words per row; a row without words must carry one word (hash 1, the empty text)."""
        if not len(lengths):
            return np.zeros((0, self.num_perm), dtype=np.uint64)
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        row_of = np.repeat(np.arange(len(lengths)), lengths)
        remaining = (starts + lengths)[row_of] - np.arange(len(flat))
        padded = np.concatenate((flat, np.zeros(self.shingle_size, dtype=np.uint64)))
        combined = np.zeros(len(flat), dtype=np.uint64)
        for k in range(self.shingle_size):
            term = padded[k : k + len(flat)] * _SHINGLE_MULTIPLIERS[k]
            combined += np.where(remaining > k, term, np.uint64(0))
        combined &= _MAX_HASH
        # A shingle starts where a full window fits, or at the first word of a short text.
        valid = (remaining >= self.shingle_size) | (
            (np.arange(len(flat)) == starts[row_of]) & (lengths[row_of] < self.shingle_size)
        )
        shingle_hashes = combined[valid]
        counts = np.bincount(row_of[valid], minlength=len(lengths))
        offsets = np.concatenate(([0], np.cumsum(counts)))
        out = np.empty((self.num_perm, len(lengths)), dtype=np.uint64)
        # Permutation-major blocks of a few thousand shingles stay in cache, and the minimum
        # runs along contiguous rows: about twice as fast as the shingle-major layout.
        step = max(1, 8192 // self.num_perm)
        for lo in range(0, len(lengths), step):
            hi = min(len(lengths), lo + step)
            part = shingle_hashes[offsets[lo] : offsets[hi]]
            # Multiply-shift hashing (wrapping uint64 arithmetic): no modulo in the hot loop;
            # in place, so one (num_perm, shingles) buffer instead of three.
            hashed = np.multiply(self._a[:, None], part[None, :])
            hashed += self._b[:, None]
            hashed >>= np.uint64(32)
            out[:, lo:hi] = np.minimum.reduceat(hashed, offsets[lo:hi] - offsets[lo], axis=1)
        return np.ascontiguousarray(out.T)

    def jaccard(self, left: np.ndarray, right: np.ndarray) -> float:
        """Estimated Jaccard similarity of two signatures."""
        return float(np.mean(left == right))


def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band) whose S-curve crosses ``threshold``: (1/b)^(1/r) close to it."""
    best = (1, num_perm)
    for rows in range(1, num_perm + 1):
        if num_perm % rows:
            continue
        bands = num_perm // rows
        if abs((1 / bands) ** (1 / rows) - threshold) < abs(
            (1 / best[0]) ** (1 / best[1]) - threshold
        ):
            best = (bands, rows)
    return best


def band_keys(signatures: np.ndarray, bands: int) -> np.ndarray:
    """One uint64 key per (row, band): rows sharing a key in any band are LSH candidates."""
    rows = signatures.shape[1] // bands
    shaped = signatures[:, : bands * rows].reshape(len(signatures), bands, rows)
    coefficients = np.random.RandomState(7).randint(1, 1 << 62, size=rows, dtype=np.int64)
    # uint64 arithmetic wraps modulo 2**64, which is what a hash wants.
    return (shaped * coefficients.astype(np.uint64)).sum(axis=2, dtype=np.uint64)


def candidate_duplicates(keys: np.ndarray) -> np.ndarray:
    """A boolean per row: does an earlier row share one of its band keys?"""
    later = np.zeros(len(keys), dtype=bool)
    for band in range(keys.shape[1]):
        _, first = np.unique(keys[:, band], return_index=True)
        seen_first = np.zeros(len(keys), dtype=bool)
        seen_first[first] = True
        later |= ~seen_first
    return later


class NearDupIndex:
    """MinHash LSH over rows seen so far; finds earlier rows similar to new ones.

    One dict per band maps a band key to the first row that had it, and signatures are kept as
    uint32 rows of one growing array, so a million indexed rows cost a few hundred MB. Candidates
    are confirmed by the estimated Jaccard similarity of the full signatures.
    """

    def __init__(self, threshold: float = 0.8, num_perm: int = 64, seed: int = 1) -> None:
        if not 0.0 < threshold < 1.0:
            raise ConfigError("near-duplicate threshold must be between 0 and 1 (exclusive)")
        self.threshold = threshold
        self.hasher = MinHasher(num_perm=num_perm, seed=seed)
        self.bands, self.rows_per_band = lsh_params(threshold, num_perm)
        self._tables: list[dict[int, int]] = [{} for _ in range(self.bands)]
        self._signatures = np.zeros((1024, num_perm), dtype=np.uint32)
        self._next = 0

    def __len__(self) -> int:
        return self._next

    def _candidates(self, keys: list[int]) -> list[int]:
        found = []
        for table, key in zip(self._tables, keys, strict=True):
            hit = table.get(key)
            if hit is not None and hit not in found:
                found.append(hit)
        return found

    def _confirmed(self, signature: np.ndarray, candidates: list[int]) -> list[int]:
        if not candidates:
            return []
        same = (self._signatures[candidates] == signature[None, :]).mean(axis=1)
        return sorted(
            c for c, score in zip(candidates, same, strict=True) if score >= self.threshold
        )

    def _insert(self, signature: np.ndarray, keys: list[int]) -> int:
        key = self._next
        if key >= len(self._signatures):
            grown = np.zeros((len(self._signatures) * 2, self.hasher.num_perm), dtype=np.uint32)
            grown[: len(self._signatures)] = self._signatures
            self._signatures = grown
        self._signatures[key] = signature
        for table, band_key in zip(self._tables, keys, strict=True):
            table.setdefault(band_key, key)
        self._next += 1
        return key

    def _prepare(self, texts: Sequence[str]) -> tuple[np.ndarray, list[list[int]]]:
        signatures = self.hasher.signatures(texts).astype(np.uint32)
        keys = band_keys(signatures.astype(np.uint64), self.bands).tolist()
        return signatures, keys

    def similar(self, texts: Sequence[str]) -> list[list[int]]:
        """For each text, the ids of indexed rows at or above the threshold (nothing is added)."""
        signatures, keys = self._prepare(texts)
        return [
            self._confirmed(signature, self._candidates(row_keys))
            for signature, row_keys in zip(signatures, keys, strict=True)
        ]

    def add(self, texts: Sequence[str]) -> list[int]:
        """Index ``texts``; returns their ids."""
        signatures, keys = self._prepare(texts)
        return [self._insert(sig, row_keys) for sig, row_keys in zip(signatures, keys, strict=True)]

    def check_and_add(self, texts: Sequence[str], add_matches: bool = False) -> list[int | None]:
        """For each text: the id of an earlier similar row (``None`` if none); new rows are added.

        Rows that match are not added unless ``add_matches`` (so a kept row stays the anchor).
        Ids count the rows added, in order, from 0.
        """
        signatures, keys = self._prepare(texts)
        found: list[int | None] = []
        for signature, row_keys in zip(signatures, keys, strict=True):
            matches = self._confirmed(signature, self._candidates(row_keys))
            match = matches[0] if matches else None
            found.append(match)
            if match is None or add_matches:
                self._insert(signature, row_keys)
        return found
