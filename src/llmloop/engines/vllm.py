"""The vllm engine: vLLM's async engine in-process (GPU), with per-request LoRA adapters.

Requests become ``vllm.SamplingParams`` and go to ``AsyncLLMEngine.generate``; chat messages and
tools go through the tokenizer's chat template (``chat_template.py``, shared with hf), answers to
requests with tools through the tool parser (``tool_results.py``); an adapter (``spec.adapter``
or ``req.adapter``, a local PEFT dir) becomes a ``LoRARequest`` with a stable integer id so vLLM
keeps it loaded; closing a stream aborts the vLLM request. Completions return logprobs and, with
echo, prompt logprobs. vLLM is imported only when the engine is built (``pip install
llmloop[vllm]``); this module does not serve HTTP (vLLM's own server is reached through the
openai engine instead).
"""

from __future__ import annotations

import contextlib
import itertools
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llmloop.core.chat import (
    EngineCapabilities,
    EngineSpec,
    GenerationChunk,
    GenerationRequest,
    GenerationResult,
    TokenLogprob,
    Usage,
)
from llmloop.engines.base import Engine
from llmloop.engines.chat_template import render_chat, template_text
from llmloop.engines.passthrough import min_new_tokens
from llmloop.engines.tool_parsers import (
    TOOL_PARSER_HELP,
    ToolParserName,
    ToolParserOption,
    configured_tool_parser,
    known_tool_parser,
)
from llmloop.engines.tool_results import answer_parser, maybe_parse_stream, parse_result
from llmloop.errors import ConfigError, InvalidInputError, UpstreamError, require_extra


class VLLMEngineConfig(BaseModel):
    """Options of the vllm engine (``EngineSpec.options``), passed to ``AsyncEngineArgs``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dtype: str = Field(default="auto", description="Weights dtype: auto, bfloat16, float16, ...")
    max_model_len: int | None = Field(default=None, ge=16, description="Context length limit.")
    gpu_memory_utilization: float = Field(
        default=0.85, gt=0, le=1, description="Fraction of GPU memory vLLM may take."
    )
    max_num_seqs: int = Field(default=128, ge=1, description="Sequences decoding at once.")
    enable_lora: bool = Field(default=True, description="Allow LoRA adapters per request.")
    max_loras: int = Field(default=4, ge=1, description="Adapters resident on the GPU at once.")
    max_lora_rank: int = Field(default=16, ge=1, description="Largest LoRA rank accepted.")
    enforce_eager: bool = Field(default=False, description="Skip CUDA graphs (faster start).")
    tensor_parallel_size: int = Field(default=1, ge=1, description="GPUs to shard over.")
    seed: int = Field(default=0, description="Engine seed.")
    tool_parser: ToolParserOption = Field(default="auto", description=TOOL_PARSER_HELP)


def parse_config(options: dict[str, object]) -> VLLMEngineConfig:
    try:
        return VLLMEngineConfig.model_validate(options)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"bad vllm engine options: {problems}") from None


class VLLMEngine(Engine):
    """vLLM's AsyncLLMEngine behind the Engine contract."""

    kind = "vllm"
    config_cls = VLLMEngineConfig

    def __init__(self, spec: EngineSpec) -> None:
        super().__init__(spec)
        self.config = parse_config(spec.options)
        if not spec.model:
            raise ConfigError("the vllm engine needs 'model': a local model directory or hub id")
        require_extra("vllm", "vllm", "the vllm engine")
        self._engine: Any = None
        self._tokenizer: Any = None
        self._lora_ids: dict[str, int] = {}
        self._next_lora = itertools.count(1)
        self._tool_parser: ToolParserName | None = known_tool_parser(self.config.tool_parser)

    @property
    def capabilities(self) -> EngineCapabilities:
        return EngineCapabilities(
            logprobs=True,
            adapters=self.config.enable_lora,
            tools=self._tool_parser is not None,
            max_batch_size=self.config.max_num_seqs,
            max_context=self.config.max_model_len,
        )

    async def start(self) -> None:
        if self._engine is not None:
            return
        from vllm import AsyncEngineArgs, AsyncLLMEngine

        cfg = self.config
        args = AsyncEngineArgs(
            model=self.spec.model,
            dtype=cfg.dtype,
            max_model_len=cfg.max_model_len,
            gpu_memory_utilization=cfg.gpu_memory_utilization,
            max_num_seqs=cfg.max_num_seqs,
            enable_lora=cfg.enable_lora,
            max_loras=cfg.max_loras,
            max_lora_rank=cfg.max_lora_rank,
            enforce_eager=cfg.enforce_eager,
            tensor_parallel_size=cfg.tensor_parallel_size,
            seed=cfg.seed,
        )
        self._engine = AsyncLLMEngine.from_engine_args(args)
        self._tokenizer = await self._engine.get_tokenizer()
        self._tool_parser = configured_tool_parser(cfg.tool_parser, template_text(self._tokenizer))

    async def aclose(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None and hasattr(engine, "shutdown"):
            engine.shutdown()

    def _lora(self, req: GenerationRequest) -> Any:
        path = req.adapter or self.spec.adapter
        if path is None:
            return None
        if not self.config.enable_lora:
            raise InvalidInputError("this vllm engine was started with enable_lora=false")
        from vllm.lora.request import LoRARequest

        if path not in self._lora_ids:
            self._lora_ids[path] = next(self._next_lora)
        return LoRARequest(f"lora-{self._lora_ids[path]}", self._lora_ids[path], path)

    def _sampling(self, req: GenerationRequest) -> Any:
        from vllm import SamplingParams

        s = req.sampling
        least = min_new_tokens(req, s.max_tokens)  # checks min_tokens and ignore_eos
        ignore_eos = (req.passthrough or {}).get("ignore_eos") is True
        return SamplingParams(
            n=1,
            min_tokens=0 if ignore_eos else least,
            ignore_eos=ignore_eos,
            max_tokens=s.max_tokens,
            temperature=s.temperature,
            top_p=s.top_p,
            top_k=s.top_k or -1,  # -1 disables top-k in every vLLM version
            stop=list(s.stop) or None,
            seed=s.seed,
            presence_penalty=s.presence_penalty,
            frequency_penalty=s.frequency_penalty,
            repetition_penalty=s.repetition_penalty or 1.0,
            logprobs=req.logprobs,
            prompt_logprobs=req.logprobs if req.echo and req.logprobs is not None else None,
        )

    def _prompt(self, req: GenerationRequest) -> str:
        if req.prompt is not None:
            return req.prompt
        return render_chat(self._tokenizer, req)

    async def _generate(self, req: GenerationRequest) -> AsyncIterator[Any]:
        if self._engine is None:
            await self.start()
        request_id = req.request_id or uuid.uuid4().hex
        outputs = self._engine.generate(
            self._prompt(req), self._sampling(req), request_id, lora_request=self._lora(req)
        )
        finished = False
        try:
            async for out in outputs:
                finished = out.finished
                yield out
        except ValueError as exc:  # vLLM refuses e.g. a prompt longer than the context
            raise InvalidInputError(f"vllm refused the request: {exc}") from None
        except RuntimeError as exc:
            raise UpstreamError(f"vllm failed: {exc}", retryable=True) from None
        finally:
            if not finished:
                await self._engine.abort(request_id)

    async def chat(self, req: GenerationRequest) -> GenerationResult:
        last: Any = None
        async for out in self._generate(req):
            last = out
        assert last is not None
        choice = last.outputs[0]
        logprobs = None
        if req.logprobs is not None:
            scored = list(last.prompt_logprobs or []) if req.echo else []
            ids = list(last.prompt_token_ids) if req.echo else []
            logprobs = _to_logprobs(
                [*ids, *choice.token_ids], [*scored, *(choice.logprobs or [])], self._tokenizer
            )
        text = choice.text
        if req.echo:
            text = self._prompt(req) + text
        result = GenerationResult(
            text=text,
            finish_reason="length" if choice.finish_reason == "length" else "stop",
            usage=Usage(
                prompt_tokens=len(last.prompt_token_ids), completion_tokens=len(choice.token_ids)
            ),
            logprobs=logprobs,
        )
        parser = answer_parser(req, self._tool_parser)
        return result if parser is None else parse_result(result, parser)

    async def stream(self, req: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        if self._engine is None:
            await self.start()  # the tool parser is known once the tokenizer is loaded
        chunks = maybe_parse_stream(self._text_chunks(req), answer_parser(req, self._tool_parser))
        async with contextlib.aclosing(chunks):  # an early close cancels the generation now
            async for chunk in chunks:
                yield chunk

    async def _text_chunks(self, req: GenerationRequest) -> AsyncGenerator[GenerationChunk, None]:
        sent = 0
        async for out in self._generate(req):
            choice = out.outputs[0]
            delta, sent = choice.text[sent:], len(choice.text)
            if out.finished:
                yield GenerationChunk(
                    text=delta,
                    finish_reason="length" if choice.finish_reason == "length" else "stop",
                    usage=Usage(
                        prompt_tokens=len(out.prompt_token_ids),
                        completion_tokens=len(choice.token_ids),
                    ),
                )
            elif delta:
                yield GenerationChunk(text=delta)


def _to_logprobs(ids: list[int], scored: list[Any], tokenizer: Any) -> list[TokenLogprob]:
    out: list[TokenLogprob] = []
    offset = 0
    for token_id, entry in zip(ids, scored, strict=False):
        text = tokenizer.decode([token_id])
        if entry is None:  # the first prompt token has no logprob
            out.append(TokenLogprob(token=text, logprob=None, offset=offset))
        else:
            chosen = entry.get(token_id)
            top = {(lp.decoded_token or ""): lp.logprob for lp in entry.values()}
            value = chosen.logprob if chosen is not None else None
            out.append(TokenLogprob(token=text, logprob=value, top=top, offset=offset))
        offset += len(text)
    return out
