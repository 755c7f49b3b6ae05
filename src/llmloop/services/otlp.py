"""OTLP trace ingest: spans that an application exports with OpenTelemetry become llmloop traces.

An app that calls a model provider directly (not through the gateway), instrumented with the
OpenTelemetry GenAI conventions (the SDK by hand, OpenLLMetry) or OpenInference's (Arize
Phoenix's instrumentors for LangChain, LlamaIndex, OpenAI, ...),
points its OTLP/HTTP exporter at ``/otlp`` (``OTEL_EXPORTER_OTLP_ENDPOINT=http://host:8400/otlp``
and ``OTEL_EXPORTER_OTLP_HEADERS=Authorization=Bearer <key>``). Each span that describes a GenAI
call (it has ``gen_ai.*`` attributes) becomes one trace row, the same row the gateway writes, so
monitoring, feedback, annotation, drift, curation and the dashboard work on it unchanged. Other
spans (HTTP handlers, database calls) are accepted and not stored.

Both OTLP encodings are read: protobuf (``application/x-protobuf``) and JSON
(``application/json``, with hex ids as the OTLP spec has them), gzip or not. What is stored:
model names, token usage, latency, status, the user, the service (as the deployment) and the
conversation, from ``gen_ai.input.messages``/``gen_ai.output.messages``, from OpenLLMetry's
``gen_ai.prompt.N.*``/``gen_ai.completion.N.*``, or from the older ``gen_ai.*.message`` and
``gen_ai.choice`` span events; an OpenInference LLM or embedding span (``llm.model_name``,
``llm.token_count.*``, ``llm.input_messages.N.message.*``, ``input.value``) is read as its GenAI
equivalent. Every attribute is kept under its own name.

Not here: the HTTP route (``api/routes/otlp.py``) or writing rows (the gateway's trace writer).
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from llmloop.core.traces import TraceRecord, join_turns, new_trace_id
from llmloop.errors import (
    BadRequestError,
    OverloadedError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
)
from llmloop.services.actors import Actor
from llmloop.services.gateway.tracing import TraceWriter

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
MAX_INFLATED = 64 * 1024 * 1024  # a gzip body never grows past this (no decompression bombs)
_ERROR = 2  # Status.STATUS_CODE_ERROR
_OPERATIONS = {"chat", "text_completion", "embeddings", "generate_content", "execute_tool",
               "create_agent", "invoke_agent"}  # fmt: skip


@dataclass
class Span:
    """One span as both encodings give it, ids in hex."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    start_ns: int
    end_ns: int
    status_code: int
    status_message: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


@dataclass(frozen=True)
class IngestResult:
    stored: int
    ignored: int
    body: bytes
    media_type: str


class OtlpIngest:
    """Decodes OTLP export requests and hands their GenAI spans to the trace writer."""

    def __init__(self, writer: TraceWriter) -> None:
        self.writer = writer

    def decode(
        self, body: bytes, content_type: str, encoding: str | None
    ) -> tuple[list[Span], str]:
        """The spans of an export request and the media type to answer in (thread-safe)."""
        media = content_type.split(";", 1)[0].strip().lower()
        if media not in (PROTOBUF, JSON):
            raise UnsupportedMediaTypeError(
                f"OTLP/HTTP bodies are {PROTOBUF} or {JSON}, not {media or 'untyped'}"
            )
        raw = _inflate(body, (encoding or "").strip().lower())
        try:
            spans = _from_protobuf(raw) if media == PROTOBUF else _from_json(raw)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise BadRequestError(f"not an OTLP trace export request: {exc}") from None
        for span in spans:
            span.attributes = genai_names(span.attributes)
        return spans, media

    def store(self, spans: list[Span], media: str, actor: Actor) -> IngestResult:
        """Queue the GenAI spans as traces (on the writer's loop); 503 when its queue is full."""
        records = [to_record(s, actor) for s in spans if is_genai(s)]
        if self.writer.depth + len(records) > self.writer.max_queue:
            raise OverloadedError("the trace queue is full; retry shortly", retry_after=1)
        for record in records:
            self.writer.submit(record)
        return IngestResult(len(records), len(spans) - len(records), _answer(media), media)


def genai_names(a: dict[str, Any]) -> dict[str, Any]:
    """``a`` with the GenAI names an OpenInference LLM or embedding span means (its own names
    kept); any other span as it is."""
    kind = str(a.get("openinference.span.kind", "")).upper()
    if kind not in ("LLM", "EMBEDDING") or any(k.startswith("gen_ai.") for k in a):
        return a
    out = dict(a)
    out["gen_ai.operation.name"] = "embeddings" if kind == "EMBEDDING" else "chat"
    renames = {
        "llm.model_name": "gen_ai.request.model",
        "embedding.model_name": "gen_ai.request.model",
        "llm.provider": "gen_ai.provider.name",
        "llm.system": "gen_ai.system",
        "llm.token_count.prompt": "gen_ai.usage.input_tokens",
        "llm.token_count.completion": "gen_ai.usage.output_tokens",
    }
    for source, target in renames.items():
        if source in a and target not in out:
            out[target] = a[source]
    for side, prefix in (("input", "gen_ai.prompt"), ("output", "gen_ai.completion")):
        messages = _indexed(a, f"llm.{side}_messages")
        for i, m in enumerate(messages):
            out[f"{prefix}.{i}.role"] = m.get("message.role", "")
            out[f"{prefix}.{i}.content"] = m.get("message.content", "")
        if not messages and isinstance(a.get(f"{side}.value"), str):
            out[f"{prefix}.0.content"] = a[f"{side}.value"]
    return out


def is_genai(span: Span) -> bool:
    return any(key.startswith("gen_ai.") for key in span.attributes)


def to_record(span: Span, actor: Actor) -> TraceRecord:
    """The trace row of one GenAI span (what the gateway would have written for the call)."""
    a = span.attributes
    failed = span.status_code == _ERROR
    operation = str(a.get("gen_ai.operation.name") or "chat")
    finish = a.get("gen_ai.response.finish_reasons")
    model = str(a.get("gen_ai.request.model") or "")[:256]
    error = (span.status_message or str(a.get("error.type") or "error"))[:2000]
    extra = {k: v for k, v in a.items() if _plain(v)}
    extra.update({"llmloop.source": "otlp", "otel.trace_id": span.trace_id,
                  "otel.span_id": span.span_id, "otel.span_name": span.name})  # fmt: skip
    if span.parent_span_id:
        extra["otel.parent_span_id"] = span.parent_span_id
    service = span.resource.get("service.name")
    return TraceRecord(
        id=new_trace_id(),
        at=datetime.fromtimestamp(span.start_ns / 1e9, UTC),
        operation=operation if operation in _OPERATIONS else "chat",
        deployment=str(a.get("llmloop.deployment") or service or "otlp")[:128],
        request_model=model,
        response_model=str(a.get("gen_ai.response.model") or model)[:256],
        target="otlp",
        key_id=actor.key_id,
        user=_text(a.get("gen_ai.request.user") or a.get("user.id") or a.get("enduser.id")),
        status="error" if failed else "ok",
        http_status=500 if failed else 200,
        error=error if failed else None,
        latency_ms=max(0.0, (span.end_ns - span.start_ns) / 1e6),
        input_tokens=_int(a.get("gen_ai.usage.input_tokens", a.get("gen_ai.usage.prompt_tokens"))),
        output_tokens=_int(
            a.get("gen_ai.usage.output_tokens", a.get("gen_ai.usage.completion_tokens"))
        ),
        cost=max(0.0, _float(a.get("llmloop.cost", a.get("gen_ai.usage.cost")))),
        finish_reason=str(finish[0]) if isinstance(finish, list) and finish else None,
        request_text=_conversation(span, "input"),
        response_text=_conversation(span, "output"),
        extra=extra,
    )


# --- decoding --------------------------------------------------------------------------------


def _inflate(body: bytes, encoding: str) -> bytes:
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise UnsupportedMediaTypeError(f"Content-Encoding {encoding!r}: use gzip or none")
    try:
        inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
        raw = inflater.decompress(body, MAX_INFLATED)
        if inflater.unconsumed_tail:
            raise PayloadTooLargeError(f"the body inflates past {MAX_INFLATED:,} bytes")
        return raw
    except zlib.error as exc:
        raise BadRequestError(f"the body is not valid {encoding}: {exc}") from None


def _from_protobuf(raw: bytes) -> list[Span]:
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(raw)
    except DecodeError as exc:
        raise ValueError(str(exc)) from None
    spans = []
    for rs in request.resource_spans:
        resource = {kv.key: _pb_value(kv.value) for kv in rs.resource.attributes}
        for ss in rs.scope_spans:
            for s in ss.spans:
                spans.append(Span(
                    name=s.name, trace_id=s.trace_id.hex(), span_id=s.span_id.hex(),
                    parent_span_id=s.parent_span_id.hex(), start_ns=s.start_time_unix_nano,
                    end_ns=s.end_time_unix_nano, status_code=s.status.code,
                    status_message=s.status.message,
                    attributes={kv.key: _pb_value(kv.value) for kv in s.attributes},
                    resource=resource,
                    events=[(e.name, {kv.key: _pb_value(kv.value) for kv in e.attributes})
                            for e in s.events],
                ))  # fmt: skip
    return spans


def _pb_value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_pb_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _pb_value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, kind) if kind else None


def _from_json(raw: bytes) -> list[Span]:
    doc = orjson.loads(raw)
    if not isinstance(doc, dict):
        raise ValueError("the body is not a JSON object")
    spans = []
    for rs in _list(doc, "resourceSpans", "resource_spans"):
        resource = _json_attrs((rs.get("resource") or {}).get("attributes"))
        for ss in _list(rs, "scopeSpans", "scope_spans"):
            for s in _list(ss, "spans"):
                status = s.get("status") or {}
                spans.append(Span(
                    name=str(s.get("name", "")), trace_id=_hex(s, "traceId", "trace_id"),
                    span_id=_hex(s, "spanId", "span_id"),
                    parent_span_id=_hex(s, "parentSpanId", "parent_span_id"),
                    start_ns=int(s.get("startTimeUnixNano") or s.get("start_time_unix_nano") or 0),
                    end_ns=int(s.get("endTimeUnixNano") or s.get("end_time_unix_nano") or 0),
                    status_code=_status_code(status.get("code")),
                    status_message=str(status.get("message") or ""),
                    attributes=_json_attrs(s.get("attributes")), resource=resource,
                    events=[(str(e.get("name", "")), _json_attrs(e.get("attributes")))
                            for e in _list(s, "events")],
                ))  # fmt: skip
    return spans


def _list(doc: dict[str, Any], *names: str) -> list[dict[str, Any]]:
    for name in names:
        value = doc.get(name)
        if value is not None:
            if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                raise ValueError(f"'{name}' must be a list of objects")
            return value
    return []


def _hex(span: dict[str, Any], *names: str) -> str:
    value = next((span[n] for n in names if span.get(n)), "")
    text = str(value).lower()
    if text and not all(c in "0123456789abcdef" for c in text):
        raise ValueError(f"{names[0]} must be hex, as OTLP/JSON writes it")
    return text


def _status_code(code: Any) -> int:
    if isinstance(code, str):
        return {"STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}.get(code, 0)
    return int(code or 0)


def _json_attrs(items: Any) -> dict[str, Any]:
    if not items:
        return {}
    if not isinstance(items, list):
        raise ValueError("attributes must be a list of {key, value}")
    return {str(kv["key"]): _json_value(kv.get("value") or {}) for kv in items}


def _json_value(v: dict[str, Any]) -> Any:
    if "stringValue" in v:
        return str(v["stringValue"])
    if "boolValue" in v:
        return bool(v["boolValue"])
    if "intValue" in v:
        return int(v["intValue"])  # OTLP/JSON writes 64-bit integers as strings
    if "doubleValue" in v:
        return float(v["doubleValue"])
    if "arrayValue" in v:
        return [_json_value(x) for x in (v["arrayValue"] or {}).get("values", [])]
    if "kvlistValue" in v:
        return _json_attrs((v["kvlistValue"] or {}).get("values"))
    if "bytesValue" in v:
        return str(v["bytesValue"])
    return None


def _answer(media: str) -> bytes:
    """An empty ExportTraceServiceResponse: everything was accepted."""
    return b"{}" if media == JSON else b""


# --- mapping ---------------------------------------------------------------------------------


def _conversation(span: Span, side: str) -> str:
    """The messages of one side as the gateway writes them: the input as "role: content"
    lines, the output as the answer's text."""
    a = span.attributes
    structured = a.get(f"gen_ai.{side}.messages")
    if isinstance(structured, str):
        try:
            structured = json.loads(structured)
        except ValueError:
            return structured
    if isinstance(structured, list):
        return _side(side, [_message(m, side) for m in structured])
    prefix = "gen_ai.prompt" if side == "input" else "gen_ai.completion"
    indexed = _indexed(a, prefix)
    if indexed:
        default = "user" if side == "input" else "assistant"
        turns = [(str(m.get("role") or default), str(m.get("content") or "")) for m in indexed]
        return _side(side, turns)
    return _from_events(span, side)


def _side(side: str, turns: list[tuple[str, str]]) -> str:
    if side == "output":
        return "\n".join(text for _, text in turns)
    return join_turns(turns)


def _message(m: Any, side: str) -> tuple[str, str]:
    if not isinstance(m, dict):
        return ("user" if side == "input" else "assistant", str(m))
    parts = m.get("parts")
    if isinstance(parts, list):
        text = "".join(str(p.get("content", "")) for p in parts if isinstance(p, dict))
    else:
        text = str(m.get("content", ""))
    return str(m.get("role") or ("user" if side == "input" else "assistant")), text


def _indexed(a: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
    found: dict[int, dict[str, Any]] = {}
    for key, value in a.items():
        if key.startswith(prefix + "."):
            index, _, leaf = key[len(prefix) + 1 :].partition(".")
            if index.isascii() and index.isdigit() and leaf:
                found.setdefault(int(index), {})[leaf] = value
    return [found[i] for i in sorted(found)]


def _from_events(span: Span, side: str) -> str:
    turns = []
    for name, attrs in span.events:
        if side == "input" and name.startswith("gen_ai.") and name.endswith(".message"):
            role = name.removeprefix("gen_ai.").removesuffix(".message")
            turns.append((role, str(attrs.get("content") or attrs.get("gen_ai.prompt") or "")))
        elif side == "output" and name in ("gen_ai.choice", "gen_ai.content.completion"):
            text = attrs.get("content") or attrs.get("gen_ai.completion") or ""
            turns.append(("assistant", str(text)))
        elif side == "input" and name == "gen_ai.content.prompt":
            turns.append(("user", str(attrs.get("gen_ai.prompt") or "")))
    return _side(side, turns)


def _plain(value: Any) -> bool:
    if isinstance(value, list):
        return all(isinstance(v, str | bool | int | float) for v in value)
    return isinstance(value, str | bool | int | float)


def _text(value: Any) -> str | None:
    return str(value)[:256] if value not in (None, "") else None


def _int(value: Any) -> int:
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError):
        return 0


def _float(value: Any) -> float:
    try:
        number = float(value or 0.0)
    except (TypeError, ValueError):
        return 0.0
    return number if number == number and abs(number) != float("inf") else 0.0
