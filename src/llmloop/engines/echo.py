"""The echo engine: a deterministic fake for tests and demos (no model, no I/O).

It answers with the last user message (or the prompt), optionally prefixed, tokenised on
whitespace. Options: ``prefix`` (str), ``delay_s`` (per token, float), ``fail_rate`` (0..1,
raises a retryable UpstreamError), ``reply`` (fixed text), ``replies`` (a mapping from the last
user message to its answer; others are echoed), ``embed_dim`` (int, default 16).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
from collections.abc import AsyncIterator

from llmloop.core.chat import (
    EmbeddingResult,
    EngineCapabilities,
    GenerationChunk,
    GenerationRequest,
    GenerationResult,
    TokenLogprob,
    Usage,
)
from llmloop.engines.base import Engine
from llmloop.errors import UpstreamError


def _tokens(text: str) -> list[str]:
    words = text.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)] if text else []


def _last_user(req: GenerationRequest) -> str:
    assert req.messages is not None
    users = [m.content for m in req.messages if m.role == "user"]
    return users[-1] if users else req.messages[-1].content


class EchoEngine(Engine):
    kind = "echo"

    @property
    def capabilities(self) -> EngineCapabilities:
        return EngineCapabilities(embeddings=True, logprobs=True, adapters=True, max_batch_size=64)

    def _prompt_text(self, req: GenerationRequest) -> str:
        if req.prompt is not None:
            return req.prompt
        assert req.messages is not None
        return "\n".join(m.content for m in req.messages)

    def _answer(self, req: GenerationRequest) -> tuple[list[str], str]:
        opts = self.spec.options
        if opts.get("fail_rate") and random.random() < float(str(opts["fail_rate"])):
            raise UpstreamError("echo engine: simulated failure", retryable=True)
        replies = opts.get("replies")
        last = req.prompt if req.prompt is not None else _last_user(req)
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
        tokens, finish = self._answer(req)
        delay = float(str(self.spec.options.get("delay_s", 0.0)))
        for token in tokens:
            if delay:
                await asyncio.sleep(delay)
            yield GenerationChunk(text=token)
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
