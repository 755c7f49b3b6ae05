"""OTLP/HTTP trace export (``POST /otlp/v1/traces``): OpenTelemetry exporters send GenAI spans here.

Point an exporter at ``http://HOST:PORT/otlp`` (it appends ``/v1/traces``) with the header
``Authorization: Bearer <key>``. The answer is an (empty) ExportTraceServiceResponse in the
request's encoding; errors are problem JSON with the status codes OTLP clients act on (400 and
415 are final, 429 and 503 carry ``Retry-After`` and are retried). A batch sent again (a retry
after a lost answer) stores nothing twice; the headers count what was stored and what was a
repeat.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import Response

from llmloop.api.deps import ActorDep, ContainerDep

router = APIRouter(tags=["otlp"])


@router.post(
    "/otlp/v1/traces",
    summary="Receive OTLP/HTTP trace exports (protobuf or JSON); GenAI spans become traces",
    response_class=Response,
)
async def export_traces(request: Request, c: ContainerDep, actor: ActorDep) -> Response:
    body = await request.body()
    ingest = c.otlp
    # Decoding a large batch is CPU work: off the event loop, which keeps serving meanwhile.
    spans, media = await asyncio.to_thread(
        ingest.decode,
        body,
        request.headers.get("content-type", ""),
        request.headers.get("content-encoding"),
    )
    result = ingest.store(spans, media, actor)  # on the loop: the trace writer lives here
    headers = {
        "x-llmloop-spans-stored": str(result.stored),
        "x-llmloop-spans-repeated": str(result.repeated),
    }
    return Response(result.body, media_type=result.media_type, headers=headers)
