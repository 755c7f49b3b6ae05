"""OTLP/HTTP log export requests (``ExportLogsServiceRequest``) read for a model call's messages.

Instrumentations in their event mode (opentelemetry-instrumentation-openai-v2 with
opentelemetry-util-genai's older conventions, and others) send a call's content as log records,
each with the trace and span id of the call's span: ``gen_ai.system.message``,
``gen_ai.user.message``, ``gen_ai.assistant.message`` and ``gen_ai.tool.message`` (the request,
one record a message, the message in the body), ``gen_ai.choice`` (one record an answer, with
its finish reason and tool calls), or one ``gen_ai.client.inference.operation.details`` record
with ``gen_ai.input.messages``/``gen_ai.output.messages`` (and ``gen_ai.system_instructions``)
attributes. :func:`messages_of` turns a span's records into those newer attributes, in the
shape an instrumentation puts on the span itself (role, parts, finish reason), so that a trace
reads the same whichever way its content came. Any other record (an app's own logs) is counted
and ignored; a content record without a span id is rejected (it cannot be matched).

Not here: holding records for their span (``otlp_pending.py``), the trace row
(``otlp_mapping.py``), the HTTP route.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from llmloop.errors import BadRequestError
from llmloop.services.otlp_decode import (
    PROTOBUF,
    answer_body,
    hex_id,
    json_attrs,
    json_document,
    json_list,
    json_value,
    nanos,
    object_list,
    pb_value,
    read_body,
)

DETAILS = "gen_ai.client.inference.operation.details"
#: Records of the request's messages, by role (the body's ``role``, when set, wins).
MESSAGE_EVENTS = {
    "gen_ai.system.message": "system",
    "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant",
    "gen_ai.tool.message": "tool",
}
CONTENT_EVENTS = {*MESSAGE_EVENTS, "gen_ai.choice", DETAILS}
_INPUT, _OUTPUT, _SYSTEM = (
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
)


@dataclass(frozen=True)
class LogEvent:
    """One GenAI content record: its event name, span, time (ns; the observed time when the
    record has none) and what it carries (``{"body": ..., "attributes": {...}}``)."""

    name: str
    trace_id: str
    span_id: str
    time_ns: int
    content: dict[str, Any]


@dataclass(frozen=True)
class LogBatch:
    """What an export request held: its content records, and how many others were ignored
    (not GenAI content) or rejected (content without a span id)."""

    events: list[LogEvent]
    ignored: int
    rejected: int
    media: str


def decode_logs(body: bytes, content_type: str, encoding: str | None) -> LogBatch:
    """The GenAI content records of a log export request (thread-safe); 400, 413 or 415 for a
    body that is not one."""
    raw, media = read_body(body, content_type, encoding)
    try:
        records = _from_protobuf(raw) if media == PROTOBUF else _from_json(raw)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise BadRequestError(f"not an OTLP log export request: {exc}") from None
    events, ignored, rejected = [], 0, 0
    for record in records:
        if record.name not in CONTENT_EVENTS:
            ignored += 1
        elif not record.trace_id.strip("0") or not record.span_id.strip("0"):
            rejected += 1
        else:
            events.append(record)
    return LogBatch(events, ignored, rejected, media)


def _event(name: Any, trace_id: str, span_id: str, times: Iterable[int], body: Any,
           attributes: dict[str, Any]) -> LogEvent:  # fmt: skip
    name = str(name or attributes.get("event.name") or "")  # older SDKs: an attribute
    when = next((t for t in times if t), 0)
    return LogEvent(name, trace_id, span_id, when, {"body": body, "attributes": attributes})


def _from_protobuf(raw: bytes) -> list[LogEvent]:
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    request = ExportLogsServiceRequest()
    try:
        request.ParseFromString(raw)
    except DecodeError as exc:
        raise ValueError(str(exc)) from None
    return [
        _event(r.event_name, r.trace_id.hex(), r.span_id.hex(),
               (r.time_unix_nano, r.observed_time_unix_nano),
               pb_value(r.body) if r.HasField("body") else None,
               {kv.key: pb_value(kv.value) for kv in r.attributes})
        for rl in request.resource_logs for sl in rl.scope_logs for r in sl.log_records
    ]  # fmt: skip


def _from_json(raw: bytes) -> list[LogEvent]:
    doc = json_document(raw)
    events = []
    for rl in object_list(doc, "resourceLogs", "resource_logs"):
        for sl in object_list(rl, "scopeLogs", "scope_logs"):
            for r in object_list(sl, "logRecords", "log_records"):
                body = r.get("body")
                if body is not None and not isinstance(body, dict):
                    raise ValueError("a log record's body must be an AnyValue object")
                events.append(_event(
                    r.get("eventName") or r.get("event_name"),
                    hex_id(r, "traceId", "trace_id"), hex_id(r, "spanId", "span_id"),
                    (nanos(r.get("timeUnixNano") or r.get("time_unix_nano")),
                     nanos(r.get("observedTimeUnixNano") or r.get("observed_time_unix_nano"))),
                    json_value(body) if body else None, json_attrs(r.get("attributes")),
                ))  # fmt: skip
    return events


def messages_of(events: Iterable[tuple[str, dict[str, Any]]]) -> dict[str, str]:
    """The ``gen_ai.input.messages``, ``gen_ai.output.messages`` (and
    ``gen_ai.system_instructions``) attributes, as JSON, that a span's content records (event
    name, content; in the order they were made) amount to. A side no record has content for
    (content capture off) is left out."""
    inputs: list[dict[str, Any]] = []
    choices: list[tuple[int, dict[str, Any]]] = []
    whole: dict[str, Any] = {}  # what an operation.details record says, which wins
    for name, content in events:
        body, attributes = content.get("body"), content.get("attributes") or {}
        body = body if isinstance(body, dict) else {}
        if name == DETAILS:
            for key in (_INPUT, _OUTPUT, _SYSTEM):
                value = json_list(attributes.get(key, body.get(key)))
                if value:
                    whole[key] = value
        elif name == "gen_ai.choice":
            message = _message(body.get("message"), "assistant")
            if message is not None:
                if body.get("finish_reason"):
                    message["finish_reason"] = str(body["finish_reason"])
                choices.append((_index(body.get("index")), message))
        elif name in MESSAGE_EVENTS:
            message = _message(body, MESSAGE_EVENTS[name], tool=name == "gen_ai.tool.message")
            if message is not None:
                inputs.append(message)
    found: dict[str, Any] = {_INPUT: inputs, _OUTPUT: [m for _, m in sorted(choices, key=_first)]}
    found.update(whole)
    return {key: _dumps(value) for key, value in found.items() if value}


def _message(body: Any, role: str, tool: bool = False) -> dict[str, Any] | None:
    """One message in the newer shape, or None when the record carries no content."""
    if not isinstance(body, dict):
        return None
    calls = body.get("tool_calls")
    calls = calls if isinstance(calls, list) else []
    if "content" not in body and not calls:
        return None
    content = body.get("content")
    if tool:
        parts = [{"type": "tool_call_response", "id": body.get("id"), "response": content}]
    else:
        parts = _text_parts(content)
    for call in calls:
        if isinstance(call, dict):
            function = call.get("function")
            function = function if isinstance(function, dict) else {}
            parts.append({"type": "tool_call", "id": call.get("id"), "name": function.get("name"),
                          "arguments": _arguments(function.get("arguments"))})  # fmt: skip
    return {"role": str(body.get("role") or role), "parts": parts}


def _text_parts(content: Any) -> list[dict[str, Any]]:
    """Text parts of a message's content: a string, or OpenAI's list of typed parts (media
    left out, as the span path leaves it out of the text)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    if isinstance(content, list):
        texts = [p if isinstance(p, str) else p.get("text") if isinstance(p, dict) else None
                 for p in content]  # fmt: skip
        return [{"type": "text", "content": t} for t in texts if isinstance(t, str)]
    return [{"type": "text", "content": json.dumps(content)}]


def _arguments(value: Any) -> Any:
    """A tool call's arguments as an object where they are JSON, as the newer conventions
    carry them (the span path writes them back as the same JSON text)."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _index(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _first(item: tuple[int, dict[str, Any]]) -> int:
    return item[0]


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def logs_answer(media: str, rejected: int, message: str) -> bytes:
    """An ExportLogsServiceResponse in ``media``: empty when every record was accepted, else
    with ``partial_success`` saying how many were rejected and why (the OTLP/HTTP spec's
    answer; the exporter does not send them again)."""
    if not rejected:
        return answer_body(media)
    if media == PROTOBUF:
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
            ExportLogsPartialSuccess,
            ExportLogsServiceResponse,
        )

        partial = ExportLogsPartialSuccess(rejected_log_records=rejected, error_message=message)
        return ExportLogsServiceResponse(partial_success=partial).SerializeToString()
    # OTLP/JSON: proto3's JSON mapping, which writes a 64-bit integer as a string
    return orjson.dumps(
        {"partialSuccess": {"rejectedLogRecords": str(rejected), "errorMessage": message}}
    )
