"""OpenAI Responses API wire format: answers rendered as bodies (plain dicts for orjson).

The ``response`` object (``in_progress``, ``completed``, ``incomplete`` or ``failed``), its
output items (a ``message`` with ``output_text``, one ``function_call`` per tool call), usage
in the Responses names, the assistant turn a stored answer adds to its conversation, and a
stored response's input items. Parsing requests is ``responses_wire.py``; streamed events are
``responses_sse.py``.
"""

from __future__ import annotations

import time
from typing import Any

from llmloop.api.gateway.render import logprob_entries
from llmloop.api.gateway.responses_wire import ResponseAsk
from llmloop.api.gateway.schemas import _chat_message
from llmloop.core.chat import ChatMessage, GenerationResult, ToolCall
from llmloop.errors import NotFoundError

INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def response_id(trace_id: str) -> str:
    return f"resp_{trace_id}"


def message_item(item_id: str, text: str, logprobs: list[dict[str, Any]] | None = None,
                 status: str = "completed") -> dict[str, Any]:  # fmt: skip
    part: dict[str, Any] = {"type": "output_text", "text": text, "annotations": []}
    if logprobs is not None:
        part["logprobs"] = logprobs
    return {"type": "message", "id": item_id, "status": status, "role": "assistant",
            "content": [part]}  # fmt: skip


def call_item(item_id: str, call: ToolCall, status: str = "completed") -> dict[str, Any]:
    return {"type": "function_call", "id": item_id, "call_id": call.id, "name": call.name,
            "arguments": call.arguments, "status": status}  # fmt: skip


def output_items(result: GenerationResult, trace_id: str) -> list[dict[str, Any]]:
    """A message item (unless the answer is only tool calls), then one item per call."""
    items: list[dict[str, Any]] = []
    calls = result.tool_calls or []
    if result.text or not calls:
        lps = None if result.logprobs is None else logprob_entries(result.logprobs)
        items.append(message_item(f"msg_{trace_id}", result.text, lps))
    items += [call_item(f"fc_{trace_id}_{i}", c) for i, c in enumerate(calls)]
    return items


def usage_body(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {"input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output_tokens}  # fmt: skip


def response_body(
    ask: ResponseAsk,
    trace_id: str,
    created_at: int,
    output: list[dict[str, Any]],
    finish_reason: str | None = None,
    usage: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``response`` object: ``in_progress`` until ``finish_reason`` is known, then
    ``completed``, or ``incomplete`` (cut by max_output_tokens or a guard), or ``failed``."""
    status, incomplete = "in_progress", None
    if error is not None:
        status = "failed"
    elif finish_reason is not None:
        reason = INCOMPLETE.get(finish_reason)
        status = "completed" if reason is None else "incomplete"
        incomplete = None if reason is None else {"reason": reason}
    done = status != "in_progress"
    return {
        "id": response_id(trace_id), "object": "response", "created_at": created_at,
        "status": status, "completed_at": int(time.time()) if done else None,
        "error": error, "incomplete_details": incomplete, "model": ask.model,
        "output": output, "usage": usage, **ask.echo, "trace_id": trace_id,
    }  # fmt: skip


def answer_turn(result: GenerationResult) -> ChatMessage:
    """The answer as the assistant turn a following response sees."""
    return _chat_message(role="assistant", content=result.text, tool_calls=result.tool_calls)


def _input_item(turn: ChatMessage, item_id: str) -> list[dict[str, Any]]:
    """One chat turn as Responses input items (an assistant turn with calls is several)."""
    if turn.role == "tool":
        return [{"type": "function_call_output", "id": item_id, "call_id": turn.tool_call_id,
                 "output": turn.content, "status": "completed"}]  # fmt: skip
    items = []
    if turn.content or not turn.tool_calls:
        kind = "output_text" if turn.role == "assistant" else "input_text"
        items.append({"type": "message", "id": item_id, "role": turn.role, "status": "completed",
                      "content": [{"type": kind, "text": turn.content}]})  # fmt: skip
    items += [call_item(f"{item_id}_{j}", call) for j, call in enumerate(turn.tool_calls or [])]
    return items


def input_items_page(
    turns: tuple[ChatMessage, ...], response_id: str, limit: int, order: str, after: str | None
) -> dict[str, Any]:
    """OpenAI's list of a response's input items: ``limit`` of them from after ``after``."""
    base = response_id.removeprefix("resp_")
    items = [item for i, turn in enumerate(turns) for item in _input_item(turn, f"in_{base}_{i}")]
    if order == "desc":
        items.reverse()
    if after is not None:
        ids = [item["id"] for item in items]
        if after not in ids:
            raise NotFoundError(f"no input item '{after}' in response '{response_id}'",
                                param="after")  # fmt: skip
        items = items[ids.index(after) + 1 :]
    page = items[:limit]
    first, last = (page[0]["id"], page[-1]["id"]) if page else (None, None)
    return {"object": "list", "data": page, "first_id": first, "last_id": last,
            "has_more": len(items) > limit}  # fmt: skip
