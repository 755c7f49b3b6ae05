"""Generation values shared by engines, the gateway,
evaluators and guards (OpenAI-shaped, wire-free).

These are what an :class:`~llmloop.engines.base.Engine` takes and returns. The OpenAI wire
schemas (``api/gateway``) convert to and from them; nothing here knows HTTP.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from llmloop.core.base import Value

Role = Literal["system", "user", "assistant", "tool", "developer"]
FinishReason = Literal["stop", "length", "content_filter", "error", "cancelled"]


class ChatMessage(Value):
    role: Role
    content: str
    name: str | None = None


class SamplingParams(Value):
    """Per-request sampling; every engine honours these or reports it cannot (capabilities)."""

    max_tokens: int = Field(default=256, ge=1, le=131_072)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=1, le=100_000)
    stop: list[str] = Field(default_factory=list, max_length=16)
    seed: int | None = None
    presence_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    repetition_penalty: float | None = Field(default=None, gt=0.0)


class GenerationRequest(Value):
    """A chat (``messages``) or a plain completion (``prompt``) for one model."""

    model: str = Field(description="The engine-side model name.")
    messages: list[ChatMessage] | None = None
    prompt: str | None = None
    sampling: SamplingParams = Field(default_factory=SamplingParams)
    logprobs: int | None = Field(
        default=None, ge=0, le=20, description="Return log-probs with this many top tokens."
    )
    echo: bool = Field(default=False, description="Completions: score and return the prompt too.")
    adapter: str | None = Field(default=None, description="LoRA adapter to apply (path or name).")
    user: str | None = None
    request_id: str = ""

    @model_validator(mode="after")
    def _one_input(self) -> GenerationRequest:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("give exactly one of 'messages' or 'prompt'")
        if self.messages is not None and not self.messages:
            raise ValueError("'messages' must not be empty")
        return self


class Usage(Value):
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class TokenLogprob(Value):
    token: str
    logprob: float | None = Field(description="None for the first prompt token under echo.")
    top: dict[str, float] | None = None
    offset: int = Field(default=0, description="Character offset of the token in the text.")


class GenerationResult(Value):
    text: str
    finish_reason: FinishReason = "stop"
    usage: Usage = Field(default_factory=Usage)
    logprobs: list[TokenLogprob] | None = Field(
        default=None, description="Per token of the output (prompt tokens first under echo)."
    )


class GenerationChunk(Value):
    """One streamed piece; the last chunk has ``finish_reason`` and ``usage``."""

    text: str = ""
    finish_reason: FinishReason | None = None
    usage: Usage | None = None


class EmbeddingResult(Value):
    vectors: list[list[float]]
    usage: Usage = Field(default_factory=Usage)


class EngineCapabilities(Value):
    chat: bool = True
    completions: bool = True
    embeddings: bool = False
    logprobs: bool = False
    streaming: bool = True
    adapters: bool = False
    max_batch_size: int = 1
    max_context: int | None = None


class EngineSpec(Value):
    """How to build an engine: the plugin name, the model reference and engine options."""

    kind: str = Field(description="Engine plugin name: hf, vllm, llamacpp, openai, echo, ...")
    model: str = Field(default="", description="Model path, hub id or upstream model name.")
    adapter: str | None = Field(default=None, description="Default LoRA adapter path.")
    options: dict[str, object] = Field(default_factory=dict)
