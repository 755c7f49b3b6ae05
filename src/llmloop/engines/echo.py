"""The echo engine: a deterministic fake for tests and demos (no model, no I/O).

It answers with the last user message (or the prompt), optionally prefixed, tokenised on
whitespace. Options: ``prefix`` (str), ``delay_s`` (per token, float), ``fail_rate`` (0..1,
raises a retryable UpstreamError), ``reply`` (fixed text), ``replies`` (a mapping from the last
user message to its answer; others are echoed), ``embed_dim`` (int, default 16),
``tool_arguments`` (a mapping from a function name to the arguments it is called with; ``{}``
for others).

Given tools, it calls one when ``tool_choice`` names it or is ``required`` (the first tool), or
when ``auto`` and the last user message mentions a tool's name; after a tool turn it answers with
that tool's result. Streamed calls come in pieces, as OpenAI sends them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llmloop.core.chat import (
    EmbeddingResult,
    EngineCapabilities,
    EngineSpec,
    GenerationChunk,
    GenerationRequest,
    GenerationResult,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from llmloop.engines.base import Engine
from llmloop.engines.tool_parsers import new_tool_call_id
from llmloop.errors import ConfigError, UpstreamError


def _tokens(text: str) -> list[str]:
    words = text.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)] if text else []


def _last_user(req: GenerationRequest) -> str:
    assert req.messages is not None
    users = [m.content for m in req.messages if m.role == "user"]
    return users[-1] if users else req.messages[-1].content


class EchoEngineConfig(BaseModel):
    """The echo engine's options (see the module docstring). Other keys are allowed: an echo
    model version's params are its options, and they hold more than these."""

    model_config = ConfigDict(extra="allow")

    prefix: str = Field(default="", description="Put before every answer.")
    delay_s: float = Field(default=0.0, ge=0, le=60, description="Seconds per token.")
    fail_rate: float = Field(default=0.0, ge=0, le=1, description="Share of retryable failures.")
    reply: str | None = Field(default=None, description="Answer every request with this.")
    replies: dict[str, str] = Field(
        default_factory=dict, description="Last user message -> its answer (others echoed)."
    )
    embed_dim: int = Field(default=16, ge=1, le=65_536, description="Embedding dimensions.")
    tool_arguments: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Function name -> the arguments it is called with."
    )


class EchoEngine(Engine):
    kind = "echo"
    config_cls: ClassVar[type[BaseModel] | None] = EchoEngineConfig

    def __init__(self, spec: EngineSpec) -> None:
        super().__init__(spec)
        if self.config_cls is None:  # a subclass with options of its own (tests' probes)
            return
        try:
            self.config_cls.model_validate(spec.options)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
            )
            raise ConfigError(f"bad echo engine options: {problems}") from None

    @property
    def capabilities(self) -> EngineCapabilities:
        return EngineCapabilities(
            embeddings=True,
            logprobs=True,
            adapters=True,
            tools=True,
            token_prompts=True,
            max_batch_size=64,
        )

    def _tool_call(self, req: GenerationRequest) -> ToolCall | None:
        """The call this fake makes for ``req``, if any (see the module docstring)."""
        if not req.wants_tools or not req.messages or req.messages[-1].role == "tool":
            return None
        names = [str((t.get("function") or {}).get("name", "")) for t in req.tools or []]
        name = req.forced_tool
        if name is None and req.tool_choice == "required":
            name = names[0]
        if name is None:
            last = _last_user(req)
            name = next((n for n in names if n and n in last), None)
        if name is None:
            return None
        table = self.spec.options.get("tool_arguments")
        args = table.get(name, {}) if isinstance(table, dict) else {}
        return ToolCall(id=new_tool_call_id(), name=name, arguments=json.dumps(args))

    def _prompt_text(self, req: GenerationRequest) -> str:
        if req.prompt_ids is not None:  # token ids read as words of their decimal numbers
            return " ".join(map(str, req.prompt_ids))
        if req.prompt is not None:
            return req.prompt
        assert req.messages is not None
        return "\n".join(m.content for m in req.messages)

    def _answer(self, req: GenerationRequest) -> tuple[list[str], str]:
        opts = self.spec.options
        if opts.get("fail_rate") and random.random() < float(str(opts["fail_rate"])):
            raise UpstreamError("echo engine: simulated failure", retryable=True)
        replies = opts.get("replies")
        last = self._prompt_text(req) if req.prompt is not None else _last_user(req)
        if req.messages and req.messages[-1].role == "tool":
            last = req.messages[-1].content
        if isinstance(replies, dict) and last in replies:
            text = str(replies[last])
        elif "reply" in opts:
            text = str(opts["reply"])
        else:
            text = last
        text = f"{opts.get('prefix', '')}{text}"
        tokens = _tokens(text)
        finish = "stop"
        if len(tokens) > req.sampling.max_tokens:
            tokens, finish = tokens[: req.sampling.max_tokens], "length"
        for stop in req.sampling.stop:
            joined = "".join(tokens)
            if stop and stop in joined:
                tokens, finish = _tokens(joined[: joined.index(stop)]), "stop"
        return tokens, finish

    async def chat(self, req: GenerationRequest) -> GenerationResult:
        call = self._tool_call(req)
        if call is not None:
            return GenerationResult(
                text="", finish_reason="tool_calls", tool_calls=[call],
                usage=Usage(prompt_tokens=len(_tokens(self._prompt_text(req))),
                            completion_tokens=len(_tokens(call.arguments))),
            )  # fmt: skip
        tokens, finish = self._answer(req)
        delay = float(str(self.spec.options.get("delay_s", 0.0)))
        if delay:
            await asyncio.sleep(delay * len(tokens))
        prompt_tokens = _tokens(self._prompt_text(req))
        logprobs = None
        if req.logprobs is not None:
            scored = (prompt_tokens if req.echo else []) + tokens
            logprobs = [
                TokenLogprob(token=t, logprob=None if (req.echo and i == 0) else -1.0)
                for i, t in enumerate(scored)
            ]
        text = "".join(tokens)
        if req.echo:
            text = self._prompt_text(req) + text
        return GenerationResult(
            text=text,
            finish_reason=finish,  # type: ignore[arg-type]
            usage=Usage(prompt_tokens=len(prompt_tokens), completion_tokens=len(tokens)),
            logprobs=logprobs,
        )

    async def stream(self, req: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        call = self._tool_call(req)
        if call is not None:
            half = len(call.arguments) // 2
            yield GenerationChunk(tool_calls=[ToolCallDelta(index=0, id=call.id, name=call.name)])
            for part in (call.arguments[:half], call.arguments[half:]):
                yield GenerationChunk(tool_calls=[ToolCallDelta(index=0, arguments=part)])
            yield GenerationChunk(
                finish_reason="tool_calls",
                usage=Usage(prompt_tokens=len(_tokens(self._prompt_text(req))),
                            completion_tokens=len(_tokens(call.arguments))),
            )  # fmt: skip
            return
        tokens, finish = self._answer(req)
        delay = float(str(self.spec.options.get("delay_s", 0.0)))
        scored = req.logprobs is not None
        for token in tokens:
            if delay:
                await asyncio.sleep(delay)
            lps = [TokenLogprob(token=token, logprob=-1.0)] if scored else None
            yield GenerationChunk(text=token, logprobs=lps)
        yield GenerationChunk(
            finish_reason=finish,  # type: ignore[arg-type]
            usage=Usage(
                prompt_tokens=len(_tokens(self._prompt_text(req))), completion_tokens=len(tokens)
            ),
        )

    async def embed(self, texts: list[str]) -> EmbeddingResult:
        dim = int(str(self.spec.options.get("embed_dim", 16)))
        vectors = []
        for text in texts:
            digest = hashlib.sha256(text.encode()).digest()
            raw = [(digest[i % len(digest)] - 127.5) / 127.5 for i in range(dim)]
            norm = math.sqrt(sum(x * x for x in raw)) or 1.0
            vectors.append([x / norm for x in raw])
        return EmbeddingResult(
            vectors=vectors, usage=Usage(prompt_tokens=sum(len(_tokens(t)) for t in texts))
        )
