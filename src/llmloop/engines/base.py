"""The Engine contract: async chat/stream/embed over one loaded model, plus capabilities and close.

Blocking backends (transformers, llama.cpp bindings) run in worker threads and batch requests;
a backend that runs as a child server is reached through the OpenAI-compatible adapter. The
contract knows nothing of HTTP, keys or routing: the gateway service does that.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from typing import ClassVar

from pydantic import BaseModel

from llmloop.core.chat import (
    EmbeddingResult,
    EngineCapabilities,
    EngineSpec,
    GenerationChunk,
    GenerationRequest,
    GenerationResult,
)


class Engine(abc.ABC):
    """One loaded model behind the generation contract."""

    #: The plugin name this engine registers under.
    kind: str = ""
    #: The pydantic model of ``EngineSpec.options`` (None: free-form options, see the docstring).
    config_cls: ClassVar[type[BaseModel] | None] = None

    def __init__(self, spec: EngineSpec) -> None:
        self.spec = spec

    @property
    @abc.abstractmethod
    def capabilities(self) -> EngineCapabilities:
        """What this engine can do (the gateway refuses requests it cannot serve)."""

    @abc.abstractmethod
    async def chat(self, req: GenerationRequest) -> GenerationResult:
        """Generate a whole answer to ``req.messages`` (or ``req.prompt``)."""

    @abc.abstractmethod
    def stream(self, req: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        """Generate incrementally; the last chunk carries ``finish_reason`` and ``usage``.

        Closing the iterator early (``aclose``) cancels the generation.
        """

    async def embed(self, texts: list[str]) -> EmbeddingResult:
        """Embed ``texts``; engines without embeddings raise UpstreamError."""
        from llmloop.errors import UpstreamError

        raise UpstreamError(f"engine '{self.kind}' does not serve embeddings")

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Load the model; called once before the first request."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release the model, threads and connections."""
