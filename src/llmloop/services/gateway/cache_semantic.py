"""The semantic response cache: answers a new request with a stored answer to a similar one.

Similarity is the cosine of embeddings of the *last user turn*; everything else of the request
(model, sampling, system prompt, earlier turns) must match exactly, through a ``context`` digest
the caller computes. By default only requests with a single user turn are eligible: in a
multi-turn chat the same last words can mean something else. Entries live in one bounded numpy
matrix searched with one matrix-vector product; the least recently used entry (an expired one
first) makes room. It holds no exact-match logic (``cache.py`` does) and computes no embeddings
itself: the caller passes an async ``embed(texts)``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import numpy as np

from llmloop.core.chat import EmbeddingResult, GenerationRequest, GenerationResult

#: An async embedder: texts in, vectors (or an engine's EmbeddingResult) out.
Embed = Callable[[list[str]], Awaitable[list[list[float]] | EmbeddingResult]]


def semantic_text(req: GenerationRequest, multi_turn: bool) -> str | None:
    """The text compared by similarity, or None when the request is not eligible (token-id
    prompts are not: there is no text to compare)."""
    if req.prompt_ids is not None:
        return None
    if req.prompt is not None:
        return req.prompt
    assert req.messages is not None
    user_turns = [m for m in req.messages if m.role == "user"]
    if not user_turns or req.messages[-1].role != "user":
        return None
    if len(user_turns) > 1 and not multi_turn:
        return None
    return req.messages[-1].content


class SemanticCache:
    """A bounded in-process index of (context, embedding) -> result."""

    def __init__(
        self,
        embed: Embed,
        threshold: float = 0.95,
        max_entries: int = 2048,
        ttl_s: float = 3600.0,
        multi_turn: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError("threshold must be in (0, 1]")
        if max_entries < 1 or ttl_s <= 0:
            raise ValueError("max_entries must be >= 1 and ttl_s > 0")
        self.embed = embed
        self.threshold = threshold
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self.multi_turn = multi_turn
        self.clock = clock
        self._reset(0)

    def _reset(self, dim: int) -> None:
        self._dim = dim
        self._vectors = np.zeros((self.max_entries, dim), dtype=np.float32)
        self._contexts = np.full(self.max_entries, "", dtype="<U64")
        self._expires = np.zeros(self.max_entries, dtype=np.float64)
        self._used = np.zeros(self.max_entries, dtype=np.float64)
        self._results: list[GenerationResult | None] = [None] * self.max_entries
        self._size = 0

    def __len__(self) -> int:
        return int(np.count_nonzero(self._expires[: self._size] > self.clock()))

    async def _vector(self, text: str) -> np.ndarray | None:
        out = await self.embed([text])
        vectors = out.vectors if isinstance(out, EmbeddingResult) else out
        if len(vectors) != 1:
            raise ValueError(f"embed returned {len(vectors)} vectors for 1 text")
        vec = np.asarray(vectors[0], dtype=np.float32)
        norm = float(np.linalg.norm(vec))
        if vec.ndim != 1 or vec.size == 0 or not np.isfinite(norm) or norm == 0.0:
            return None  # nothing to compare by: never a hit, never stored
        return vec / norm

    def _best(self, vec: np.ndarray, context: str, now: float) -> tuple[int, float] | None:
        n = self._size
        if n == 0 or vec.size != self._dim:
            return None
        sims = self._vectors[:n] @ vec
        sims[(self._contexts[:n] != context) | (self._expires[:n] <= now)] = -np.inf
        slot = int(np.argmax(sims))
        return (slot, float(sims[slot])) if np.isfinite(sims[slot]) else None

    async def lookup(
        self, req: GenerationRequest, context: str
    ) -> tuple[GenerationResult, float] | None:
        """The stored result most similar to ``req`` above the threshold, with its similarity."""
        text = semantic_text(req, self.multi_turn)
        if text is None:
            return None
        vec = await self._vector(text)
        if vec is None:
            return None
        now = self.clock()
        best = self._best(vec, context, now)
        if best is None or best[1] < self.threshold - 1e-6:
            return None
        slot, similarity = best
        self._used[slot] = now
        result = self._results[slot]
        assert result is not None
        return result, min(similarity, 1.0)

    async def store(self, req: GenerationRequest, context: str, result: GenerationResult) -> bool:
        """Index ``result`` under the request's embedding; False when not eligible."""
        text = semantic_text(req, self.multi_turn)
        if text is None:
            return False
        vec = await self._vector(text)
        if vec is None:
            return False
        if vec.size != self._dim:
            self._reset(vec.size)  # a different embedder: old vectors cannot be compared
        now = self.clock()
        best = self._best(vec, context, now)
        slot = best[0] if best is not None and best[1] >= 1.0 - 1e-6 else self._free_slot(now)
        self._vectors[slot] = vec
        self._contexts[slot] = context
        self._expires[slot] = now + self.ttl_s
        self._used[slot] = now
        self._results[slot] = result
        return True

    def _free_slot(self, now: float) -> int:
        if self._size < self.max_entries:
            self._size += 1
            return self._size - 1
        # An expired entry first, then the least recently used one.
        score = np.where(self._expires <= now, -np.inf, self._used)
        return int(np.argmin(score))
