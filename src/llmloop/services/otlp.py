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
equivalent. Streaming (``gen_ai.request.stream``, OpenLLMetry's ``gen_ai.is_streaming``,
OpenInference's invocation parameters) and the time to the first chunk
(``gen_ai.response.time_to_first_chunk``, or the first chunk event's time) are read; tool calls
in the answer are noted as ``llmloop.tool_calls``, as the gateway notes them. Every attribute is
kept under its own name, except embedding vectors (bulk, not telemetry).

An exporter retries a batch whose answer it did not get, although the server may have stored it:
a span's trace id is made from the key, its OpenTelemetry trace id and span id, so a span sent
again is the same row and stored once. Message content that instrumentations send as OTLP *log*
events (``gen_ai.*.message`` log records) is not read: only ``/v1/traces`` is served.

Decoding requests is ``otlp_decode.py``; what a span means, and the row made of it,
``otlp_mapping.py``; this module queues those rows. Not here: the HTTP route
(``api/routes/otlp.py``) or writing rows (the gateway's trace writer).
"""

from __future__ import annotations

from dataclasses import dataclass

from llmloop.errors import BadRequestError, OverloadedError, UnsupportedMediaTypeError
from llmloop.services.actors import Actor
from llmloop.services.gateway.tracing import TraceWriter
from llmloop.services.otlp_decode import (
    JSON,
    PROTOBUF,
    Span,
    answer_body,
    from_json,
    from_protobuf,
    inflate,
)
from llmloop.services.otlp_mapping import genai_names, to_records


@dataclass(frozen=True)
class IngestResult:
    stored: int
    ignored: int
    repeated: int
    body: bytes
    media_type: str


class OtlpIngest:
    """Decodes OTLP export requests and hands their GenAI spans to the trace writer."""

    def __init__(self, writer: TraceWriter) -> None:
        self.writer = writer
        # Ids handed to the writer lately, oldest first. A span exported again while its row may
        # still wait in the writer's queue is left out here: two rows with one id in a batch
        # would fail the batch. Once stored, the table skips a row whose id it holds.
        self._recent: dict[str, None] = {}

    def decode(
        self, body: bytes, content_type: str, encoding: str | None
    ) -> tuple[list[Span], str]:
        """The spans of an export request and the media type to answer in (thread-safe)."""
        media = content_type.split(";", 1)[0].strip().lower()
        if media not in (PROTOBUF, JSON):
            raise UnsupportedMediaTypeError(
                f"OTLP/HTTP bodies are {PROTOBUF} or {JSON}, not {media or 'untyped'}"
            )
        raw = inflate(body, (encoding or "").strip().lower())
        try:
            spans = from_protobuf(raw) if media == PROTOBUF else from_json(raw)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise BadRequestError(f"not an OTLP trace export request: {exc}") from None
        for span in spans:
            span.attributes = genai_names(span.attributes)
        return spans, media

    def store(self, spans: list[Span], media: str, actor: Actor) -> IngestResult:
        """Queue the GenAI spans as traces (on the writer's loop); 503 when its queue is full.
        A span sent again (an exporter's retry) is not queued twice."""
        genai = to_records(spans, actor)
        fresh = {r.id: r for r in genai if r.id not in self._recent}  # one per id
        if self.writer.depth + len(fresh) > self.writer.max_queue:
            raise OverloadedError("the trace queue is full; retry shortly", retry_after=1)
        for record in fresh.values():
            self.writer.submit(record)
            self._recent[record.id] = None
        # more than the writer's queue holds: an id forgotten here is stored already
        while len(self._recent) > 2 * self.writer.max_queue:
            del self._recent[next(iter(self._recent))]
        return IngestResult(
            len(fresh), len(spans) - len(genai), len(genai) - len(fresh), answer_body(media), media
        )
