"""OTLP/HTTP export (``POST /otlp/v1/traces``, ``POST /otlp/v1/logs``): OpenTelemetry exporters
send GenAI spans, and the log records that carry their messages, here.

Point an exporter at ``http://HOST:PORT/otlp`` (it appends ``/v1/traces`` and ``/v1/logs``) with
the header ``Authorization: Bearer <key>``. The answer is an ExportTraceServiceResponse or
ExportLogsServiceResponse in the request's encoding (with ``partial_success`` for log records
that were rejected); errors are problem JSON with the status codes OTLP clients act on (400 and
415 are final, 429 and 503 carry ``Retry-After`` and are retried). A batch sent again (a retry
after a lost answer) stores nothing twice; the headers count what was stored and what was a
repeat.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from llmloop.api.deps import ActorDep, ContainerDep

router = APIRouter(tags=["otlp"])


def _wire(request: Request) -> tuple[str, str | None]:
    return request.headers.get("content-type", ""), request.headers.get("content-encoding")


@router.post(
    "/otlp/v1/traces",
    summary="Receive OTLP/HTTP trace exports (protobuf or JSON); GenAI spans become traces",
    response_class=Response,
)
async def export_traces(request: Request, c: ContainerDep, actor: ActorDep) -> Response:
    result = await c.otlp.export_traces(await request.body(), *_wire(request), actor)
    headers = {
        "x-llmloop-spans-stored": str(result.stored),
        "x-llmloop-spans-repeated": str(result.repeated),
    }
    return Response(result.body, media_type=result.media_type, headers=headers)


@router.post(
    "/otlp/v1/logs",
    summary="Receive OTLP/HTTP log exports (protobuf or JSON); GenAI message records join "
    "their span's trace",
    response_class=Response,
)
async def export_logs(request: Request, c: ContainerDep, actor: ActorDep) -> Response:
    result = await c.otlp.export_logs(await request.body(), *_wire(request), actor)
    headers = {
        "x-llmloop-log-records-stored": str(result.stored),
        "x-llmloop-log-records-repeated": str(result.repeated),
        "x-llmloop-log-records-ignored": str(result.ignored),
        "x-llmloop-log-records-rejected": str(result.rejected),
    }
    return Response(result.body, media_type=result.media_type, headers=headers)
