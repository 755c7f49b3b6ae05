"""The openai engine: any OpenAI-compatible upstream (vLLM, llama-server, TGI, OpenAI) over aiohttp.

Chat goes to ``/chat/completions`` (JSON or SSE stream), plain prompts to ``/completions``
(with logprobs and echo), embeddings to ``/embeddings``, all through one pooled aiohttp session
made in ``start()`` (bodies go out as orjson bytes; DNS answers are cached for the session).
A whole answer is bounded by ``timeout_s``; a stream by the wait for its next piece, so a long
generation is not cut. Upstream failures become llmloop errors (``openai_wire``): connection
errors, 429 and 5xx are ``UpstreamError(retryable=True)`` (with the upstream's ``Retry-After``),
timeouts ``UpstreamTimeoutError``, a refused request (400, 422) a BadRequestError naming the
upstream's ``param``, a 501 (a kind of request the upstream does not serve) a BadRequestError,
other 4xx ``UpstreamError(retryable=False)``; a stream cut before its end is an UpstreamError.
It does not retry or fail over: the gateway service decides that.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llmloop.core.chat import (
    ChatMessage,
    EmbeddingResult,
    EngineCapabilities,
    EngineSpec,
    GenerationChunk,
    GenerationRequest,
    GenerationResult,
    Usage,
)
from llmloop.engines.base import Engine
from llmloop.engines.openai_wire import (
    DONE,
    raise_for,
    read_chat_logprobs,
    read_completion_logprobs,
    read_finish,
    read_tool_calls,
    read_tool_deltas,
    read_usage,
    sse_events,
)
from llmloop.errors import BadRequestError, ConfigError, UpstreamError, UpstreamTimeoutError


class OpenAIEngineConfig(BaseModel):
    """Options of the openai engine (``EngineSpec.options``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field(description="Upstream API root including '/v1', e.g. http://h:8000/v1.")
    api_key_env: str | None = Field(
        default=None, description="Name of the environment variable holding the API key."
    )
    timeout_s: float = Field(
        default=120.0,
        gt=0,
        description="Seconds a whole answer may take; a stream may take longer while it keeps "
        "coming, this being the longest wait for its next piece.",
    )
    connect_timeout_s: float = Field(default=10.0, gt=0, description="Connect timeout, seconds.")
    max_connections: int = Field(default=256, ge=1, description="Pooled connections to upstream.")
    model: str | None = Field(default=None, description="Upstream model name (default spec.model).")
    embeddings: bool = Field(default=True, description="Whether the upstream serves embeddings.")
    logprobs: bool = Field(default=True, description="Whether the upstream returns logprobs.")
    tools: bool = Field(default=True, description="Whether the upstream answers with tool calls.")
    structured_output: bool = Field(
        default=True, description="Whether the upstream honours response_format JSON modes."
    )
    multimodal: bool = Field(
        default=True, description="Whether the upstream takes image, audio and file parts."
    )


def parse_config(options: dict[str, object]) -> OpenAIEngineConfig:
    try:
        return OpenAIEngineConfig.model_validate(options)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"bad openai engine options: {problems}") from None


def _sampling_body(req: GenerationRequest) -> dict[str, Any]:
    """The sampling fields the caller chose (the upstream's defaults stand for the rest) and the
    request's passthrough fields; ``max_completion_tokens``, when the client sent it, replaces
    ``max_tokens`` (OpenAI's reasoning models refuse the older name)."""
    s = req.sampling
    chosen = s.model_fields_set
    body: dict[str, Any] = {}
    if "max_tokens" in chosen:
        body["max_tokens"] = s.max_tokens
    if "temperature" in chosen:
        body["temperature"] = s.temperature
    if "top_p" in chosen:
        body["top_p"] = s.top_p
    if s.stop:
        body["stop"] = list(s.stop)
    if s.seed is not None:
        body["seed"] = s.seed
    if s.presence_penalty:
        body["presence_penalty"] = s.presence_penalty
    if s.frequency_penalty:
        body["frequency_penalty"] = s.frequency_penalty
    # Not in OpenAI's schema, but vLLM, llama-server and TGI read them.
    if s.top_k is not None:
        body["top_k"] = s.top_k
    if s.repetition_penalty is not None:
        body["repetition_penalty"] = s.repetition_penalty
    if req.user:
        body["user"] = req.user
    if req.passthrough:
        if "max_completion_tokens" in req.passthrough:
            body.pop("max_tokens", None)
        body.update(req.passthrough)
    return body


class OpenAICompatEngine(Engine):
    """An OpenAI-compatible HTTP upstream behind the Engine contract."""

    kind = "openai"
    config_cls = OpenAIEngineConfig

    def __init__(self, spec: EngineSpec) -> None:
        super().__init__(spec)
        self.config = parse_config(spec.options)
        self._base = self.config.base_url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None
        self._stream_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self.config.connect_timeout_s, sock_read=self.config.timeout_s
        )

    @property
    def capabilities(self) -> EngineCapabilities:
        return EngineCapabilities(
            embeddings=self.config.embeddings,
            logprobs=self.config.logprobs,
            tools=self.config.tools,
            structured_output=self.config.structured_output,
            token_prompts=True,
            multimodal=self.config.multimodal,
            adapters=True,  # sent as the model name, as vLLM serves LoRA adapters
            max_batch_size=self.config.max_connections,
        )

    async def start(self) -> None:
        if self._session is not None:
            return
        headers = {"Content-Type": "application/json"}
        if self.config.api_key_env:
            # The edge named this variable in the deployment; reading it here is the contract.
            key = os.environ.get(self.config.api_key_env)
            if not key:
                raise ConfigError(f"environment variable '{self.config.api_key_env}' is not set")
            headers["Authorization"] = f"Bearer {key}"
        # Upstreams are few and long-lived: cache their DNS answers for good, keep connections.
        connector = aiohttp.TCPConnector(
            limit=self.config.max_connections, keepalive_timeout=60, ttl_dns_cache=None
        )
        timeout = aiohttp.ClientTimeout(
            total=self.config.timeout_s, sock_connect=self.config.connect_timeout_s
        )
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=timeout, headers=headers, json_serialize=_dumps,
            skip_auto_headers=("User-Agent",),
        )  # fmt: skip

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _model(self, req: GenerationRequest) -> str:
        return req.adapter or self.config.model or self.spec.model or req.model

    def _body(self, req: GenerationRequest, stream: bool) -> tuple[str, dict[str, Any]]:
        body = {"model": self._model(req), **_sampling_body(req)}
        if req.messages is not None:
            body["messages"] = [message_dict(m) for m in req.messages]
            _tool_fields(req, body)
            if req.logprobs is not None:
                body["logprobs"] = True
                body["top_logprobs"] = req.logprobs
            path = "/chat/completions"
        else:
            body["prompt"] = req.prompt_ids if req.prompt_ids is not None else req.prompt
            if req.logprobs is not None:
                body["logprobs"] = req.logprobs
            if req.echo:
                body["echo"] = True
            path = "/completions"
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return path, body

    async def _post(
        self, path: str, body: dict[str, Any], stream: bool = False
    ) -> aiohttp.ClientResponse:
        await self.start()
        assert self._session is not None
        # A stream may run longer than timeout_s as long as it keeps coming: it is bounded by
        # the wait for each read (a stall), not by its whole length.
        # (aiohttp reads an explicit ``timeout=None`` as no timeout at all: pass one only here.)
        options: dict[str, Any] = {"timeout": self._stream_timeout} if stream else {}
        data = orjson.dumps(body)  # bytes straight from orjson: no JsonPayload, no str round trip
        try:
            try:
                response = await self._session.post(self._base + path, data=data, **options)
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
                # A kept-alive connection the upstream had closed (llama-server closes one after
                # a stream), found out on writing or on reading: once more, on a new connection,
                # as the openai client does.
                response = await self._session.post(self._base + path, data=data, **options)
        except TimeoutError:
            raise UpstreamTimeoutError(f"upstream {self._base} did not answer in time") from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"cannot reach upstream {self._base}: {exc}", retryable=True)
        if response.status >= 400:
            await raise_for(response)
        return response

    async def chat(self, req: GenerationRequest) -> GenerationResult:
        path, body = self._body(req, stream=False)
        response = await self._post(path, body)
        try:
            payload = orjson.loads(await response.read())
        except TimeoutError:
            raise UpstreamTimeoutError(f"upstream {self._base} did not answer in time") from None
        except (aiohttp.ClientError, orjson.JSONDecodeError) as exc:
            raise UpstreamError(f"bad answer from upstream: {exc}", retryable=True) from None
        finally:
            response.release()
        try:
            choice = payload["choices"][0]
            calls = None
            if req.messages is not None:
                text = choice["message"].get("content") or ""
                calls = read_tool_calls(choice["message"].get("tool_calls"))
                logprobs = read_chat_logprobs(choice.get("logprobs"))
            else:
                text = choice.get("text") or ""
                logprobs = read_completion_logprobs(choice.get("logprobs"))
        except (KeyError, IndexError, TypeError) as exc:
            raise UpstreamError(f"upstream answer lacks {exc}", retryable=False) from None
        return GenerationResult(
            text=text,
            finish_reason=read_finish(choice.get("finish_reason")),
            usage=read_usage(payload.get("usage")),
            logprobs=logprobs if req.logprobs is not None else None,
            tool_calls=calls,
        )

    async def stream(self, req: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        path, body = self._body(req, stream=True)
        response = await self._post(path, body, stream=True)
        finish: str | None = None
        usage = Usage()
        done = False
        try:
            async for payload in sse_events(response):
                if payload is DONE:
                    done = True
                    break
                if payload.get("usage"):
                    usage = read_usage(payload["usage"])
                for choice in payload.get("choices") or []:
                    delta = choice.get("delta") or {}
                    chat = "delta" in choice
                    text = delta.get("content") if chat else choice.get("text")
                    if text:
                        lps = None
                        if req.logprobs is not None and choice.get("logprobs"):
                            read = read_chat_logprobs if chat else read_completion_logprobs
                            lps = read(choice["logprobs"])
                        yield GenerationChunk(text=text, logprobs=lps)
                    if delta.get("tool_calls"):
                        yield GenerationChunk(tool_calls=read_tool_deltas(delta["tool_calls"]))
                    if choice.get("finish_reason"):
                        finish = choice["finish_reason"]
        except TimeoutError:
            raise UpstreamTimeoutError(f"upstream {self._base} stalled mid-stream") from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"upstream stream broke: {exc}", retryable=True) from None
        finally:
            # On early aclose this drops the connection, which cancels the upstream generation.
            response.close()
        if not done and finish is None:
            raise UpstreamError(
                f"upstream {self._base} ended the stream early (no finish_reason, no [DONE])",
                retryable=True,
            )
        yield GenerationChunk(finish_reason=read_finish(finish), usage=usage)

    async def embed(self, texts: list[str]) -> EmbeddingResult:
        if not self.config.embeddings:
            raise BadRequestError(  # the client's to fix, not the upstream's health
                "this target serves no embeddings (its options say embeddings: false)",
                param="model",
            )
        response = await self._post("/embeddings", {"model": self._model_name(), "input": texts})
        try:
            payload = orjson.loads(await response.read())
            data = sorted(payload["data"], key=lambda d: d.get("index", 0))
            vectors = [list(map(float, d["embedding"])) for d in data]
        except (KeyError, TypeError, orjson.JSONDecodeError) as exc:
            raise UpstreamError(f"bad embeddings answer from upstream: {exc}") from None
        finally:
            response.release()
        return EmbeddingResult(vectors=vectors, usage=read_usage(payload.get("usage")))

    def _model_name(self) -> str:
        return self.config.model or self.spec.model


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def message_dict(m: ChatMessage) -> dict[str, Any]:
    """A message as OpenAI takes it (an assistant turn of only calls has ``content: null``)."""
    out: dict[str, Any] = {"role": m.role, "content": m.parts or m.content}
    if m.name is not None:
        out["name"] = m.name
    if m.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in m.tool_calls
        ]
        if not m.content:
            out["content"] = None
    if m.tool_call_id is not None:
        out["tool_call_id"] = m.tool_call_id
    return out


def _tool_fields(req: GenerationRequest, body: dict[str, Any]) -> None:
    if req.tools:
        body["tools"] = req.tools
        if req.tool_choice is not None:
            forced = req.forced_tool
            body["tool_choice"] = (
                {"type": "function", "function": {"name": forced}} if forced else req.tool_choice
            )
        if req.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = req.parallel_tool_calls
    if req.response_format is not None:
        body["response_format"] = req.response_format
