"""The hf engine: a Hugging Face transformers model served with continuous batching (CPU or GPU).

``HFEngine`` is the asyncio face: it parses its options (``HFEngineConfig``), loads the model,
tokenizer and LoRA adapters, turns a request into prompt ids (the tokenizer's chat template for
``messages`` and tools, rendered by ``chat_template.py``), and hands rows to the worker thread in
``hf_worker.py``, which owns the model and runs the decode loop; results come back through one
asyncio queue per request. Closing a stream early marks its row cancelled and the worker drops it
at the next step. Answers to requests with tools go through the tool parser
(``tool_results.py``); a JSON ``response_format``, or a forced ``tool_choice`` (which wins over
it, ``tool_grammar.py``), is compiled to a grammar (``structured.py``) that masks the row's logits
at every step. Completion prompts may come as token ids. What fits the context is
``context_window.py``'s rule (vLLM's). ``logit_bias`` is added to the row's logits; ``suffix`` and
``best_of`` are refused (``passthrough.py``). A streamed ``echo`` sends the prompt first.
Embeddings are the mean-pooled, L2-normalised last hidden state (an empty or over-long input is a
400). It does not speak HTTP or pick models by name.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import warnings
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llmloop.core.chat import (
    EmbeddingResult,
    EngineCapabilities,
    EngineSpec,
    GenerationChunk,
    GenerationRequest,
    GenerationResult,
    Usage,
)
from llmloop.engines.base import Engine
from llmloop.engines.chat_template import render_chat, template_text
from llmloop.engines.context_window import answer_budget, check_inputs_fit
from llmloop.engines.detokenize import TextStream
from llmloop.engines.hf_batch import BASE_ADAPTER, Row, uneditable_cache_layers
from llmloop.engines.hf_worker import RowOutput, Scheduler
from llmloop.engines.passthrough import logit_bias, min_new_tokens, refuse_unhonoured
from llmloop.engines.structured import Grammars, structured_available
from llmloop.engines.tool_grammar import ToolGrammarSpec, request_grammar
from llmloop.engines.tool_parsers import (
    TOOL_PARSER_HELP,
    ToolParserName,
    ToolParserOption,
    configured_tool_parser,
    known_tool_parser,
)
from llmloop.engines.tool_results import answer_parser, maybe_parse_stream, parse_result
from llmloop.errors import (
    BadRequestError,
    ConfigError,
    InvalidInputError,
    NotFoundError,
    require_extra,
)

DEFAULT_ADAPTER = "default"
_log = logging.getLogger(__name__)


class HFEngineConfig(BaseModel):
    """Options of the hf engine (``EngineSpec.options``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device: str = Field(default="cpu", description="torch device: 'cpu', 'cuda', 'cuda:1', 'auto'.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto", description="Weights dtype; 'auto' is float32 on CPU, bfloat16 on GPU."
    )
    max_batch_size: int = Field(default=32, ge=1, le=1024, description="Rows decoding at once.")
    max_queue: int = Field(
        default=1024, ge=1, description="Requests waiting for a batch slot before OverloadedError."
    )
    num_threads: int | None = Field(
        default=None, ge=1, description="torch.set_num_threads for CPU inference (None: torch's)."
    )
    max_context: int | None = Field(
        default=None, ge=8, description="Prompt + output token limit (default: the model's)."
    )
    adapters: dict[str, str] = Field(
        default_factory=dict, description="LoRA adapters to preload: name -> local PEFT dir."
    )
    ignore_eos: bool = Field(
        default=False, description="Keep generating past end-of-sequence (fixed-length benchmarks)."
    )
    attn_implementation: str = Field(
        default="sdpa",
        description="transformers attention backend; left unset, sdpa where the architecture "
        "has it and transformers' choice (eager) where not.",
    )
    seed: int | None = Field(default=None, description="Seed of the unseeded requests' sampling.")
    tool_parser: ToolParserOption = Field(default="auto", description=TOOL_PARSER_HELP)


def parse_config(options: dict[str, object]) -> HFEngineConfig:
    """Validate engine options, naming every bad field in one ConfigError."""
    try:
        return HFEngineConfig.model_validate(options)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"bad hf engine options: {problems}") from None


class HFEngine(Engine):
    """transformers model + tokenizer + continuous-batching worker thread."""

    kind = "hf"
    config_cls = HFEngineConfig

    def __init__(self, spec: EngineSpec) -> None:
        super().__init__(spec)
        self.config = parse_config(spec.options)
        if not spec.model:
            raise ConfigError("the hf engine needs 'model': a local model directory or hub id")
        self._start_lock = asyncio.Lock()
        self._scheduler: Scheduler | None = None
        self._tokenizer: Any = None
        self._model: Any = None
        self._adapters: dict[str, str] = {}  # name -> path of loaded adapters
        self._grammars: Grammars | None = None  # grammar compiler (structured.py)
        self._max_context = 0
        self._vocab_size = 0
        self._tool_parser: ToolParserName | None = known_tool_parser(self.config.tool_parser)

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        async with self._start_lock:
            if self._scheduler is None:
                await asyncio.to_thread(self._load)

    def _load(self) -> None:
        require_extra("torch", "hf", "the hf engine")
        require_extra("transformers", "hf", "the hf engine")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        cfg = self.config
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        device = cfg.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
        chosen = dtype.get(cfg.dtype, torch.float32 if device == "cpu" else torch.bfloat16)
        # Left unset, the backend is transformers' choice: sdpa where the architecture has it,
        # eager where it has not (Gemma 2, Bloom, MPT), which forcing sdpa would refuse to load.
        chosen_attn = (
            cfg.attn_implementation if "attn_implementation" in cfg.model_fields_set else None
        )
        try:
            tokenizer = AutoTokenizer.from_pretrained(self.spec.model)
            model = AutoModelForCausalLM.from_pretrained(
                self.spec.model, dtype=chosen, attn_implementation=chosen_attn
            )
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load model '{self.spec.model}': {exc}") from None
        attn = getattr(model.config, "_attn_implementation", None)
        if chosen_attn is None and attn != cfg.attn_implementation:
            _log.info("hf engine: %s has no %s attention; using %s", type(model).__name__,
                      cfg.attn_implementation, attn)  # fmt: skip
        if unsupported := uneditable_cache_layers(model.config):
            raise ConfigError(
                f"the hf engine cannot serve '{self.spec.model}': its KV cache has "
                f"{', '.join(unsupported)} layers, whose state continuous batching cannot pad, "
                "join or split; serve it with the vllm engine"
            )
        model = model.to(device).eval()  # type: ignore[arg-type]
        if tokenizer.pad_token is None:  # padding is needed for embedding batches
            tokenizer.pad_token = tokenizer.eos_token
        self._max_context = cfg.max_context or int(
            getattr(model.config, "max_position_embeddings", 0) or 4096
        )
        to_load = dict(cfg.adapters)
        if self.spec.adapter:
            to_load[DEFAULT_ADAPTER] = self.spec.adapter
        for name, path in to_load.items():
            model = self._attach_adapter(model, name, path)
        eos = model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if tokenizer.eos_token_id is not None:
            eos_ids.add(tokenizer.eos_token_id)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(eos_ids or {0})
        self._tokenizer, self._model = tokenizer, model
        self._tool_parser = configured_tool_parser(cfg.tool_parser, template_text(tokenizer))
        vocab_size = self._vocab_size = int(model.get_output_embeddings().weight.shape[0])
        # A grammar ends on a real EOS even under ignore_eos: nothing may follow complete JSON.
        self._grammars = Grammars(tokenizer, vocab_size, eos_ids)
        self._scheduler = Scheduler(
            model,
            tokenizer,
            max_batch_size=cfg.max_batch_size,
            max_queue=cfg.max_queue,
            eos_ids=set() if cfg.ignore_eos else eos_ids,
            pad_id=pad,
            vocab_size=vocab_size,
            use_adapters=bool(self._adapters),
        )
        if cfg.seed is not None:
            torch.manual_seed(cfg.seed)
        self._scheduler.start()

    def _attach_adapter(self, model: Any, name: str, path: str) -> Any:
        """Load a PEFT LoRA adapter under ``name`` (wrapping the base model the first time)."""
        require_extra("peft", "hf", "LoRA adapters in the hf engine")
        from peft import PeftModel

        if not os.path.isfile(os.path.join(path, "adapter_config.json")):
            raise NotFoundError(f"no PEFT adapter at '{path}' (adapter_config.json missing)")
        with warnings.catch_warnings():  # peft reads a renamed property: not the user's to fix
            warnings.filterwarnings(
                "ignore", r"`is_gradient_checkpointing` is deprecated", FutureWarning
            )
            if isinstance(model, PeftModel):
                model.load_adapter(path, adapter_name=name)
            else:
                model = PeftModel.from_pretrained(model, path, adapter_name=name)
        model.eval()
        self._adapters[name] = path
        return model

    async def aclose(self) -> None:
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None:
            await asyncio.to_thread(scheduler.stop)
        self._model = self._tokenizer = None

    @property
    def capabilities(self) -> EngineCapabilities:
        return EngineCapabilities(
            embeddings=True,
            logprobs=True,
            adapters=True,
            tools=self._tool_parser is not None,
            structured_output=structured_available(),
            token_prompts=True,
            max_batch_size=self.config.max_batch_size,
            max_context=self._max_context or self.config.max_context,
        )

    # -- requests ----------------------------------------------------------------------------
    def _prompt_ids(self, req: GenerationRequest) -> list[int]:
        tok = self._tokenizer
        if req.messages is not None:
            if getattr(tok, "chat_template", None):
                text = render_chat(tok, req)
                ids = list(tok(text, add_special_tokens=False)["input_ids"])
            elif req.wants_tools:
                raise InvalidInputError("this model has no chat template, so it cannot take tools")
            else:  # a base model without a template: a plain transcript
                text = "".join(f"{m.role}: {m.content}\n" for m in req.messages) + "assistant:"
                ids = list(tok(text)["input_ids"])
        elif req.prompt_ids is not None:
            ids = list(req.prompt_ids)
            if max(ids) >= self._vocab_size:
                raise BadRequestError(f"token id {max(ids)} is outside this model's vocabulary "
                                      f"of {self._vocab_size}", param="prompt")  # fmt: skip
        else:
            ids = list(tok(req.prompt)["input_ids"])
        if not ids and tok.bos_token_id is not None:
            ids = [tok.bos_token_id]
        if not ids:
            raise InvalidInputError("the prompt is empty and the tokenizer has no BOS token")
        return ids

    async def _adapter_name(self, req: GenerationRequest) -> str:
        if req.adapter is None:
            return DEFAULT_ADAPTER if DEFAULT_ADAPTER in self._adapters else BASE_ADAPTER
        if req.adapter in self._adapters:
            return req.adapter
        path = os.path.abspath(req.adapter)
        name = "a" + hashlib.sha256(path.encode()).hexdigest()[:16]
        if name in self._adapters:
            return name
        if not os.path.isdir(path):
            raise NotFoundError(f"unknown adapter '{req.adapter}': not loaded and not a directory")
        scheduler = self._scheduler
        assert scheduler is not None

        def attach() -> None:
            model = self._attach_adapter(scheduler.batch.model, name, path)
            scheduler.batch.model, scheduler.batch.use_adapters = model, True

        await asyncio.wrap_future(scheduler.call(attach))
        return name

    async def _submit(self, req: GenerationRequest) -> tuple[Row, asyncio.Queue[RowOutput]]:
        await self.start()
        assert self._scheduler is not None
        refuse_unhonoured(req, self.kind)
        biases = logit_bias(req, self._vocab_size)
        ids = self._prompt_ids(req)
        max_new_tokens = answer_budget(req, len(ids), self._max_context)
        least = min_new_tokens(req, max_new_tokens)
        assert self._grammars is not None
        spec = request_grammar(req, answer_parser(req, self._tool_parser))
        grammar = await self._grammars.row_grammar(spec)
        adapter = await self._adapter_name(req)
        generator = bias = None
        if req.sampling.seed is not None or biases:
            import torch

            device = self._scheduler.batch.device
            if req.sampling.seed is not None:
                generator = torch.Generator(device=device).manual_seed(req.sampling.seed)
            if biases:
                bias = (torch.tensor(list(biases), dtype=torch.long, device=device),
                        torch.tensor(list(biases.values()), device=device))  # fmt: skip
        queue: asyncio.Queue[RowOutput] = asyncio.Queue()
        row = Row(
            prompt_ids=ids,
            params=req.sampling,
            max_new_tokens=max_new_tokens,
            channel=(asyncio.get_running_loop(), queue),
            adapter=adapter,
            logprobs=req.logprobs,
            echo=req.echo,
            generator=generator,
            grammar=grammar,
            logit_bias=bias,
            min_new_tokens=least,
            text=TextStream(  # a tool grammar's markers may be special tokens: keep them
                stops=tuple(s for s in req.sampling.stop if s),
                keep_special=isinstance(spec, ToolGrammarSpec),
            ),
        )
        self._scheduler.submit(row)
        return row, queue

    async def _outputs(
        self, req: GenerationRequest, echo_first: bool = False
    ) -> AsyncIterator[RowOutput]:
        """The row's outputs; with ``echo_first``, the prompt text once the row is submitted
        (so a refused request still raises before anything is sent)."""
        row, queue = await self._submit(req)
        try:
            if echo_first:
                yield RowOutput(text=self._echo_text(req))
            while True:
                out = await queue.get()
                if out.error is not None:
                    raise out.error
                yield out
                if out.finish_reason is not None:
                    return
        finally:
            # Reached on normal end too (harmless): the worker drops cancelled rows next step.
            row.cancelled = True

    async def chat(self, req: GenerationRequest) -> GenerationResult:
        parts: list[str] = []
        last = RowOutput()
        async for out in self._outputs(req):
            parts.append(out.text)
            last = out
        echo = self._echo_text(req) if req.echo else ""
        text = echo + "".join(parts)
        logprobs = None
        if req.logprobs is not None:
            answer = last.logprobs or []
            if echo:  # text_offset counts into the echoed prompt + the answer, as OpenAI's
                answer = [lp.model_copy(update={"offset": lp.offset + len(echo)}) for lp in answer]
            logprobs = [*(last.prompt_logprobs or []), *answer]
        result = GenerationResult(
            text=text,
            finish_reason=last.finish_reason or "stop",  # type: ignore[arg-type]
            usage=last.usage or Usage(),
            logprobs=logprobs,
        )
        parser = answer_parser(req, self._tool_parser)
        return result if parser is None else parse_result(result, parser)

    def _echo_text(self, req: GenerationRequest) -> str:
        if req.prompt is not None and req.prompt_ids is None:
            return req.prompt
        return str(self._tokenizer.decode(self._prompt_ids(req), skip_special_tokens=False))

    async def stream(self, req: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        await self.start()  # the tool parser is known once the tokenizer is loaded
        chunks = maybe_parse_stream(self._text_chunks(req), answer_parser(req, self._tool_parser))
        async with contextlib.aclosing(chunks):  # an early close cancels the generation now
            async for chunk in chunks:
                yield chunk

    async def _text_chunks(self, req: GenerationRequest) -> AsyncGenerator[GenerationChunk, None]:
        sent = 0  # logprobs streamed so far; the last output holds them all
        async for out in self._outputs(req, echo_first=req.echo):
            if out.finish_reason is not None:
                rest = out.logprobs[sent:] if out.logprobs is not None else None
                yield GenerationChunk(
                    text=out.text,
                    finish_reason=out.finish_reason,  # type: ignore[arg-type]
                    usage=out.usage,
                    logprobs=rest or None,
                )
            elif out.text:
                sent += len(out.logprobs or ())
                yield GenerationChunk(text=out.text, logprobs=out.logprobs)

    async def embed(self, texts: list[str]) -> EmbeddingResult:
        if not texts:
            raise InvalidInputError("embed needs at least one text")
        for i, text in enumerate(texts):
            if not text:  # OpenAI's 400: an empty text has no tokens to pool
                raise BadRequestError(f"'$.input' is invalid: input {i} is an empty string, "
                                      "which has no embedding", param="input")  # fmt: skip
        await self.start()
        assert self._scheduler is not None
        # Encode here, on the event loop like every other encode: a fast tokenizer whose padding
        # settings change in one thread while another decodes raises "Already borrowed".
        ids = self._tokenizer(texts)["input_ids"]
        for i, row in enumerate(ids):
            if not row:
                raise BadRequestError(f"'$.input' is invalid: input {i} has no tokens",
                                      param="input")  # fmt: skip
        check_inputs_fit([len(row) for row in ids], self._max_context)
        enc = _padded(ids, self._tokenizer.pad_token_id, self._tokenizer.padding_side == "left")
        scheduler = self._scheduler
        vectors, count = await asyncio.wrap_future(scheduler.call(lambda: self._embed(enc)))
        return EmbeddingResult(vectors=vectors, usage=Usage(prompt_tokens=count))

    def _embed(self, enc: Any) -> tuple[list[list[float]], int]:
        """Runs on the worker thread: mean-pool the last hidden state over real tokens."""
        import torch

        assert self._scheduler is not None
        batch = self._scheduler.batch
        enc = {name: t.to(batch.device) for name, t in enc.items()}
        texts = enc["input_ids"]
        kwargs: dict[str, Any] = {}
        if batch.use_adapters:
            kwargs["adapter_names"] = [BASE_ADAPTER] * len(texts)
        # Positions count real tokens only, as in prefill: under left padding a model with
        # absolute positions (GPT-2) would otherwise embed a text differently in each batch.
        positions = (enc["attention_mask"].cumsum(dim=1) - 1).clamp(min=0)
        out = batch.model(
            **enc, position_ids=positions, output_hidden_states=True, logits_to_keep=1, **kwargs
        )
        hidden = out.hidden_states[-1].float()
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return pooled.tolist(), int(enc["attention_mask"].sum())


def _padded(ids: list[list[int]], pad_id: int, left: bool) -> dict[str, Any]:
    """``input_ids`` and ``attention_mask`` tensors of ``ids`` padded to one width, on the side
    the tokenizer pads (what ``tokenizer(texts, padding=True)`` builds, from ids checked first)."""
    import torch

    width = max(len(row) for row in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(ids), width, dtype=torch.long)
    for i, row in enumerate(ids):
        cols = slice(width - len(row), width) if left else slice(0, len(row))
        input_ids[i, cols] = torch.tensor(row, dtype=torch.long)
        mask[i, cols] = 1
    return {"input_ids": input_ids, "attention_mask": mask}
