"""Traces: one record per gateway request (and per shadow copy), named after OpenTelemetry GenAI.

A :class:`TraceRecord` is a plain slotted dataclass, not a pydantic model, because one is built
on every request of the hot path. ``attributes()`` gives the OpenTelemetry GenAI semantic
convention names (``gen_ai.request.model``, ``gen_ai.usage.input_tokens``, ...). Writing records
and exporting spans is the gateway service's business, not this module's.
"""

from __future__ import annotations

import os
import random
import re
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import Field, ModelWrapValidatorHandler, model_validator

from llmloop.core.base import Value
from llmloop.core.ids import encode_id

GEN_AI_SYSTEM = "llmloop"
# A chat request's text in a trace: one "role: content" block per message, joined by newlines.
CHAT_TURN = re.compile(r"^(system|user|assistant|tool|developer): ", re.MULTILINE)
_rng = random.Random(int.from_bytes(os.urandom(16), "big"))


def new_trace_id() -> str:
    """A time-ordered trace id in the format of :func:`llmloop.core.ids.new_id` ("tr_...").

    Uses a PRNG seeded once from the OS (trace ids need to be unique, not secret): an
    ``os.urandom`` call per request costs tens of microseconds on sandboxed kernels.
    """
    return "tr_" + encode_id(int(time.time() * 1000), _rng.getrandbits(80))


def sampled(trace_id: str, rate: float) -> bool:
    """Whether the trace ``trace_id`` falls in a sample of ``rate`` (0..1) of all traces.

    Decided by a hash of the id, so every part of a request (the primary and its shadow copy)
    agrees without sharing state.
    """
    if rate >= 1.0:
        return True
    return rate > 0.0 and zlib.crc32(trace_id.encode()) < rate * 4294967296.0


def column_attributes(trace: Any) -> dict[str, Any]:
    """The OpenTelemetry GenAI (and llmloop.*) attributes that a trace's own fields give.

    ``trace`` is a :class:`TraceRecord` or a :class:`TracePublic`: the store keeps only the
    attributes beyond these (a record's ``extra``), and readers merge them back.
    """
    attrs: dict[str, Any] = {
        "gen_ai.system": GEN_AI_SYSTEM,
        "gen_ai.operation.name": trace.operation,
        "gen_ai.request.model": trace.request_model,
        "gen_ai.response.model": trace.response_model,
        "gen_ai.usage.input_tokens": trace.input_tokens,
        "gen_ai.usage.output_tokens": trace.output_tokens,
        "llmloop.deployment": trace.deployment,
        "llmloop.target": trace.target,
        "llmloop.trace.kind": trace.kind,
        "llmloop.status": trace.status,
        "llmloop.latency_ms": trace.latency_ms,
        "llmloop.cost": trace.cost,
        "llmloop.cache_hit": trace.cache_hit,
        "llmloop.stream": trace.stream,
    }
    if trace.finish_reason is not None:
        attrs["gen_ai.response.finish_reasons"] = [trace.finish_reason]
    if trace.user:
        attrs["gen_ai.request.user"] = trace.user
    if trace.model_version_id:
        attrs["llmloop.model_version_id"] = trace.model_version_id
    if trace.ttft_ms is not None:
        attrs["llmloop.ttft_ms"] = trace.ttft_ms
    if trace.error:
        attrs["error.type"] = trace.error[:200]
    return attrs


@dataclass(slots=True)
class TraceRecord:
    """What happened to one request; ``id`` is the trace id returned to the caller."""

    id: str
    at: datetime
    operation: str  # gen_ai.operation.name: chat | text_completion | embeddings
    deployment: str = ""
    request_model: str = ""
    response_model: str = ""
    model_version_id: str | None = None
    target: str = ""
    kind: str = "primary"  # primary | shadow
    parent_id: str | None = None
    key_id: str | None = None
    user: str | None = None
    status: str = "ok"  # ok | error | cancelled
    http_status: int = 200
    error: str | None = None
    stream: bool = False
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    cache_hit: bool = False
    finish_reason: str | None = None
    guard_verdicts: list[dict[str, Any]] | None = None
    request_text: str = ""
    response_text: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def attributes(self) -> dict[str, Any]:
        """The record as OpenTelemetry GenAI (and llmloop.*) attributes."""
        return {**column_attributes(self), **self.extra}


class TracePublic(Value):
    """A stored trace as the API returns it; ``attributes`` are complete (the stored extras
    merged over the attributes its fields give)."""

    id: str
    at: datetime
    kind: str
    parent_id: str | None
    operation: str
    deployment: str
    request_model: str
    response_model: str
    model_version_id: str | None
    target: str
    key_id: str | None
    user: str | None
    status: str
    http_status: int
    error: str | None
    stream: bool
    latency_ms: float
    ttft_ms: float | None
    input_tokens: int
    output_tokens: int
    cost: float
    cache_hit: bool
    finish_reason: str | None
    guard_verdicts: list[dict[str, Any]] | None
    attributes: dict[str, Any] = Field(default_factory=dict)
    request_text: str = ""
    response_text: str = ""

    @model_validator(mode="wrap")
    @classmethod
    def _complete_attributes(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        trace = handler(data)
        attributes = {**column_attributes(trace), **trace.attributes}
        return trace.model_copy(update={"attributes": attributes})


def join_turns(turns: Iterable[tuple[str, str]]) -> str:
    """A chat request's trace text from its ``(role, content)`` messages."""
    return "\n".join(f"{role}: {content}" for role, content in turns)


def split_turns(text: str) -> list[tuple[str, str]]:
    """The ``(role, content)`` messages of a chat request's trace text; [] when it is not one
    (a completion prompt, say)."""
    marks = list(CHAT_TURN.finditer(text))
    if not marks or marks[0].start() != 0:
        return []
    ends = [m.start() for m in marks[1:]] + [len(text)]
    pairs = zip(marks, ends, strict=True)
    # messages are joined with one newline, which is not part of the content
    return [(m.group(1), text[m.end() : end].removesuffix("\n")) for m, end in pairs]
