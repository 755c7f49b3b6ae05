"""Duplicate detection: exact (normalised-text hash) and near (MinHash signatures + LSH).

Signatures are computed for a whole batch at once with numpy (word 3-gram shingles hashed with
crc32, then ``num_perm`` universal hash permutations), and indexed with datasketch's
``MinHashLSH`` through ``LeanMinHash`` values, so one row costs a few dictionary look-ups.
Deterministic for a given seed.

It does not decide what to drop: the profile counts and the dedup steps remove.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Sequence

import numpy as np
from datasketch import LeanMinHash, MinHashLSH

from llmloop.errors import ConfigError

_WORD = re.compile(r"\w+", re.UNICODE)
_MERSENNE = np.uint64((1 << 61) - 1)
_MAX_HASH = np.uint64((1 << 32) - 1)


def normalise_for_match(text: str) -> str:
    """Lower-cased words joined by single spaces: the text compared for duplicates."""
    return " ".join(_WORD.findall(text.lower()))


def exact_key(text: str) -> bytes:
    """A 16-byte digest of the normalised text (equal for exact duplicates)."""
    return hashlib.blake2b(normalise_for_match(text).encode(), digest_size=16).digest()


def shingles(text: str, size: int = 3) -> list[int]:
    """crc32 hashes of the word ``size``-grams of ``text`` (the whole text when shorter)."""
    words = _WORD.findall(text.lower())
    if len(words) <= size:
        return [zlib.crc32(" ".join(words).encode())]
    return [zlib.crc32(" ".join(words[i : i + size]).encode()) for i in range(len(words) - size + 1)]


class MinHasher:
    """Batch MinHash signatures with ``num_perm`` permutations and a fixed seed."""

    def __init__(self, num_perm: int = 64, seed: int = 1, shingle_size: int = 3) -> None:
        if not 8 <= num_perm <= 512:
            raise ConfigError("num_perm must be between 8 and 512")
        rng = np.random.RandomState(seed)
        self.num_perm = num_perm
        self.seed = seed
        self.shingle_size = shingle_size
        self._a = rng.randint(1, 1 << 31, size=num_perm, dtype=np.int64).astype(np.uint64)
        self._b = rng.randint(0, 1 << 31, size=num_perm, dtype=np.int64).astype(np.uint64)

    def signatures(self, texts: Sequence[str]) -> np.ndarray:
        """A (len(texts), num_perm) uint64 array of signatures."""
        if not texts:
            return np.zeros((0, self.num_perm), dtype=np.uint64)
        per_text = [shingles(t, self.shingle_size) for t in texts]
        counts = np.fromiter((len(s) for s in per_text), dtype=np.int64, count=len(per_text))
        flat = np.fromiter(
            (h for s in per_text for h in s), dtype=np.uint64, count=int(counts.sum())
        )
        out = np.empty((len(texts), self.num_perm), dtype=np.uint64)
        # Chunks of shingles keep the (shingles x perms) matrix small.
        offsets = np.concatenate(([0], np.cumsum(counts)))
        step = max(1, 200_000 // self.num_perm)
        for lo in range(0, len(texts), step):
            hi = min(len(texts), lo + step)
            part = flat[offsets[lo] : offsets[hi]]
            hashed = ((part[:, None] * self._a[None, :] + self._b[None, :]) % _MERSENNE) & _MAX_HASH
            starts = offsets[lo:hi] - offsets[lo]
            out[lo:hi] = np.minimum.reduceat(hashed, starts, axis=0)
        return out

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
        if abs((1 / bands) ** (1 / rows) - threshold) < abs((1 / best[0]) ** (1 / best[1]) - threshold):
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
    """MinHash LSH over rows seen so far: ``check_and_add`` says which earlier row a new one matches."""

    def __init__(self, threshold: float = 0.8, num_perm: int = 64, seed: int = 1) -> None:
        if not 0.0 < threshold < 1.0:
            raise ConfigError("near-duplicate threshold must be between 0 and 1 (exclusive)")
        self.threshold = threshold
        self.hasher = MinHasher(num_perm=num_perm, seed=seed)
        self._lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self._signatures: dict[int, np.ndarray] = {}
        self._next = 0

    def similar(self, texts: Sequence[str]) -> list[list[int]]:
        """For each text, the ids of indexed rows at or above the threshold (nothing is added)."""
        found: list[list[int]] = []
        for signature in self.hasher.signatures(texts):
            lean = LeanMinHash(seed=self.hasher.seed, hashvalues=signature, scheme="legacy")
            found.append(
                sorted(
                    c
                    for c in self._lsh.query(lean)
                    if self.hasher.jaccard(signature, self._signatures[c]) >= self.threshold
                )
            )
        return found

    def add(self, texts: Sequence[str]) -> list[int]:
        """Index ``texts``; returns their ids."""
        ids = []
        for signature in self.hasher.signatures(texts):
            key = self._next
            self._next += 1
            lean = LeanMinHash(seed=self.hasher.seed, hashvalues=signature, scheme="legacy")
            self._lsh.insert(key, lean, check_duplication=False)
            self._signatures[key] = signature
            ids.append(key)
        return ids

    def check_and_add(self, texts: Sequence[str], add_matches: bool = False) -> list[int | None]:
        """For each text: the id of an earlier similar row (``None`` if none); new rows are added.

        Rows that match are not added unless ``add_matches`` (so a kept row stays the anchor).
        Ids count rows in the order they were given, from 0.
        """
        found: list[int | None] = []
        for signature in self.hasher.signatures(texts):
            key = self._next
            self._next += 1
            lean = LeanMinHash(seed=self.hasher.seed, hashvalues=signature, scheme="legacy")
            match = None
            for candidate in self._lsh.query(lean):
                if self.hasher.jaccard(signature, self._signatures[candidate]) >= self.threshold:
                    match = candidate
                    break
            found.append(match)
            if match is None or add_matches:
                self._lsh.insert(key, lean, check_duplication=False)
                self._signatures[key] = signature
        return found
