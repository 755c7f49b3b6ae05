"""What an OTLP span means as an llmloop trace: the GenAI semantic conventions (the newest
``gen_ai.input.messages``/``gen_ai.output.messages``, OpenLLMetry's indexed
``gen_ai.prompt.N.*``, the older message events) and OpenInference's names read as one, and a
model call's span turned into the trace row the gateway writes (see ``otlp.py`` for what is read
and why). Decoding requests is ``otlp_decode.py``.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from llmloop.core.ids import encode_id
from llmloop.core.traces import TraceRecord, join_turns, new_trace_id
from llmloop.services.actors import Actor
from llmloop.services.otlp_decode import Span, json_list

_ERROR = 2  # Status.STATUS_CODE_ERROR
_OPERATIONS = {"chat", "text_completion", "embeddings", "generate_content", "execute_tool",
               "create_agent", "invoke_agent"}  # fmt: skip
#: Operations that are one call of a model (two nested spans of one of them are one call).
_MODEL_CALLS = {"chat", "text_completion", "generate_content", "embeddings"}
#: Span events whose time is the first streamed chunk's (OpenLLMetry's, OpenInference's).
_FIRST_CHUNK_EVENTS = ("gen_ai.content.completion.chunk", "First Token Stream Event")
_TRACEBACK = "Traceback (most recent call last)"
#: Set (to "logs") on a span, and so on its row, whose messages came from its log records.
LOG_CONTENT = "llmloop.content_source"


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
    if a.get("llm.finish_reason"):
        out["gen_ai.response.finish_reasons"] = [str(a["llm.finish_reason"])]
    # what the app asked for: the model (a failed call has no llm.model_name), stream, user
    asked = _json_object(
        a.get("llm.invocation_parameters", a.get("embedding.invocation_parameters"))
    )
    if isinstance(asked.get("model"), str):
        out.setdefault("gen_ai.request.model", asked["model"])
    if isinstance(asked.get("stream"), bool):
        out["gen_ai.request.stream"] = asked["stream"]
    if asked.get("user") and "user.id" not in a:
        out["gen_ai.request.user"] = str(asked["user"])
    if kind == "EMBEDDING":  # the texts; input.value is the request and output.value the vectors
        texts = [e["embedding.text"] for e in _indexed(a, "embedding.embeddings")
                 if isinstance(e.get("embedding.text"), str)]  # fmt: skip
        plain = a.get("input.mime_type") != "application/json" and a.get("input.value")
        for i, text in enumerate(texts or ([plain] if isinstance(plain, str) else [])):
            out[f"gen_ai.prompt.{i}.content"] = text
        return out
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


def to_records(spans: list[Span], actor: Actor) -> list[TraceRecord]:
    """The trace rows of a batch's GenAI spans, one per model call.

    Where several instrumentations wrap the same call (``opentelemetry-instrument`` activates
    every one installed; LangChain's instrumentor above OpenAI's), each makes a span, nested:
    a model-call span whose one model-call child has the same operation is such a wrapper. The
    call is stored once, as its innermost span, with what only a wrapper said (the messages,
    tokens, user, ...) filled in. Nested spans exported in different batches are not matched.
    """
    genai = {(s.trace_id, s.span_id): s for s in spans if is_genai(s)}
    children: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for key, span in genai.items():
        parent = genai.get((span.trace_id, span.parent_span_id))
        if parent is None or _call(span) is None or _call(span) != _call(parent):
            continue
        # one that began after its parent ended is a later call (an instrumentation that left
        # a streamed call's span current), not the same one
        if span.start_ns <= parent.end_ns:
            children.setdefault((span.trace_id, span.parent_span_id), []).append(key)
    wraps = {parent: kids[0] for parent, kids in children.items() if len(kids) == 1}
    records = []
    for key, span in genai.items():
        if key in wraps:
            continue
        record = to_record(span, actor)
        outer = (span.trace_id, span.parent_span_id)
        while wraps.get(outer) == key:
            _fill(record, to_record(genai[outer], actor))
            key, outer = outer, (outer[0], genai[outer].parent_span_id)
        records.append(record)
    return records


def _call(span: Span) -> str | None:
    """The operation of a span that is one call of a model (not an agent's or a tool's)."""
    operation = str(span.attributes.get("gen_ai.operation.name") or "chat")
    return operation if operation in _MODEL_CALLS else None


def _fill(inner: TraceRecord, outer: TraceRecord) -> None:
    """What the span around the same call said and the innermost one did not."""
    for name in ("user", "request_text", "response_text", "finish_reason", "ttft_ms"):
        if not getattr(inner, name) and getattr(outer, name):
            setattr(inner, name, getattr(outer, name))
    if not (inner.input_tokens or inner.output_tokens):
        inner.input_tokens, inner.output_tokens = outer.input_tokens, outer.output_tokens
    inner.stream = inner.stream or outer.stream
    for key, value in outer.extra.items():
        if key == "llmloop.tool_calls" or not key.startswith(("otel.", "llmloop.")):
            inner.extra.setdefault(key, value)
    wrappers = inner.extra.setdefault("otel.wrapper_span_ids", [])
    wrappers.append(outer.extra["otel.span_id"])


def to_record(span: Span, actor: Actor) -> TraceRecord:
    """The trace row of one GenAI span (what the gateway would have written for the call)."""
    a = span.attributes
    status = _status(span)
    operation = str(a.get("gen_ai.operation.name") or "chat")
    operation = operation if operation in _OPERATIONS else "chat"
    model = str(a.get("gen_ai.request.model") or "")[:256]
    outputs = json_list(a.get("gen_ai.output.messages"))
    ttft = _ttft_ms(span)
    code = a.get("http.response.status_code")
    if not (isinstance(code, int) and 100 <= code < 600):
        code = 200 if status == "ok" else 500
    latency = _number(a.get("llmloop.latency_ms"))  # the gateway's own, when it exported it
    users = ("gen_ai.request.user", "user.id", "enduser.id", "gen_ai.user")
    service = span.resource.get("service.name")
    return TraceRecord(
        id=span_record_id(span, actor.key_id),
        at=datetime.fromtimestamp(span.start_ns / 1e9, UTC),
        operation=operation,
        deployment=str(a.get("llmloop.deployment") or service or "otlp")[:128],
        request_model=model,
        response_model=str(a.get("gen_ai.response.model") or model)[:256],
        target="otlp",
        key_id=actor.key_id,
        user=_text(next((a[k] for k in users if a.get(k)), None)),
        status=status,
        http_status=code,
        error=_error(span) if status != "ok" else None,
        stream=_streamed(a) or ttft is not None,
        latency_ms=latency
        if latency is not None
        else max(0.0, (span.end_ns - span.start_ns) / 1e6),
        ttft_ms=ttft,
        input_tokens=_int(a.get("gen_ai.usage.input_tokens", a.get("gen_ai.usage.prompt_tokens"))),
        output_tokens=_int(
            a.get("gen_ai.usage.output_tokens", a.get("gen_ai.usage.completion_tokens"))
        ),
        cost=max(0.0, _float(a.get("llmloop.cost", a.get("gen_ai.usage.cost")))),
        cache_hit=a.get("llmloop.cache_hit") is True,
        finish_reason=_finish_reason(a, outputs),
        request_text=_conversation(span, "input"),
        response_text="" if operation == "embeddings" else _conversation(span, "output"),
        extra=_extra(span, operation, outputs),
    )


def _extra(span: Span, operation: str, outputs: list[Any] | None) -> dict[str, Any]:
    """The attributes kept beside the columns: the span's own (less embedding vectors), where it
    came from, and the answer's tool calls."""
    a = span.attributes
    extra = {k: v for k, v in a.items() if _plain(v) and not k.endswith(".embedding.vector")}
    if operation == "embeddings":
        extra.pop("output.value", None)  # OpenInference: the vectors again
    extra.update({"llmloop.source": "otlp", "otel.trace_id": span.trace_id,
                  "otel.span_id": span.span_id, "otel.span_name": span.name})  # fmt: skip
    if span.parent_span_id:
        extra["otel.parent_span_id"] = span.parent_span_id
    calls = a.get("llmloop.tool_calls")  # a gateway's export: dicts, as it stores them
    calls = calls if isinstance(calls, list) and calls else _tool_calls(a, outputs)
    if calls:
        extra["llmloop.tool_calls"] = calls
    if "gen_ai.system" not in a and a.get("gen_ai.provider.name"):
        # the older name of the provider; unset, a reader would see the gateway's ("llmloop")
        extra["gen_ai.system"] = a["gen_ai.provider.name"]
    return extra


def span_record_id(span: Span, key_id: str | None) -> str:
    """The trace id of a span's row: the same for the same span from the same key (so a batch
    exported again stores nothing new), ordered by the span's start; a fresh one for a span
    without ids."""
    key = span_key(key_id, span.trace_id, span.span_id)
    if key is None:
        return new_trace_id()
    millis = min(max(span.start_ns // 1_000_000, 0), 2**48 - 1)
    return "tr_" + encode_id(millis, int(key, 16))


def span_key(key_id: str | None, trace_id: str, span_id: str) -> str | None:
    """A span as one key sent it (20 hex digits; the random part of its row's id): what its
    log records are held by. None for a span without ids."""
    if not trace_id.strip("0") or not span_id.strip("0"):
        return None
    seed = f"{key_id or ''}/{trace_id}/{span_id}".encode()
    return hashlib.blake2b(seed, digest_size=10).hexdigest()


def record_span_keys(record: TraceRecord) -> list[str]:
    """The keys of the spans a trace row was made of: its own and those of the spans that
    wrapped the same call (their log records belong to the row too)."""
    extra = record.extra
    ids = [extra.get("otel.span_id", ""), *extra.get("otel.wrapper_span_ids", [])]
    keys = (span_key(record.key_id, str(extra.get("otel.trace_id", "")), str(i)) for i in ids)
    return [k for k in keys if k is not None]


def add_log_content(span: Span, content: dict[str, str]) -> None:
    """The messages that the span's log records carried (``otlp_logs.messages_of``), set on
    the span where it has none of its own."""
    added = False
    for name, value in content.items():
        if name not in span.attributes:
            span.attributes[name] = value
            added = True
    if added:
        span.attributes[LOG_CONTENT] = "logs"


def merge_log_content(
    row: dict[str, Any], content: dict[str, str], max_text: int
) -> dict[str, Any] | None:
    """The columns of a stored trace row (``operation``, ``finish_reason``, ``attributes``)
    that change when its span's log records carried ``content``, or None when nothing does.
    What the span said itself is kept; what log records said before is replaced (the content
    is always made of all the span's records), so the row reads as if the span had carried
    it."""
    attributes = dict(row["attributes"] or {})
    ours = attributes.get(LOG_CONTENT) == "logs"
    changed = {k: v for k, v in content.items()
               if (ours or k not in attributes) and attributes.get(k) != v}  # fmt: skip
    if not changed:
        return None
    attributes.update(changed)
    attributes[LOG_CONTENT] = "logs"
    outputs = json_list(attributes.get("gen_ai.output.messages"))
    if ours or not attributes.get("llmloop.tool_calls"):
        attributes.pop("llmloop.tool_calls", None)
        calls = _tool_calls(attributes, outputs)
        if calls:
            attributes["llmloop.tool_calls"] = calls
    span = Span("", "", "", "", 0, 0, 0, "", attributes, {})
    values: dict[str, Any] = {
        "attributes": attributes,
        "request_text": _conversation(span, "input")[:max_text],
    }
    if row["operation"] != "embeddings":
        values["response_text"] = _conversation(span, "output")[:max_text]
    if not row["finish_reason"]:
        values["finish_reason"] = (_finish_reason(attributes, outputs) or "")[:32] or None
    return values


def _status(span: Span) -> str:
    """ok, error or cancelled: the gateway's own word (a span it exported), else the span's
    status, else ``error.type`` (set, by the GenAI conventions, when the call failed)."""
    own = span.attributes.get("llmloop.status")
    if own in ("ok", "error", "cancelled"):
        return str(own)
    failed = span.status_code == _ERROR or bool(span.attributes.get("error.type"))
    return "error" if failed else "ok"


def _error(span: Span) -> str:
    """Why the call failed, in a line or a few: the status message without the Python traceback
    some instrumentations append, else the exception event's message, else ``error.type``."""
    text = span.status_message.split(_TRACEBACK, 1)[0].strip()
    for event in span.events:
        if not text and event.name == "exception":
            text = str(event.attributes.get("exception.message") or "")
    return (text or str(span.attributes.get("error.type") or "error"))[:2000]


def _streamed(a: dict[str, Any]) -> bool:
    names = ("gen_ai.request.stream", "gen_ai.is_streaming", "llmloop.stream")
    return any(a.get(name) is True for name in names)


def _ttft_ms(span: Span) -> float | None:
    """The time to the first streamed chunk: an attribute that says it, else the first chunk
    event's time after the span's start."""
    a = span.attributes
    own = _number(a.get("llmloop.ttft_ms"))
    if own is not None:
        return own
    seconds = _number(a.get("gen_ai.response.time_to_first_chunk"))
    if seconds is not None:
        return seconds * 1000.0
    for event in span.events:
        if event.name in _FIRST_CHUNK_EVENTS and event.time_ns >= span.start_ns:
            return (event.time_ns - span.start_ns) / 1e6
    return None


def _finish_reason(a: dict[str, Any], outputs: list[Any] | None) -> str | None:
    finish = a.get("gen_ai.response.finish_reasons")
    if isinstance(finish, str):
        return finish
    if isinstance(finish, list) and finish:
        return str(finish[0])
    # a streamed call's span may carry it only on its output messages
    reasons = [m.get("finish_reason") for m in outputs or [] if isinstance(m, dict)]
    return next((str(r) for r in reasons if r), None)


def _tool_calls(a: dict[str, Any], outputs: list[Any] | None) -> list[dict[str, str]]:
    """The tool calls in the answer, as the gateway notes them: id, name, arguments (JSON)."""
    calls: list[tuple[Any, Any, Any]] = []
    for m in outputs or []:
        parts = m.get("parts") if isinstance(m, dict) else None
        for p in parts if isinstance(parts, list) else []:
            if isinstance(p, dict) and p.get("type") == "tool_call":
                args = p.get("arguments")
                args = args if isinstance(args, str) else json.dumps({} if args is None else args)
                calls.append((p.get("id"), p.get("name"), args))
    for m in _indexed(a, "llm.output_messages"):  # OpenInference
        for c in _indexed(m, "message.tool_calls"):
            fn = ("tool_call.function.name", "tool_call.function.arguments")
            calls.append((c.get("tool_call.id"), c.get(fn[0]), c.get(fn[1])))
    return [{"id": str(i or ""), "name": str(n or ""), "arguments": str(g or "")}
            for i, n, g in calls]  # fmt: skip


def _conversation(span: Span, side: str) -> str:
    """The messages of one side as the gateway writes them: the input as "role: content"
    lines, the output as the answer's text."""
    a = span.attributes
    raw = a.get(f"gen_ai.{side}.messages")
    structured = json_list(raw)
    if structured is not None:
        turns = [_message(m, side) for m in structured]
        system = json_list(a.get("gen_ai.system_instructions")) if side == "input" else None
        if system:  # instructions given apart from the messages (newer conventions)
            turns.insert(0, ("system", _parts_text(system)))
        return _side(side, turns)
    if isinstance(raw, str):
        return raw
    prefix = "gen_ai.prompt" if side == "input" else "gen_ai.completion"
    indexed = _indexed(a, prefix)
    if indexed:
        default = "user" if side == "input" else "assistant"
        turns = [(str(m.get("role") or default), str(m.get("content") or "")) for m in indexed]
        return _side(side, turns)
    return _from_events(span, side)


def _json_object(value: Any) -> dict[str, Any]:
    try:
        parsed = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _side(side: str, turns: list[tuple[str, str]]) -> str:
    if side == "output":
        return "\n".join(text for _, text in turns)
    return join_turns(turns)


def _message(m: Any, side: str) -> tuple[str, str]:
    if not isinstance(m, dict):
        return ("user" if side == "input" else "assistant", str(m))
    parts = m.get("parts")
    text = _parts_text(parts) if isinstance(parts, list) else str(m.get("content") or "")
    return str(m.get("role") or ("user" if side == "input" else "assistant")), text


def _parts_text(parts: list[Any]) -> str:
    """The text of a message's parts: text, and a tool's result (as the gateway writes a tool
    message's content). A tool call has no text (the gateway's neither); reasoning, files and
    other media are left out."""
    out = []
    for p in parts:
        if not isinstance(p, dict):
            continue
        kind = p.get("type")
        if kind in (None, "text"):
            out.append(str(p.get("content") or ""))
        elif kind == "tool_call_response":
            result = p.get("response")
            out.append(result if isinstance(result, str) else json.dumps(result))
    return "".join(out)


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
    for event in span.events:
        name, attrs = event.name, event.attributes
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


def _number(value: Any) -> float | None:
    """A finite, non-negative number, or None (absent or not a number)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if 0.0 <= number < float("inf") else None


def _float(value: Any) -> float:
    try:
        number = float(value or 0.0)
    except (TypeError, ValueError):
        return 0.0
    return number if number == number and abs(number) != float("inf") else 0.0
