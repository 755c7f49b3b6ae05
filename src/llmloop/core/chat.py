"""Generation values shared by engines, the gateway,
evaluators and guards (OpenAI-shaped, wire-free).

These are what an :class:`~llmloop.engines.base.Engine` takes and returns. The OpenAI wire
schemas (``api/gateway``) convert to and from them; nothing here knows HTTP.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from llmloop.core.base import Value

Role = Literal["system", "user", "assistant", "tool", "developer"]
FinishReason = Literal["stop", "length", "content_filter", "error", "cancelled", "tool_calls"]
ToolChoice = Literal["none", "auto", "required"]


class ToolCall(Value):
    """A function call the model asked for (``arguments`` is JSON text, as the model wrote it)."""

    id: str
    name: str
    arguments: str = "{}"


class ToolCallDelta(Value):
    """A streamed piece of a tool call: ``id`` and ``name`` come first, ``arguments`` in parts."""

    index: int = Field(ge=0, description="Which call of the answer this piece belongs to.")
    id: str | None = None
    name: str | None = None
    arguments: str = ""


class ChatMessage(Value):
    role: Role
    content: str
    name: str | None = None
    tool_calls: list[ToolCall] | None = Field(
        default=None, description="Assistant turns: the calls it made (content may be empty)."
    )
    tool_call_id: str | None = Field(default=None, description="Tool turns: the call answered.")
    parts: list[dict[str, Any]] | None = Field(
        default=None,
        description="OpenAI content parts when the turn has more than text (images, audio, "
        "files); 'content' then holds its text parts joined.",
    )


class SamplingParams(Value):
    """Per-request sampling; every engine honours these or reports it cannot (capabilities).

    ``model_fields_set`` holds what the caller chose (the gateway leaves out a ``max_tokens`` it
    filled in itself): an engine that forwards to an OpenAI-compatible upstream sends only those,
    so the upstream's own defaults apply to the rest.
    """

    max_tokens: int = Field(default=256, ge=1, le=131_072)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=1, le=100_000)
    stop: list[str] = Field(default_factory=list, max_length=16)
    seed: int | None = Field(default=None, ge=-(2**63), lt=2**63)  # int64, as OpenAI's
    presence_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    repetition_penalty: float | None = Field(default=None, gt=0.0)


class GenerationRequest(Value):
    """A chat (``messages``) or a plain completion (``prompt``) for one model."""

    model: str = Field(description="The engine-side model name.")
    messages: list[ChatMessage] | None = None
    prompt: str | None = None
    prompt_ids: list[int] | None = Field(
        default=None, description="Completions: the prompt as token ids ('prompt' is then '')."
    )
    sampling: SamplingParams = Field(default_factory=SamplingParams)
    logprobs: int | None = Field(
        default=None, ge=0, le=20, description="Return log-probs with this many top tokens."
    )
    echo: bool = Field(default=False, description="Completions: score and return the prompt too.")
    adapter: str | None = Field(default=None, description="LoRA adapter to apply (path or name).")
    user: str | None = None
    request_id: str = ""
    tools: list[dict[str, Any]] | None = Field(
        default=None, description="Function tools in OpenAI's shape ({type, function})."
    )
    tool_choice: ToolChoice | str | None = Field(
        default=None, description="none | auto | required, or the one function name to call."
    )
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = Field(
        default=None, description="OpenAI's response_format: json_object or json_schema."
    )
    passthrough: dict[str, Any] | None = Field(
        default=None,
        description="Request fields llmloop does not read (logit_bias, reasoning_effort, "
        "vLLM's extra sampling, ...): sent as they are by engines with an OpenAI-compatible "
        "upstream, ignored by the others.",
    )

    @property
    def forced_tool(self) -> str | None:
        """The function ``tool_choice`` names, if it names one."""
        choice = self.tool_choice
        return choice if choice is not None and choice not in ("none", "auto", "required") else None

    @property
    def wants_tools(self) -> bool:
        """Whether the model may answer with tool calls."""
        return bool(self.tools) and self.tool_choice != "none"

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
    bytes: list[int] | None = Field(
        default=None,
        description="The token's own bytes, where its text cannot hold them (part of a "
        "character: byte-level tokenizers split most CJK, emoji and accented characters).",
    )


class GenerationResult(Value):
    text: str
    finish_reason: FinishReason = "stop"
    usage: Usage = Field(default_factory=Usage)
    logprobs: list[TokenLogprob] | None = Field(
        default=None, description="Per token of the output (prompt tokens first under echo)."
    )
    tool_calls: list[ToolCall] | None = Field(
        default=None, description="Calls the model asked for (finish_reason 'tool_calls')."
    )


class GenerationChunk(Value):
    """One streamed piece; the last chunk has ``finish_reason`` and ``usage``."""

    text: str = ""
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    tool_calls: list[ToolCallDelta] | None = None
    logprobs: list[TokenLogprob] | None = Field(
        default=None, description="The log-probabilities of this chunk's tokens, when asked for."
    )


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
    tools: bool = Field(default=False, description="Answers with tool calls when given tools.")
    structured_output: bool = Field(
        default=False, description="Honours response_format json_object / json_schema."
    )
    token_prompts: bool = Field(default=False, description="Takes prompts as token ids.")
    multimodal: bool = Field(default=False, description="Takes image, audio and file parts.")
    max_batch_size: int = 1
    max_context: int | None = None


class EngineSpec(Value):
    """How to build an engine: the plugin name, the model reference and engine options."""

    kind: str = Field(description="Engine plugin name: hf, vllm, llamacpp, openai, echo, ...")
    model: str = Field(default="", description="Model path, hub id or upstream model name.")
    adapter: str | None = Field(default=None, description="Default LoRA adapter path.")
    options: dict[str, object] = Field(default_factory=dict)


def tool_call_deltas(calls: list[ToolCall]) -> list[ToolCallDelta]:
    """Whole calls as stream pieces (one piece a call)."""
    return [
        ToolCallDelta(index=i, id=c.id, name=c.name, arguments=c.arguments)
        for i, c in enumerate(calls)
    ]


def collect_tool_calls(deltas: list[ToolCallDelta]) -> list[ToolCall]:
    """Join streamed pieces into whole calls, in index order (the first id and name win)."""
    ids: dict[int, str] = {}
    names: dict[int, str] = {}
    args: dict[int, list[str]] = {}
    for d in deltas:
        if d.id and d.index not in ids:
            ids[d.index] = d.id
        if d.name and d.index not in names:
            names[d.index] = d.name
        args.setdefault(d.index, []).append(d.arguments)
    return [
        ToolCall(id=ids.get(i, f"call_{i}"), name=names.get(i, ""), arguments="".join(args[i]))
        for i in sorted(args)
    ]
