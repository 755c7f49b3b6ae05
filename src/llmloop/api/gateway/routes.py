"""The OpenAI-compatible routes: ``/v1/chat/completions``, ``/v1/completions``,
``/v1/responses``, ``/v1/embeddings`` and ``/v1/models``, on the same app as the REST API.

Each route reads the raw body with ``orjson``, authenticates with the shared ``get_actor``
(cached keys: no database round trip per request), parses to generation values, calls the
gateway service and renders bytes. Errors are raised as ``llmloop.errors`` and answered in
OpenAI's shape by ``api/problems.py``. The trace id goes out in ``x-llmloop-trace-id``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Literal, TypeVar

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from llmloop.api.deps import get_actor
from llmloop.api.gateway.render import (
    chat_response,
    completion_response,
    embeddings_response,
    models_response,
)
from llmloop.api.gateway.responses_render import (
    answer_turn,
    input_items_page,
    output_items,
    response_body,
    usage_body,
)
from llmloop.api.gateway.responses_sse import ResponseEvents
from llmloop.api.gateway.responses_wire import ResponseAsk, parse_responses, responses_error
from llmloop.api.gateway.schemas import (
    load_body,
    parse_chat,
    parse_completion,
    parse_embeddings,
)
from llmloop.api.gateway.sse import DONE, ChunkRenderer, SSEResponse, error_event
from llmloop.core.chat import ChatMessage, GenerationChunk, GenerationRequest, GenerationResult
from llmloop.core.prompts import PromptVersionPublic
from llmloop.core.traces import TraceRecord
from llmloop.errors import BadRequestError, InvalidInputError, NotFoundError
from llmloop.services.actors import Actor
from llmloop.services.gateway.responses import StoredResponse, conversation_chars
from llmloop.services.gateway.service import GatewayService
from llmloop.services.prompts import render_template
from llmloop.services.trace_analytics import PROMPT_ATTR as PROMPT_VERSION_ATTR

router = APIRouter(prefix="/v1", tags=["openai"])
TRACE_HEADER = "x-llmloop-trace-id"
REQUEST_HEADER = "x-request-id"  # OpenAI's: the SDK shows it as ``_request_id``
T = TypeVar("T")
CHOICES_IN_FLIGHT = 32  # of one batched completion request (prompts times n)


def _gateway(request: Request) -> GatewayService:
    """The app's gateway service, remembered on the app (``State`` lookups cost per request)."""
    app = request.app
    gateway: GatewayService | None = app.__dict__.get("_llmloop_gateway")
    if gateway is None:
        gateway = app.__dict__["_llmloop_gateway"] = app.state.container.gateway
    return gateway


def tag_metadata(trace: TraceRecord, metadata: dict[str, str]) -> None:
    """A request's ``metadata`` (OpenAI's: up to 16 string pairs) on its trace, one attribute per
    key (``llmloop.metadata.<key>``), so spans and trace queries can use them."""
    for key, value in metadata.items():
        trace.extra[f"llmloop.metadata.{key}"] = value


def _ids(trace_id: str) -> dict[str, str]:
    """The answer's headers: its trace id, under our name and as OpenAI's request id."""
    return {TRACE_HEADER: trace_id, REQUEST_HEADER: trace_id}


def _json(body: dict[str, object], trace_id: str) -> Response:
    return Response(orjson.dumps(body), media_type="application/json",
                    headers=_ids(trace_id))  # fmt: skip


async def _events(chunks: AsyncIterator[T], render: Callable[[T], bytes]) -> AsyncIterator[bytes]:
    try:
        async for chunk in chunks:
            yield render(chunk)
        yield DONE
    except Exception as exc:
        yield error_event(exc)
        yield DONE
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


async def _generate(request: Request, kind: str) -> Response | SSEResponse:
    actor = get_actor(request)
    body = load_body(await request.body())
    gateway = _gateway(request)
    if kind == "chat":
        req, how = parse_chat(body)
        reqs = [req]
    else:
        reqs, how = parse_completion(body)
        req = reqs[0]
    operation = "chat" if kind == "chat" else "text_completion"
    created, n = int(time.time()), how.n
    metadata = req.passthrough.get("metadata") if req.passthrough else None
    if how.stream:
        trace = gateway.new_trace(operation, req.model, actor, stream=True)
        if metadata:
            tag_metadata(trace, metadata)
        cid = f"chatcmpl-{trace.id}" if kind == "chat" else f"cmpl-{trace.id}"
        renderer = ChunkRenderer(kind, cid, req.model, created, how.include_usage, n)
        if n == 1:
            chunks = await gateway.stream(actor, req, trace)
            return SSEResponse(_events(chunks, renderer.render), _ids(trace.id))
        choices = await gateway.stream_choices(actor, req, trace, n)
        events = _events(choices, lambda item: renderer.render(item[1], item[0]))
        return SSEResponse(events, _ids(trace.id))
    traces = [gateway.new_trace(operation, req.model, actor) for _ in reqs]
    if metadata:
        for trace in traces:
            tag_metadata(trace, metadata)
    if kind == "chat":
        results = await gateway.generate_choices(actor, req, traces[0], n)
        return _json(chat_response(results, req.model, traces[0].id, created), traces[0].id)
    results = await _generate_all(gateway, actor, reqs, traces, n)
    ids = [t.id for t in traces]
    return _json(completion_response(results, req.model, ids, created, n), ids[0])


async def _generate_all(
    gateway: GatewayService,
    actor: Actor,
    reqs: list[GenerationRequest],
    traces: list[TraceRecord],
    n: int,
) -> list[GenerationResult]:
    """``n`` answers to every prompt of a batched completion (prompt by prompt), at most
    CHOICES_IN_FLIGHT choices at once; the first error cancels the rest and is the answer."""
    if len(reqs) == 1:
        return await gateway.generate_choices(actor, reqs[0], traces[0], n)
    gate = asyncio.Semaphore(max(1, CHOICES_IN_FLIGHT // n))

    async def one(req: GenerationRequest, trace: TraceRecord) -> list[GenerationResult]:
        async with gate:
            return await gateway.generate_choices(actor, req, trace, n)

    tasks = [asyncio.ensure_future(one(r, t)) for r, t in zip(reqs, traces, strict=True)]
    try:
        answers = await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    return [result for choices in answers for result in choices]


@router.post("/chat/completions", response_model=None)
async def chat_completions(request: Request) -> Response | SSEResponse:
    """OpenAI Chat Completions (JSON or SSE with ``stream: true``)."""
    return await _generate(request, "chat")


@router.post("/completions", response_model=None)
async def completions(request: Request) -> Response | SSEResponse:
    """OpenAI legacy Completions, with ``logprobs`` (int) and ``echo``."""
    return await _generate(request, "completion")


@router.post("/responses", response_model=None)
async def create_response(request: Request) -> Response | SSEResponse:
    """OpenAI Responses (JSON or semantic SSE events with ``stream: true``), served by the
    same chat path: ``previous_response_id`` continues a response this process keeps."""
    actor = get_actor(request)
    ask = parse_responses(load_body(await request.body()))
    gateway = _gateway(request)
    prompt_version = await _use_prompt(request, ask) if ask.prompt is not None else None
    history: tuple[ChatMessage, ...] = ()
    if ask.previous_response_id is not None:
        previous = await gateway.responses.get(
            ask.previous_response_id, actor, "previous_response_id"
        )
        history = previous.conversation
    req = ask.request(history)
    created = int(time.time())

    async def keep(body: dict[str, object], answer: ChatMessage) -> None:
        if ask.store and body["status"] != "failed":
            conversation = (*history, *ask.input, answer)
            chars = conversation_chars(conversation)
            stored = StoredResponse(body, conversation, actor.key_id, chars, len(ask.input))
            await gateway.responses.put(str(body["id"]), stored)

    trace = gateway.new_trace("chat", req.model, actor, stream=ask.stream)
    if ask.metadata:
        tag_metadata(trace, ask.metadata)
    if prompt_version is not None:
        trace.extra[PROMPT_VERSION_ATTR] = prompt_version.id
        trace.extra["llmloop.prompt"] = f"{prompt_version.prompt_name}@{prompt_version.version}"
    try:
        if ask.stream:
            chunks = await gateway.stream(actor, req, trace)
            events = ResponseEvents(ask, trace.id, created)
            return SSEResponse(_response_events(chunks, events, keep), _ids(trace.id))
        result = await gateway.generate(actor, req, trace)
    except BadRequestError as exc:  # the chat path's 400s, under the Responses field names
        raise responses_error(exc) from None
    usage = usage_body(result.usage.prompt_tokens, result.usage.completion_tokens)
    body = response_body(ask, trace.id, created, output_items(result, trace.id),
                         result.finish_reason, usage)  # fmt: skip
    await keep(body, answer_turn(result))
    return _json(body, trace.id)


async def _use_prompt(request: Request, ask: ResponseAsk) -> PromptVersionPublic:
    """Render the registry prompt a Responses request names into ``ask``."""
    assert ask.prompt is not None
    name, ref, variables = ask.prompt.name, ask.prompt.ref, ask.prompt.variables
    prompts = request.app.state.container.prompts
    try:
        version = await asyncio.to_thread(prompts.get_version, name, ref)
        text = render_template(version.template, variables)
    except NotFoundError as exc:
        raise NotFoundError(exc.detail, param="prompt") from None
    except InvalidInputError as exc:
        raise BadRequestError(exc.detail, param="prompt.variables") from None
    ask.use_prompt(version, text)
    return version


async def _response_events(
    chunks: AsyncIterator[GenerationChunk],
    events: ResponseEvents,
    keep: Callable[[dict[str, object], ChatMessage], Awaitable[None]],
) -> AsyncIterator[bytes]:
    try:
        yield events.start()
        async for chunk in chunks:
            yield events.render(chunk)
        yield events.finish()
        assert events.final is not None
        await keep(events.final, events.answer_turn())
    except Exception as exc:
        yield events.fail(exc)
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


@router.get("/responses/{response_id}")
async def get_response(request: Request, response_id: str) -> Response:
    """A response this gateway process keeps (``store``), as it was answered."""
    actor = get_actor(request)
    stored = await _gateway(request).responses.get(response_id, actor)
    return Response(orjson.dumps(stored.body), media_type="application/json")


@router.get("/responses/{response_id}/input_items")
async def list_input_items(
    request: Request,
    response_id: str,
    limit: int = Query(20, ge=1, le=100),
    order: Literal["asc", "desc"] = "desc",
    after: str | None = None,
) -> Response:
    """The input items of a kept response (its own input, not the earlier history), paged as
    OpenAI pages them: newest first unless ``order=asc``, ``after`` an item id."""
    actor = get_actor(request)
    stored = await _gateway(request).responses.get(response_id, actor)
    body = input_items_page(stored.input_turns, response_id, limit, order, after)
    return Response(orjson.dumps(body), media_type="application/json")


@router.delete("/responses/{response_id}")
async def delete_response(request: Request, response_id: str) -> Response:
    actor = get_actor(request)
    await _gateway(request).responses.delete(response_id, actor)
    body = {"id": response_id, "object": "response.deleted", "deleted": True}
    return Response(orjson.dumps(body), media_type="application/json")


@router.post("/embeddings")
async def embeddings(request: Request) -> Response:
    actor = get_actor(request)
    ask = parse_embeddings(load_body(await request.body()))
    gateway = _gateway(request)
    trace = gateway.new_trace("embeddings", ask.model, actor)
    result = await gateway.embed(actor, ask.model, ask.texts, trace)
    size = len(result.vectors[0]) if result.vectors else 0
    if ask.dimensions is not None and ask.dimensions != size:
        raise BadRequestError(f"model '{ask.model}' makes {size}-dimensional embeddings and "
                              f"cannot shorten them; send dimensions={size} or leave it out",
                              param="dimensions")  # fmt: skip
    return _json(embeddings_response(result, ask.model, trace.id, ask.as_base64), trace.id)


@router.get("/models")
async def list_models(request: Request) -> Response:
    get_actor(request)
    models = await _gateway(request).list_models()
    return Response(orjson.dumps(models_response(models)), media_type="application/json")


@router.get("/models/{model}")
async def get_model(request: Request, model: str) -> Response:
    get_actor(request)
    runtime = await _gateway(request).manager.get(model)
    body = {"id": runtime.spec.name, "object": "model", "created": int(time.time()),
            "owned_by": "llmloop"}  # fmt: skip
    return Response(orjson.dumps(body), media_type="application/json")
