"""The response cache of the gateway: exact matches first, then (if enabled) semantic ones.

An exact entry is keyed by a digest of the *scope* (the caller passes the deployment and its
version, so a new version never serves an old answer) and the normalised request: model,
messages, prompt, sampling parameters and the other fields that change the answer (not ``user``
or ``request_id``). Only deterministic requests (temperature 0) are cached unless
``allow_sampled`` says otherwise, and only finished answers (not errors, cancellations or
filtered ones). Entries expire after ``ttl_s`` and the store keeps at most ``max_entries``
(least recently used out): in process by default, in Redis when one is configured.

A cache failure (Redis down, an embedder error) is logged and read as a miss: the cache never
fails a request. This module does not decide *whether* a deployment uses a cache; the caller
does, with a :class:`CacheConfig`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from llmloop.core.chat import ChatMessage, GenerationRequest, GenerationResult
from llmloop.services.gateway.cache_semantic import Embed, SemanticCache

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from llmloop.config import Settings

log = logging.getLogger(__name__)
_UNCACHEABLE_FINISH = frozenset({"error", "cancelled", "content_filter"})


class CacheConfig(BaseModel):
    """How one deployment caches responses."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    exact: bool = Field(default=True, description="Serve identical requests from the cache.")
    ttl_s: float = Field(default=3600.0, gt=0, description="Seconds an entry stays valid.")
    max_entries: int = Field(default=10_000, ge=1, description="Most exact entries kept.")
    allow_sampled: bool = Field(
        default=False, description="Also cache requests with temperature > 0 (answers repeat)."
    )
    semantic: bool = Field(
        default=False, description="Also serve requests similar to a cached one (by embedding)."
    )
    semantic_model: str | None = Field(
        default=None,
        description="Local sentence-transformers directory that embeds for the semantic cache; "
        "None: the bundled all-MiniLM-L6-v2 (the eval extra).",
    )
    semantic_threshold: float = Field(
        default=0.95, gt=0, le=1, description="Least cosine similarity of a semantic hit."
    )
    semantic_multi_turn: bool = Field(
        default=False, description="Let chats with several user turns use the semantic cache."
    )
    semantic_max_entries: int = Field(default=2048, ge=1, description="Most semantic entries.")


@dataclass(frozen=True)
class CacheHit:
    result: GenerationResult
    kind: Literal["exact", "semantic"]
    similarity: float = 1.0


class ExactBackend(Protocol):
    """Where exact entries live: text values under string keys, with a TTL and a size bound."""

    async def get(self, key: str) -> str | None: ...

    async def put(self, key: str, value: str, ttl_s: float) -> None: ...


class MemoryExactBackend:
    """An in-process LRU with expiry (one per process; not shared)."""

    def __init__(self, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self.max_entries = max_entries
        self.clock = clock
        self._entries: OrderedDict[str, tuple[float, str]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> str | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self.clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry[1]

    async def put(self, key: str, value: str, ttl_s: float) -> None:
        self._entries[key] = (self.clock() + ttl_s, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


_REDIS_PUT = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], KEYS[1])
local extra = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4])
if extra > 0 then
  local old = redis.call('ZPOPMIN', KEYS[2], extra)
  for i = 1, #old, 2 do redis.call('DEL', old[i]) end
end
return 1
"""


class RedisExactBackend:
    """Entries shared by every gateway process: Redis TTLs plus an LRU index (a sorted set)."""

    def __init__(self, client: aioredis.Redis, max_entries: int, prefix: str = "llmloop:cache"):
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self.redis = client
        self.max_entries = max_entries
        self._base = f"{{{prefix}}}"  # one hash slot: the script touches entries and the index
        self._index = f"{self._base}:lru"
        self._put = client.register_script(_REDIS_PUT)

    async def get(self, key: str) -> str | None:
        name = f"{self._base}:e:{key}"
        value = await self.redis.get(name)
        if value is None:
            return None
        await self.redis.zadd(self._index, {name: time.time()}, xx=True)
        return value.decode() if isinstance(value, bytes) else str(value)

    async def delete(self, key: str) -> None:
        name = f"{self._base}:e:{key}"
        await self.redis.delete(name)
        await self.redis.zrem(self._index, name)

    async def put(self, key: str, value: str, ttl_s: float) -> None:
        name = f"{self._base}:e:{key}"
        args: list[str | int] = [
            value,
            max(1, int(ttl_s * 1000)),
            repr(time.time()),
            self.max_entries,
        ]
        await self._put(keys=[name, self._index], args=args)


def normalised_request(req: GenerationRequest, blank_last_user: bool = False) -> dict[str, Any]:
    """The fields that change the answer, in a canonical form (stop sequences sorted)."""
    messages = [_message_key(m) for m in req.messages or []]
    if blank_last_user and messages and messages[-1][0] == "user":
        messages[-1][1] = ""
    sampling = req.sampling.model_dump(mode="json")
    sampling["stop"] = sorted(sampling["stop"])
    return {"model": req.model, "messages": messages if req.messages is not None else None,
            "prompt": None if blank_last_user else req.prompt, "sampling": sampling,
            "logprobs": req.logprobs, "echo": req.echo, "adapter": req.adapter,
            **_tool_fields(req)}  # fmt: skip


def _message_key(m: ChatMessage) -> list[Any]:
    key: list[Any] = [m.role, m.content, m.name]
    if m.tool_calls or m.tool_call_id:  # plain turns keep the key they always had
        key += [[[c.id, c.name, c.arguments] for c in m.tool_calls or ()], m.tool_call_id]
    if m.parts:
        key.append(m.parts)
    return key


def _tool_fields(req: GenerationRequest) -> dict[str, Any]:
    """Token-id prompts, tools and response format, only when present (older keys stay as they
    were)."""
    fields = {"prompt_ids": req.prompt_ids, "tools": req.tools, "tool_choice": req.tool_choice,
              "parallel_tool_calls": req.parallel_tool_calls,
              "response_format": req.response_format,
              "passthrough": req.passthrough}  # fmt: skip
    return {k: v for k, v in fields.items() if v is not None}


def request_digest(scope: str, req: GenerationRequest, blank_last_user: bool = False) -> str:
    body = {"v": 1, "scope": scope, "req": normalised_request(req, blank_last_user)}
    blob = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


class ResponseCache:
    """Exact and semantic caching of generation results for the gateway."""

    def __init__(
        self,
        config: CacheConfig | None = None,
        backend: ExactBackend | None = None,
        embed: Embed | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config or CacheConfig()
        self.backend: ExactBackend = (
            backend if backend is not None else MemoryExactBackend(self.config.max_entries, clock)
        )
        self.semantic: SemanticCache | None = None
        if self.config.semantic:
            if embed is None:
                raise ValueError("the semantic cache needs an embed function")
            self.semantic = SemanticCache(
                embed, threshold=self.config.semantic_threshold, ttl_s=self.config.ttl_s,
                max_entries=self.config.semantic_max_entries,
                multi_turn=self.config.semantic_multi_turn, clock=clock,
            )  # fmt: skip

    def cacheable(self, req: GenerationRequest) -> bool:
        return req.sampling.temperature == 0.0 or self.config.allow_sampled

    async def lookup(self, scope: str, req: GenerationRequest) -> CacheHit | None:
        """A stored answer for ``req`` in ``scope`` (a deployment version), or None."""
        if not self.cacheable(req):
            return None
        try:
            if self.config.exact:
                value = await self.backend.get(request_digest(scope, req))
                if value is not None:
                    return CacheHit(GenerationResult.model_validate_json(value), "exact")
            if self.semantic is not None:
                found = await self.semantic.lookup(req, request_digest(scope, req, True))
                if found is not None:
                    return CacheHit(found[0], "semantic", found[1])
        except Exception:
            log.warning("response cache lookup failed; serving without it", exc_info=True)
        return None

    async def store(self, scope: str, req: GenerationRequest, result: GenerationResult) -> bool:
        """Keep ``result`` for later identical or similar requests; False when not kept."""
        if not self.cacheable(req) or result.finish_reason in _UNCACHEABLE_FINISH:
            return False
        stored = False
        try:
            if self.config.exact:
                await self.backend.put(
                    request_digest(scope, req), result.model_dump_json(), self.config.ttl_s
                )
                stored = True
            if self.semantic is not None:
                context = request_digest(scope, req, True)
                stored = await self.semantic.store(req, context, result) or stored
        except Exception:
            log.warning("response cache store failed; the answer is not cached", exc_info=True)
        return stored


def make_response_cache(
    settings: Settings, config: CacheConfig | None = None, embed: Embed | None = None
) -> ResponseCache:
    """A cache with Redis-backed exact entries when ``settings.redis_url`` is set."""
    config = config or CacheConfig()
    backend: ExactBackend | None = None
    if settings.redis_url:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
        backend = RedisExactBackend(client, config.max_entries)
    return ResponseCache(config, backend=backend, embed=embed)
