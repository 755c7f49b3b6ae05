"""OTLP/HTTP trace export requests decoded into plain spans: protobuf
(``application/x-protobuf``) and JSON (``application/json``, hex ids and 64-bit integers as
strings, as the OTLP spec has them), gzip or not, with a bound on what a gzip body may inflate
to. The media type, encoding and value helpers serve the log export requests too
(``otlp_logs.py``). What a span means (``otlp_mapping.py``) and storing it (``otlp.py``) are
not here.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from llmloop.errors import BadRequestError, PayloadTooLargeError, UnsupportedMediaTypeError

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
MAX_INFLATED = 64 * 1024 * 1024  # a gzip body never grows past this (no decompression bombs)


@dataclass(frozen=True)
class Event:
    """One span event: its name, time (ns since the epoch) and attributes."""

    name: str
    time_ns: int
    attributes: dict[str, Any]


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
    events: list[Event] = field(default_factory=list)


def read_body(body: bytes, content_type: str, encoding: str | None) -> tuple[bytes, str]:
    """The raw export request in ``body`` and its media type (protobuf or JSON); 415 for
    another media type or encoding, 400 for a broken gzip body, 413 for a gzip bomb."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media not in (PROTOBUF, JSON):
        raise UnsupportedMediaTypeError(
            f"OTLP/HTTP bodies are {PROTOBUF} or {JSON}, not {media or 'untyped'}"
        )
    return inflate(body, (encoding or "").strip().lower()), media


def inflate(body: bytes, encoding: str) -> bytes:
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


def from_protobuf(raw: bytes) -> list[Span]:
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
        resource = {kv.key: pb_value(kv.value) for kv in rs.resource.attributes}
        for ss in rs.scope_spans:
            for s in ss.spans:
                spans.append(Span(
                    name=s.name, trace_id=s.trace_id.hex(), span_id=s.span_id.hex(),
                    parent_span_id=s.parent_span_id.hex(), start_ns=s.start_time_unix_nano,
                    end_ns=s.end_time_unix_nano, status_code=s.status.code,
                    status_message=s.status.message,
                    attributes={kv.key: pb_value(kv.value) for kv in s.attributes},
                    resource=resource,
                    events=[Event(e.name, e.time_unix_nano,
                                  {kv.key: pb_value(kv.value) for kv in e.attributes})
                            for e in s.events],
                ))  # fmt: skip
    return spans


def pb_value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [pb_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: pb_value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, kind) if kind else None


def from_json(raw: bytes) -> list[Span]:
    doc = json_document(raw)
    spans = []
    for rs in object_list(doc, "resourceSpans", "resource_spans"):
        resource = json_attrs((rs.get("resource") or {}).get("attributes"))
        for ss in object_list(rs, "scopeSpans", "scope_spans"):
            for s in object_list(ss, "spans"):
                status = s.get("status") or {}
                spans.append(Span(
                    name=str(s.get("name", "")), trace_id=hex_id(s, "traceId", "trace_id"),
                    span_id=hex_id(s, "spanId", "span_id"),
                    parent_span_id=hex_id(s, "parentSpanId", "parent_span_id"),
                    start_ns=nanos(s.get("startTimeUnixNano") or s.get("start_time_unix_nano")),
                    end_ns=nanos(s.get("endTimeUnixNano") or s.get("end_time_unix_nano")),
                    status_code=_status_code(status.get("code")),
                    status_message=str(status.get("message") or ""),
                    attributes=json_attrs(s.get("attributes")), resource=resource,
                    events=[Event(str(e.get("name", "")),
                                  nanos(e.get("timeUnixNano") or e.get("time_unix_nano")),
                                  json_attrs(e.get("attributes")))
                            for e in object_list(s, "events")],
                ))  # fmt: skip
    return spans


def json_document(raw: bytes) -> dict[str, Any]:
    doc = orjson.loads(raw)
    if not isinstance(doc, dict):
        raise ValueError("the body is not a JSON object")
    return doc


def object_list(doc: dict[str, Any], *names: str) -> list[dict[str, Any]]:
    for name in names:
        value = doc.get(name)
        if value is not None:
            if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                raise ValueError(f"'{name}' must be a list of objects")
            return value
    return []


def hex_id(span: dict[str, Any], *names: str) -> str:
    value = next((span[n] for n in names if span.get(n)), "")
    text = str(value).lower()
    if text and not all(c in "0123456789abcdef" for c in text):
        raise ValueError(f"{names[0]} must be hex, as OTLP/JSON writes it")
    return text


def nanos(value: Any) -> int:
    """A time in ns since the epoch, within the fixed64 that protobuf has for it."""
    number = int(value or 0)
    if not 0 <= number < 2**64:
        raise ValueError(f"a time of {number} ns is out of range")
    return number


def _status_code(code: Any) -> int:
    if isinstance(code, str):
        return {"STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}.get(code, 0)
    return int(code or 0)


def json_attrs(items: Any) -> dict[str, Any]:
    if not items:
        return {}
    if not isinstance(items, list):
        raise ValueError("attributes must be a list of {key, value}")
    return {str(kv["key"]): json_value(kv.get("value") or {}) for kv in items}


def json_value(v: dict[str, Any]) -> Any:
    if "stringValue" in v:
        return str(v["stringValue"])
    if "boolValue" in v:
        return bool(v["boolValue"])
    if "intValue" in v:
        return int(v["intValue"])  # OTLP/JSON writes 64-bit integers as strings
    if "doubleValue" in v:
        return float(v["doubleValue"])
    if "arrayValue" in v:
        return [json_value(x) for x in (v["arrayValue"] or {}).get("values", [])]
    if "kvlistValue" in v:
        return json_attrs((v["kvlistValue"] or {}).get("values"))
    if "bytesValue" in v:
        return str(v["bytesValue"])
    return None


def json_list(value: Any) -> list[Any] | None:
    """A JSON list attribute (``gen_ai.input.messages`` and the like) as a list, else None:
    exporters send it as a JSON string or as an OTLP array value."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, list) else None


def answer_body(media: str) -> bytes:
    """An empty ExportTraceServiceResponse: everything was accepted."""
    return b"{}" if media == JSON else b""
