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
again is the same row and stored once.

Message content that instrumentations send as OTLP *log* records (``/v1/logs``: the older
``gen_ai.*.message`` and ``gen_ai.choice`` events, or ``gen_ai.client.inference.operation.details``)
joins the trace row of the span it names, whether it comes before the span or after it
(``otlp_pending.py`` says how it is held); other log records are counted and not stored.

Decoding requests is ``otlp_decode.py`` (``otlp_logs.py`` for logs); what a span means, and the
row made of it, ``otlp_mapping.py``; this module queues those rows. Not here: the HTTP route
(``api/routes/otlp.py``) or writing rows (the gateway's trace writer).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import sqlalchemy as sa

from llmloop.core.traces import TraceRecord
from llmloop.errors import BadRequestError, OverloadedError
from llmloop.services.actors import Actor
from llmloop.services.gateway.tracing import TraceWriter
from llmloop.services.otlp_decode import (
    PROTOBUF,
    Span,
    answer_body,
    from_json,
    from_protobuf,
    read_body,
)
from llmloop.services.otlp_logs import LogBatch, decode_logs, logs_answer, messages_of
from llmloop.services.otlp_mapping import (
    add_log_content,
    genai_names,
    is_genai,
    record_span_keys,
    span_key,
    to_records,
)
from llmloop.services.otlp_pending import PendingContent

log = logging.getLogger("llmloop.otlp")


@dataclass(frozen=True)
class IngestResult:
    stored: int
    ignored: int
    repeated: int
    body: bytes
    media_type: str


@dataclass(frozen=True)
class LogsResult:
    """What a log export request came to: content records held (``stored``) or held already
    (``repeated``: a resend), other records ``ignored``, content without a span ``rejected``."""

    stored: int
    repeated: int
    ignored: int
    rejected: int
    body: bytes
    media_type: str


class OtlpIngest:
    """Decodes OTLP export requests and hands their GenAI spans to the trace writer; log records
    with a span's messages join that span's trace."""

    def __init__(self, writer: TraceWriter) -> None:
        self.writer = writer
        self.pending = PendingContent(writer.store, writer.max_text)
        # Ids handed to the writer lately, oldest first. A span exported again while its row may
        # still wait in the writer's queue is left out here: two rows with one id in a batch
        # would fail the batch. Once stored, the table skips a row whose id it holds.
        self._recent: dict[str, None] = {}

    async def export_traces(
        self, body: bytes, content_type: str, encoding: str | None, actor: Actor
    ) -> IngestResult:
        """A trace export request: its GenAI spans queued as traces, with the messages their
        log records brought."""
        # Decoding a large batch is CPU work: off the event loop, which keeps serving meanwhile.
        spans, media = await asyncio.to_thread(self.decode, body, content_type, encoding)
        records = await asyncio.to_thread(self.prepare, spans, actor)
        return self.store(records, len(spans), media)  # on the loop: the writer lives here

    def decode(
        self, body: bytes, content_type: str, encoding: str | None
    ) -> tuple[list[Span], str]:
        """The spans of an export request and the media type to answer in (thread-safe)."""
        raw, media = read_body(body, content_type, encoding)
        try:
            spans = from_protobuf(raw) if media == PROTOBUF else from_json(raw)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise BadRequestError(f"not an OTLP trace export request: {exc}") from None
        for span in spans:
            span.attributes = genai_names(span.attributes)
        return spans, media

    def prepare(self, spans: list[Span], actor: Actor) -> list[TraceRecord]:
        """The trace rows of the GenAI spans, with the content held for them (thread-safe).
        Which row each span becomes is noted first, for the log records still to come; a
        store that fails here costs the held content, never the spans."""
        records = to_records(spans, actor)
        rows = {key: r.id for r in records for key in record_span_keys(r)}
        try:
            held = self.pending.claim(rows)
            self.pending.sweep()
            self.pending.expire()
        except sa.exc.SQLAlchemyError as exc:
            log.warning("OTLP log content not merged into this batch's spans: %s", exc)
            return records
        if not held:
            return records
        for span in spans:
            key = span_key(actor.key_id, span.trace_id, span.span_id)
            if key in held and is_genai(span):
                add_log_content(span, messages_of(held[key]))
        return to_records(spans, actor)

    def store(self, records: list[TraceRecord], spans: int, media: str) -> IngestResult:
        """Queue the GenAI spans' rows as traces (on the writer's loop); 503 when its queue is
        full. A span sent again (an exporter's retry) is not queued twice."""
        fresh = {r.id: r for r in records if r.id not in self._recent}  # one per id
        if self.writer.depth + len(fresh) > self.writer.max_queue:
            raise OverloadedError("the trace queue is full; retry shortly", retry_after=1)
        for record in fresh.values():
            self.writer.submit(record)
            self._recent[record.id] = None
        # more than the writer's queue holds: an id forgotten here is stored already
        while len(self._recent) > 2 * self.writer.max_queue:
            del self._recent[next(iter(self._recent))]
        return IngestResult(
            len(fresh), spans - len(records), len(records) - len(fresh), answer_body(media), media
        )

    async def export_logs(
        self, body: bytes, content_type: str, encoding: str | None, actor: Actor
    ) -> LogsResult:
        """A log export request: content records held for their spans and merged into the
        rows of spans stored already; 503 when the store cannot take them (the exporter
        retries)."""
        batch = await asyncio.to_thread(decode_logs, body, content_type, encoding)
        try:
            rows, stored = await asyncio.to_thread(self.pending.hold, batch.events, actor.key_id)
            missing = await asyncio.to_thread(self.pending.apply, rows) if rows else set()
            if any(rows[k] in self._recent for k in missing):
                # rows this process queued a moment ago: store them, then merge
                await self.writer.flush()
                await asyncio.to_thread(self.pending.apply, {k: rows[k] for k in missing})
            await asyncio.to_thread(self.pending.sweep)
            await asyncio.to_thread(self.pending.expire)
        except sa.exc.SQLAlchemyError as exc:
            log.warning("OTLP log records not held: %s", exc)
            raise OverloadedError(
                "the store cannot take log records now; retry shortly", retry_after=1
            ) from None
        return _logs_result(batch, stored)


def _logs_result(batch: LogBatch, stored: int) -> LogsResult:
    repeated = len(batch.events) - stored
    rejected = batch.rejected
    why = f"{rejected} GenAI content record(s) without a trace and span id" if rejected else ""
    return LogsResult(stored, repeated, batch.ignored, rejected,
                      logs_answer(batch.media, rejected, why), batch.media)  # fmt: skip
