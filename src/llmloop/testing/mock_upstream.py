"""A local OpenAI-compatible upstream over any Engine, for tests and benchmarks (aiohttp).

``MockUpstream(engine)`` serves ``/v1/chat/completions`` (JSON or SSE), ``/v1/completions``
(logprobs, echo), ``/v1/embeddings`` and ``/v1/models`` from the wrapped engine (usually the
echo engine), and can be told to fail the next requests with a status code or to stall, so
error mapping and timeouts can be tested. It records whether a streaming client went away
(``cancelled``). It is not the llmloop gateway: no keys, no guards, no routing.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from aiohttp import web

from llmloop.core.chat import ChatMessage, GenerationRequest, SamplingParams, ToolCall
from llmloop.engines.base import Engine


def _sampling(body: dict[str, Any]) -> SamplingParams:
    stop = body.get("stop") or []
    fields = {
        "max_tokens": body.get("max_tokens") or body.get("max_completion_tokens") or 256,
        "temperature": body.get("temperature", 1.0),
        "top_p": body.get("top_p", 1.0),
        "top_k": body.get("top_k"),
        "stop": [stop] if isinstance(stop, str) else stop,
        "seed": body.get("seed"),
        "presence_penalty": body.get("presence_penalty", 0.0),
        "frequency_penalty": body.get("frequency_penalty", 0.0),
        "repetition_penalty": body.get("repetition_penalty"),
    }
    return SamplingParams(**fields)


def _message(m: dict[str, Any]) -> ChatMessage:
    calls = [
        ToolCall(id=c["id"], name=c["function"]["name"], arguments=c["function"]["arguments"])
        for c in m.get("tool_calls") or []
    ]
    content = m.get("content") or ""
    if isinstance(content, list):
        parts = content
        content = "".join(p.get("text", "") for p in parts if p.get("type") == "text")
    return ChatMessage(role=m["role"], content=content,
                       tool_calls=calls or None, tool_call_id=m.get("tool_call_id"))  # fmt: skip


def _chat_request(body: dict[str, Any]) -> GenerationRequest:
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        choice = choice["function"]["name"]
    return GenerationRequest(
        model=body.get("model", ""), messages=[_message(m) for m in body["messages"]],
        sampling=_sampling(body), tools=body.get("tools"), tool_choice=choice,
        parallel_tool_calls=body.get("parallel_tool_calls"),
        response_format=body.get("response_format"),
        logprobs=(body.get("top_logprobs") or 0) if body.get("logprobs") else None,
    )  # fmt: skip


def _call_dicts(calls: list[ToolCall]) -> list[dict[str, Any]]:
    return [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in calls]  # fmt: skip


class MockUpstream:
    """An aiohttp server on 127.0.0.1 that answers OpenAI requests with ``engine``."""

    def __init__(self, engine: Engine, api_key: str | None = None, port: int = 0) -> None:
        self.engine = engine
        self.port = port
        self.api_key = api_key
        self.fail_next: list[int] = []  # statuses to answer the next requests with, in order
        self.stall_s = 0.0  # sleep before answering (timeouts)
        self.cancelled = 0  # streams whose client went away before the end
        self.requests: list[dict[str, Any]] = []
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def __aenter__(self) -> MockUpstream:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._health)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}/v1"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _gate(self, request: web.Request) -> tuple[dict[str, Any], web.Response | None]:
        body = orjson.loads(await request.read()) if request.can_read_body else {}
        self.requests.append(body)
        if self.api_key and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return body, _error(401, "invalid api key")
        if self.stall_s:
            await asyncio.sleep(self.stall_s)
        if self.fail_next:
            status = self.fail_next.pop(0)
            return body, _error(status, f"mock upstream failure {status}")
        return body, None

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body, refused = await self._gate(request)
        if refused is not None:
            return refused
        try:
            req = _chat_request(body)
        except (KeyError, TypeError, ValueError) as exc:
            return _error(400, f"bad request: {exc}")
        if body.get("stream"):
            return await self._stream(request, req, body)
        result = await self.engine.chat(req)
        message: dict[str, Any] = {"role": "assistant", "content": result.text}
        if result.tool_calls:
            message = {"role": "assistant", "content": result.text or None,
                       "tool_calls": _call_dicts(result.tool_calls)}  # fmt: skip
        return _json(
            {
                "id": "chatcmpl-mock",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": req.model,
                "choices": [
                    {"index": 0, "message": message, "finish_reason": result.finish_reason}
                ],
                "usage": _usage(result.usage.prompt_tokens, result.usage.completion_tokens),
            }
        )

    async def _stream(
        self, request: web.Request, req: GenerationRequest, body: dict[str, Any]
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        finished = False
        stream = self.engine.stream(req)
        try:
            async for chunk in stream:
                choice: dict[str, Any] = {"index": 0, "finish_reason": chunk.finish_reason}
                if req.messages is not None:
                    choice["delta"] = {"content": chunk.text}
                    if chunk.tool_calls:
                        choice["delta"] = {"tool_calls": [_delta_dict(d) for d in chunk.tool_calls]}
                    if chunk.logprobs:
                        choice["logprobs"] = {"content": [
                            {"token": lp.token, "logprob": lp.logprob, "top_logprobs": []}
                            for lp in chunk.logprobs]}  # fmt: skip
                else:
                    choice["text"] = chunk.text
                await response.write(_sse({"object": "chunk", "choices": [choice]}))
                if chunk.usage is not None and body.get("stream_options", {}).get("include_usage"):
                    usage = _usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
                    await response.write(_sse({"choices": [], "usage": usage}))
            await response.write(b"data: [DONE]\n\n")
            finished = True
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
            if not finished:
                self.cancelled += 1
        return response

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body, refused = await self._gate(request)
        if refused is not None:
            return refused
        try:
            ids = body["prompt"] if isinstance(body["prompt"], list) else None
            req = GenerationRequest(
                model=body.get("model", ""),
                prompt="" if ids is not None else body["prompt"],
                prompt_ids=ids,
                sampling=_sampling(body),
                logprobs=body.get("logprobs"),
                echo=bool(body.get("echo", False)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            return _error(400, f"bad request: {exc}")
        if body.get("stream"):
            return await self._stream(request, req, body)
        result = await self.engine.chat(req)
        logprobs = None
        if result.logprobs is not None:
            logprobs = {
                "tokens": [t.token for t in result.logprobs],
                "token_logprobs": [t.logprob for t in result.logprobs],
                "top_logprobs": [t.top for t in result.logprobs],
                "text_offset": [t.offset for t in result.logprobs],
            }
        choice = {
            "index": 0,
            "text": result.text,
            "finish_reason": result.finish_reason,
            "logprobs": logprobs,
        }
        return _json(
            {
                "id": "cmpl-mock",
                "object": "text_completion",
                "model": req.model,
                "choices": [choice],
                "usage": _usage(result.usage.prompt_tokens, result.usage.completion_tokens),
            }
        )

    async def _embeddings(self, request: web.Request) -> web.Response:
        body, refused = await self._gate(request)
        if refused is not None:
            return refused
        texts = body.get("input")
        texts = [texts] if isinstance(texts, str) else texts
        if not isinstance(texts, list) or not texts:
            return _error(400, "'input' must be a string or a non-empty list of strings")
        result = await self.engine.embed(texts)
        data = [
            {"object": "embedding", "index": i, "embedding": v}
            for i, v in enumerate(result.vectors)
        ]
        return _json(
            {"object": "list", "data": data, "usage": _usage(result.usage.prompt_tokens, 0)}
        )

    async def _health(self, request: web.Request) -> web.Response:
        return _json({"status": "ok"})

    async def _models(self, request: web.Request) -> web.Response:
        return _json(
            {"object": "list", "data": [{"id": self.engine.spec.model, "object": "model"}]}
        )


async def serve_forever(engine: Engine, port: int) -> None:
    """Run a mock upstream on ``port`` until cancelled (a stand-in for a server binary)."""
    async with MockUpstream(engine, port=port):
        await asyncio.Event().wait()


def _delta_dict(d: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"index": d.index, "function": {"arguments": d.arguments}}
    if d.id is not None:
        out.update(id=d.id, type="function")
    if d.name is not None:
        out["function"]["name"] = d.name
    return out


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _json(payload: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json")


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def _error(status: int, message: str) -> web.Response:
    return _json({"error": {"message": message, "type": "mock_error", "code": status}}, status)
