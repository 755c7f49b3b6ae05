"""Stored answers of the OpenAI Responses API, for ``previous_response_id`` and
``GET /v1/responses/{id}``.

OpenAI keeps a response (``store``, true by default) so that the next request can continue the
conversation by naming it instead of sending the history again. Here a response is kept with the
conversation it ends (every turn before it, its input and its output, as chat messages), so a
chain of ``previous_response_id`` costs one lookup, not a walk. Each response belongs to the key
that created it; another key is told it does not exist.

Where they are kept:

- In the gateway process's memory (the default), bounded by a count and by the characters held,
  the least recently used going first, as vLLM keeps them. A conversation then continues only
  on the process that answered it.
- In Redis when ``redis_url`` is set (``llmloop serve --workers N``, Ray Serve): every process
  sees every response, for 30 days (OpenAI's retention) or until the count bound drops the least
  recently used, in the bounded LRU the response cache uses.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from llmloop.core.chat import ChatMessage
from llmloop.errors import NotFoundError, UpstreamError
from llmloop.services.actors import Actor

if TYPE_CHECKING:
    from llmloop.config import Settings

log = logging.getLogger("llmloop.gateway.responses")
REDIS_TTL_S = 30 * 24 * 3600.0
MAX_CHARS = 200_000_000  # of the in-memory store


@dataclass(frozen=True)
class StoredResponse:
    """One answer: its wire ``body``, the ``conversation`` it ends (without instructions, which
    OpenAI does not carry to the next response), the key that owns it, its size, and how many
    turns before the answer were this request's own input."""

    body: dict[str, Any]
    conversation: tuple[ChatMessage, ...]
    key_id: str | None
    chars: int
    inputs: int = 0

    @property
    def input_turns(self) -> tuple[ChatMessage, ...]:
        """The request's own input (the turns before the answer, after the earlier history)."""
        return self.conversation[-1 - self.inputs : -1] if self.inputs else ()

    def to_json(self) -> str:
        turns = [m.model_dump(mode="json", exclude_none=True) for m in self.conversation]
        return orjson.dumps({"body": self.body, "conversation": turns, "key_id": self.key_id,
                             "inputs": self.inputs}).decode()  # fmt: skip

    @classmethod
    def from_json(cls, raw: str) -> StoredResponse:
        data = orjson.loads(raw)
        turns = tuple(ChatMessage.model_validate(m) for m in data["conversation"])
        return cls(data["body"], turns, data["key_id"], len(raw), data["inputs"])


def conversation_chars(messages: tuple[ChatMessage, ...]) -> int:
    """What a conversation weighs in the store: its text, call arguments and media parts."""
    total = 0
    for m in messages:
        total += len(m.content) + 64
        for call in m.tool_calls or ():
            total += len(call.arguments) + len(call.name)
        for part in m.parts or ():
            total += len(str(part))
    return total


def _missing(response_id: str, param: str | None) -> NotFoundError:
    return NotFoundError(
        f"Response with id '{response_id}' not found (responses are kept only for the key that "
        "created them, and without Redis only by the gateway process that answered them).",
        param=param,
    )


class ResponseStore(Protocol):
    @property
    def enabled(self) -> bool: ...

    async def put(self, response_id: str, stored: StoredResponse) -> None:
        """Keep ``stored`` (never raises: an answer does not fail because it was not kept)."""

    async def get(self, response_id: str, actor: Actor, param: str | None = None) -> StoredResponse:
        """The response, if ``actor``'s key created it and it is still kept; else a 404
        naming ``param``, the request field that held the id."""

    async def delete(self, response_id: str, actor: Actor) -> None: ...

    async def aclose(self) -> None: ...


class MemoryResponseStore:
    """Bounded, least-recently-used, per-process; thread-safe (Ray Serve replicas call from
    their own threads)."""

    def __init__(self, max_items: int = 10_000, max_chars: int = MAX_CHARS) -> None:
        self.max_items = max_items
        self.max_chars = max_chars
        self._items: OrderedDict[str, StoredResponse] = OrderedDict()
        self._chars = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def enabled(self) -> bool:
        return self.max_items > 0

    async def put(self, response_id: str, stored: StoredResponse) -> None:
        if not self.enabled or stored.chars > self.max_chars:
            return
        with self._lock:
            old = self._items.pop(response_id, None)
            if old is not None:
                self._chars -= old.chars
            self._items[response_id] = stored
            self._chars += stored.chars
            while len(self._items) > self.max_items or self._chars > self.max_chars:
                _, dropped = self._items.popitem(last=False)
                self._chars -= dropped.chars

    async def get(self, response_id: str, actor: Actor, param: str | None = None) -> StoredResponse:
        with self._lock:
            stored = self._items.get(response_id)
            if stored is not None and stored.key_id == actor.key_id:
                self._items.move_to_end(response_id)
                return stored
        raise _missing(response_id, param)

    async def delete(self, response_id: str, actor: Actor) -> None:
        await self.get(response_id, actor)
        with self._lock:
            stored = self._items.pop(response_id, None)
            if stored is not None:
                self._chars -= stored.chars

    async def aclose(self) -> None:
        with self._lock:
            self._items.clear()
            self._chars = 0


class RedisResponseStore:
    """Shared by every gateway process through Redis: one entry per response (JSON) with a TTL,
    the least recently used dropped beyond ``max_items`` (the response cache's LRU backend)."""

    def __init__(self, client: Any, max_items: int = 10_000, ttl_s: float = REDIS_TTL_S) -> None:
        from llmloop.services.gateway.cache import RedisExactBackend

        self.max_items = max_items
        self.ttl_s = ttl_s
        self.backend = RedisExactBackend(client, max(1, max_items), prefix="llmloop:responses")

    @property
    def enabled(self) -> bool:
        return self.max_items > 0

    async def put(self, response_id: str, stored: StoredResponse) -> None:
        if not self.enabled:
            return
        try:
            await self.backend.put(response_id, stored.to_json(), self.ttl_s)
        except Exception:  # the answer went out; only its keeping failed
            log.exception("response %s could not be kept in Redis", response_id)

    async def _read(self, response_id: str) -> StoredResponse | None:
        from redis.exceptions import RedisError

        try:
            raw = await self.backend.get(response_id)
        except RedisError as exc:
            raise UpstreamError(f"the response store (Redis) failed: {exc}") from None
        return StoredResponse.from_json(raw) if raw is not None else None

    async def get(self, response_id: str, actor: Actor, param: str | None = None) -> StoredResponse:
        stored = await self._read(response_id)
        if stored is None or stored.key_id != actor.key_id:
            raise _missing(response_id, param)
        return stored

    async def delete(self, response_id: str, actor: Actor) -> None:
        await self.get(response_id, actor)
        await self.backend.delete(response_id)

    async def aclose(self) -> None:
        await self.backend.redis.aclose()


def make_response_store(settings: Settings) -> ResponseStore:
    """Redis when ``settings.redis_url`` is set (several gateway processes), else memory."""
    if settings.redis_url:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
        return RedisResponseStore(client, settings.responses_store_max)
    return MemoryResponseStore(settings.responses_store_max)
