"""Stored answers of the OpenAI Responses API, for ``previous_response_id`` and
``GET /v1/responses/{id}``.

OpenAI keeps a response (``store``, true by default) so that the next request can continue the
conversation by naming it instead of sending the history again. Here a response is kept with the
conversation it ends (every turn before it, its input and its output, as chat messages), so a
chain of ``previous_response_id`` costs one lookup, not a walk. The store is the gateway
process's memory, bounded by a count and by the characters it holds (the least recently used
go first), as vLLM keeps them: with several gateway processes, a client continues a
conversation on the process that answered it, or sends the history itself. Each response
belongs to the key that created it; another key is told it does not exist.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from llmloop.core.chat import ChatMessage
from llmloop.errors import NotFoundError
from llmloop.services.actors import Actor


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


class ResponseStore:
    """Bounded, least-recently-used, per-process; thread-safe (Ray Serve replicas call from
    their own threads)."""

    def __init__(self, max_items: int = 10_000, max_chars: int = 200_000_000) -> None:
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

    def put(self, response_id: str, stored: StoredResponse) -> None:
        """Keep ``stored`` (a response too large for the store is not kept)."""
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

    def get(self, response_id: str, actor: Actor, param: str | None = None) -> StoredResponse:
        """The response, if ``actor``'s key created it (and it is still kept); else 404
        (naming ``param``, the request field that held the id, if any)."""
        with self._lock:
            stored = self._items.get(response_id)
            if stored is not None and stored.key_id == actor.key_id:
                self._items.move_to_end(response_id)
                return stored
        raise NotFoundError(
            f"Response with id '{response_id}' not found (responses are kept in the memory of "
            "the gateway process that answered them, and only for the key that created them).",
            param=param,
        )

    def delete(self, response_id: str, actor: Actor) -> None:
        self.get(response_id, actor)
        with self._lock:
            stored = self._items.pop(response_id, None)
            if stored is not None:
                self._chars -= stored.chars
