"""Streamed Responses API answers: engine chunks as OpenAI's semantic events.

A stream is ``response.created`` and ``response.in_progress``, then each output item opened
(``response.output_item.added``), filled (``response.output_text.delta`` under a
``response.content_part.added``, or ``response.function_call_arguments.delta``) and closed
(the matching ``.done`` events), and last ``response.completed`` (or ``response.incomplete``
when cut by ``max_output_tokens`` or a guard) carrying the whole response with its usage.
Every event names its ``type`` in an SSE ``event:`` line too, and carries a
``sequence_number``; there is no ``[DONE]``. A failure after the first event is an ``error``
event and ``response.failed``. The official client's ``responses.stream`` helper rebuilds the
response from these events, so their indices must agree with the final object's.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from llmloop.api.gateway.render import logprob_entries
from llmloop.api.gateway.responses_render import (
    call_item,
    message_item,
    response_body,
    usage_body,
)
from llmloop.api.gateway.responses_wire import ResponseAsk
from llmloop.api.gateway.sse import error_fields
from llmloop.core.chat import ChatMessage, GenerationChunk, TokenLogprob, ToolCall, ToolCallDelta


class ResponseEvents:
    """Turns one answer's chunks into events and keeps what the final response holds."""

    def __init__(self, ask: ResponseAsk, trace_id: str, created_at: int) -> None:
        self.ask, self.trace_id, self.created_at = ask, trace_id, created_at
        self.seq = 0
        self.items: list[tuple[int, dict[str, Any]]] = []  # (output_index, finished item)
        self.next_index = 0
        self.messages = 0
        self.msg: dict[str, Any] | None = None  # the open message item
        self.calls: dict[int, dict[str, Any]] = {}  # the open call items, by the engine's index
        self.text: list[str] = []  # every text delta, for the stored turn
        self.tool_calls: list[ToolCall] = []
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.final: dict[str, Any] | None = None  # the response, once finished

    def _event(self, kind: str, **fields: Any) -> bytes:
        body = {"type": kind, "sequence_number": self.seq, **fields}
        self.seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(body) + b"\n\n"

    def start(self) -> bytes:
        resp = response_body(self.ask, self.trace_id, self.created_at, [])
        return self._event("response.created", response=resp) + self._event(
            "response.in_progress", response=resp
        )

    def render(self, chunk: GenerationChunk) -> bytes:
        out = b""
        if chunk.tool_calls:
            out += self._close_message()
            for delta in chunk.tool_calls:
                out += self._call_delta(delta)
        if chunk.text or chunk.logprobs:  # tokens without text (special ones) keep their scores
            out += self._close_calls() + self._text(chunk.text, chunk.logprobs)
        if chunk.finish_reason is not None:
            self.finish_reason = chunk.finish_reason
            if chunk.usage is not None:
                u = chunk.usage
                self.usage = usage_body(u.prompt_tokens, u.completion_tokens)
        return out

    def finish(self) -> bytes:
        """The closing events, after the last chunk."""
        out = self._close_message() + self._close_calls()
        if not self.items:  # an empty answer is still one (empty) message
            out += self._text("") + self._close_message()
        output = [item for _, item in sorted(self.items, key=lambda pair: pair[0])]
        resp = response_body(self.ask, self.trace_id, self.created_at, output,
                             self.finish_reason or "stop", self.usage)  # fmt: skip
        kind = "response.completed" if resp["status"] == "completed" else "response.incomplete"
        self.final = resp
        return out + self._event(kind, response=resp)

    def fail(self, exc: BaseException) -> bytes:
        """An ``error`` event and ``response.failed``, after a failure mid-stream."""
        message, code, status = error_fields(exc)
        kind = "rate_limit_exceeded" if status == 429 else (
            "server_error" if status >= 500 else "invalid_prompt")  # fmt: skip
        output = [item for _, item in sorted(self.items, key=lambda pair: pair[0])]
        resp = response_body(self.ask, self.trace_id, self.created_at, output,
                             error={"code": kind, "message": message})  # fmt: skip
        return self._event("error", code=code, message=message, param=None) + self._event(
            "response.failed", response=resp
        )

    def answer_turn(self) -> ChatMessage:
        """The streamed answer as the assistant turn a following response sees."""
        return ChatMessage(role="assistant", content="".join(self.text),
                           tool_calls=self.tool_calls or None)  # fmt: skip

    # -- message ------------------------------------------------------------------------------

    def _text(self, text: str, scored: list[TokenLogprob] | None = None) -> bytes:
        out = b""
        msg = self.msg
        if msg is None:
            item_id = f"msg_{self.trace_id}" + (f"_{self.messages}" if self.messages else "")
            self.messages += 1
            msg = self.msg = {"id": item_id, "index": self.next_index, "text": [], "lps": []}
            self.next_index += 1
            item = {"type": "message", "id": item_id, "status": "in_progress",
                    "role": "assistant", "content": []}  # fmt: skip
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            out += self._event("response.output_item.added", output_index=msg["index"], item=item)
            out += self._event("response.content_part.added", item_id=item_id,
                               output_index=msg["index"], content_index=0, part=part)  # fmt: skip
        logprobs = logprob_entries(scored) if scored else []
        if text or logprobs:
            msg["text"].append(text)
            msg["lps"] += logprobs
            self.text.append(text)
            out += self._event("response.output_text.delta", item_id=msg["id"],
                               output_index=msg["index"], content_index=0, delta=text,
                               logprobs=logprobs)  # fmt: skip
        return out

    def _close_message(self) -> bytes:
        msg, self.msg = self.msg, None
        if msg is None:
            return b""
        text, item_id, index = "".join(msg["text"]), msg["id"], msg["index"]
        status = "incomplete" if self.finish_reason == "length" else "completed"
        lps = msg["lps"] if self.ask.logprobs is not None else None
        item = message_item(item_id, text, lps, status)
        self.items.append((index, item))
        part = item["content"][0]
        return (
            self._event("response.output_text.done", item_id=item_id, output_index=index,
                        content_index=0, text=text, logprobs=msg["lps"])
            + self._event("response.content_part.done", item_id=item_id, output_index=index,
                          content_index=0, part=part)
            + self._event("response.output_item.done", output_index=index, item=item)
        )  # fmt: skip

    # -- function calls -----------------------------------------------------------------------

    def _call_delta(self, delta: ToolCallDelta) -> bytes:
        out = b""
        call = self.calls.get(delta.index)
        if call is None:
            item_id = f"fc_{self.trace_id}_{len(self.tool_calls) + len(self.calls)}"
            call_id = delta.id or f"call_{uuid.uuid4().hex[:24]}"
            call = {"id": item_id, "index": self.next_index, "call_id": call_id,
                    "name": delta.name or "", "args": []}  # fmt: skip
            self.next_index += 1
            self.calls[delta.index] = call
            item = call_item(item_id, ToolCall(id=call["call_id"], name=call["name"],
                                               arguments=""), "in_progress")  # fmt: skip
            out += self._event("response.output_item.added", output_index=call["index"],
                               item=item)  # fmt: skip
        elif delta.name and not call["name"]:
            call["name"] = delta.name
        if delta.arguments:
            call["args"].append(delta.arguments)
            out += self._event("response.function_call_arguments.delta", item_id=call["id"],
                               output_index=call["index"], delta=delta.arguments)  # fmt: skip
        return out

    def _close_calls(self) -> bytes:
        out = b""
        for call in sorted(self.calls.values(), key=lambda c: c["index"]):
            args = "".join(call["args"]) or "{}"
            done = ToolCall(id=call["call_id"], name=call["name"], arguments=args)
            self.tool_calls.append(done)
            item = call_item(call["id"], done)
            self.items.append((call["index"], item))
            out += self._event("response.function_call_arguments.done", item_id=call["id"],
                               output_index=call["index"], name=call["name"],
                               arguments=args)  # fmt: skip
            out += self._event("response.output_item.done", output_index=call["index"], item=item)
        self.calls.clear()
        return out
