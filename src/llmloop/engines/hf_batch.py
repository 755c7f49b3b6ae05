"""The running decode batch of the hf engine: rows, their shared KV cache, prefill, step, leave.

Continuous batching at the decode-step level: new rows are prefilled as a left-padded group and
their KV cache is merged into the running batch (padding on the left of whichever side is
shorter, masked out by the attention mask; each row keeps its own position ids); every
``step`` runs one forward pass for all rows; finished or cancelled rows leave by
``index_select`` and all-padding columns are trimmed. Each cache layer is a "slab" with spare
room, so a decode step writes its keys in place instead of re-concatenating the whole cache.
Rows with a grammar (structured output) are listed in ``constrained`` whenever the batch
changes; ``constrain`` masks just their logits, so an unconstrained batch does no grammar work.
Rows with a ``logit_bias`` are listed in ``biased`` the same way, and ``add_bias`` adds theirs.
It does not own a thread, queues or text: the scheduler in ``hf_worker.py`` drives it.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llmloop.core.chat import SamplingParams
from llmloop.engines.detokenize import TextStream
from llmloop.engines.sampling import BatchSampler, SamplingRow, gather_logprobs
from llmloop.engines.structured import RowGrammar, TokenMask

if TYPE_CHECKING:
    import torch

BASE_ADAPTER = "__base__"
_CACHE_ARGUMENT: dict[type, str] = {}
_SLAB_SPARE = 64  # decode steps a cache layer can take before it is copied into a larger slab


def cache_argument(model_cls: type) -> str:
    """The forward argument that takes the KV cache: ``cache`` from transformers 5.24 on
    (``past_key_values`` is deprecated there), ``past_key_values`` before. A wrapper whose
    forward takes ``**kwargs`` (PEFT) passes either on: the installed transformers decides."""
    name = _CACHE_ARGUMENT.get(model_cls)
    if name is None:
        forward = getattr(model_cls, "forward", None)
        params = inspect.signature(forward).parameters if forward is not None else {}
        if "cache" in params or "past_key_values" in params:
            name = "cache" if "cache" in params else "past_key_values"
        else:
            name = "cache" if _transformers_renamed_cache() else "past_key_values"
        _CACHE_ARGUMENT[model_cls] = name
    return name


@functools.cache
def _transformers_renamed_cache() -> bool:
    from transformers import LlamaForCausalLM

    return "cache" in inspect.signature(LlamaForCausalLM.forward).parameters


@dataclass
class TokenScore:
    """The log-prob of one token and its best alternatives (ids, turned into text later)."""

    token_id: int
    logprob: float | None
    top: list[tuple[int, float]]


@dataclass
class Row:
    """One request inside the engine: its prompt, settings, progress and output channel."""

    prompt_ids: list[int]
    params: SamplingParams
    max_new_tokens: int
    channel: Any  # (event loop, asyncio.Queue) the scheduler posts RowOutputs to
    adapter: str = BASE_ADAPTER
    logprobs: int | None = None
    echo: bool = False
    generator: torch.Generator | None = None
    grammar: RowGrammar | None = None  # structured output: the grammar the tokens must follow
    logit_bias: tuple[torch.Tensor, torch.Tensor] | None = None  # (token ids, biases) on device
    min_new_tokens: int = 0  # end-of-sequence is masked until this many tokens (min_tokens)
    output_ids: list[int] = field(default_factory=list)
    text: TextStream = field(default_factory=TextStream)
    scores: list[TokenScore] = field(default_factory=list)
    prompt_scores: list[TokenScore] = field(default_factory=list)
    scores_sent: int = 0  # scores already streamed with a text delta
    chars_scored: int = 0  # characters of those scores' tokens (the next one's offset)
    cancelled: bool = False  # set from the event loop when the client goes away
    finish_reason: str | None = None

    def sampling_row(self) -> SamplingRow:
        return SamplingRow(self.params, self.generator, self.prompt_ids, self.output_ids)


class DecodeBatch:
    """Rows decoding together over one KV cache on one model."""

    def __init__(self, model: Any, vocab_size: int, use_adapters: bool) -> None:
        import torch

        self.model = model
        self.vocab_size = vocab_size
        self.use_adapters = use_adapters
        self.device: torch.device = next(model.parameters()).device
        self.rows: list[Row] = []
        self.cache: Any = None  # a transformers DynamicCache whose layers we edit on join/leave
        self.mask = torch.zeros(0, 0, dtype=torch.long, device=self.device)
        self.padded = False  # whether any row has padding (else the mask can be left out)
        self.positions = torch.zeros(0, dtype=torch.long, device=self.device)
        self.last_tokens = torch.zeros(0, dtype=torch.long, device=self.device)
        self.sampler = BatchSampler([], vocab_size, self.device)
        self.constrained: list[int] = []  # indices of rows with a grammar
        self.biased: list[int] = []  # indices of rows with a logit bias
        self.floored: list[int] = []  # indices of rows with a minimum length
        self.token_mask = TokenMask(vocab_size)

    def __len__(self) -> int:
        return len(self.rows)

    def _forward(
        self, ids: Any, mask: Any, positions: Any, cache: Any, rows: list[Row], keep: int
    ) -> Any:
        kwargs: dict[str, Any] = {}
        if self.use_adapters:
            kwargs["adapter_names"] = [r.adapter for r in rows]
        kwargs[cache_argument(type(self.model))] = cache
        return self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=keep,
            **kwargs,
        )

    def prefill(self, rows: list[Row], pad_id: int) -> tuple[Any, list[list[TokenScore]]]:
        """Run the prompts of ``rows`` and merge them into the batch; return last logits."""
        import torch
        from transformers import DynamicCache

        width = max(len(r.prompt_ids) for r in rows)
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, width - len(row.prompt_ids) :] = torch.tensor(row.prompt_ids)
            mask[i, width - len(row.prompt_ids) :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        scoring = any(r.echo and r.logprobs is not None for r in rows)
        cache = DynamicCache()
        out = self._forward(ids, mask, positions, cache, rows, 0 if scoring else 1)
        prompt_scores = [
            _score_prompt(out.logits[i], row) if row.echo and row.logprobs is not None else []
            for i, row in enumerate(rows)
        ]
        self._merge(rows, cache, mask, positions[:, -1] + 1)
        return out.logits[:, -1, :].float(), prompt_scores

    def _merge(self, rows: list[Row], cache: Any, mask: Any, next_pos: Any) -> None:
        import torch
        import torch.nn.functional as F

        if not self.rows:
            self.cache, self.mask, self.positions = _slab_cache(cache), mask, next_pos
        else:
            old_len, new_len = self.mask.shape[1], mask.shape[1]
            grow_old, grow_new = max(0, new_len - old_len), max(0, old_len - new_len)

            def pad(t: torch.Tensor, n: int) -> torch.Tensor:
                return F.pad(t, (0, 0, n, 0)) if n else t

            for old, new in zip(self.cache.layers, cache.layers, strict=True):
                old.set(
                    torch.cat([pad(old.keys, grow_old), pad(new.keys, grow_new)]),
                    torch.cat([pad(old.values, grow_old), pad(new.values, grow_new)]),
                )
            self.mask = torch.cat([F.pad(self.mask, (grow_old, 0)), F.pad(mask, (grow_new, 0))])
            self.positions = torch.cat([self.positions, next_pos])
        self.padded = not bool(self.mask.all())
        self.rows.extend(rows)

    def set_last_tokens(self, tokens: torch.Tensor) -> None:
        """Remember the tokens just sampled: they are the next step's input."""
        self.last_tokens = tokens

    def step(self) -> Any:
        """One forward pass for every row; returns the next-token logits ``[rows, vocab]``."""
        import torch

        ones = torch.ones(len(self.rows), 1, dtype=torch.long, device=self.device)
        self.mask = torch.cat([self.mask, ones], dim=1)
        out = self._forward(
            self.last_tokens.unsqueeze(1),
            self.mask if self.padded else None,  # no mask: plain causal attention, less work
            self.positions.unsqueeze(1),
            self.cache,
            self.rows,
            1,
        )
        self.positions = self.positions + 1
        return out.logits[:, -1, :].float()

    def refresh_sampler(self) -> None:
        """Rebuild the per-row sampling tensors (after rows joined or left)."""
        self.sampler = BatchSampler(
            [r.sampling_row() for r in self.rows], self.vocab_size, self.device
        )
        self.constrained = constrained_indices(self.rows)
        self.biased = biased_indices(self.rows)
        self.floored = floored_indices(self.rows)

    def constrain(self, logits: Any, rows: list[Row], indices: list[int]) -> None:
        """Mask ``logits`` (one row per ``rows``) to what the grammars at ``indices`` allow."""
        grammars = [(i, rows[i].grammar) for i in indices]
        self.token_mask.apply(logits, [(i, g) for i, g in grammars if g is not None])

    @staticmethod
    def add_bias(logits: Any, rows: list[Row], indices: list[int]) -> None:
        """Add their ``logit_bias`` to the ``logits`` (one row per ``rows``) at ``indices``."""
        for i in indices:
            bias = rows[i].logit_bias
            if bias is not None:
                logits[i].index_add_(0, bias[0], bias[1])

    @staticmethod
    def hold_off_eos(logits: Any, rows: list[Row], indices: list[int], eos: Any) -> None:
        """Mask the ``eos`` ids (a tensor) in ``logits`` for the rows at ``indices`` that are
        still short of their minimum length."""
        for i in indices:
            row = rows[i]
            if len(row.output_ids) < row.min_new_tokens:
                logits[i, eos] = float("-inf")

    def keep(self, keep: list[int]) -> None:
        """Keep only the rows at ``keep`` (in order); trim all-padding cache columns."""
        import torch

        if len(keep) == len(self.rows):
            return
        self.rows = [self.rows[i] for i in keep]
        if not keep:
            self.cache = None
            self.mask = self.mask[:0, :0]
            self.positions = self.positions[:0]
            self.last_tokens = self.last_tokens[:0]
            return
        index = torch.tensor(keep, dtype=torch.long, device=self.device)
        mask = self.mask.index_select(0, index)
        live = mask.any(dim=0).nonzero()
        start = int(live[0]) if len(live) else 0
        self.mask = mask[:, start:]
        self.padded = not bool(self.mask.all())
        for layer in self.cache.layers:
            layer.set(
                layer.keys.index_select(0, index)[:, :, start:],
                layer.values.index_select(0, index)[:, :, start:],
            )
        self.positions = self.positions.index_select(0, index)
        self.last_tokens = self.last_tokens.index_select(0, index)


def constrained_indices(rows: list[Row]) -> list[int]:
    """Where in ``rows`` the rows with a grammar are."""
    return [i for i, row in enumerate(rows) if row.grammar is not None]


def floored_indices(rows: list[Row]) -> list[int]:
    """Where in ``rows`` the rows with a minimum length (and no grammar, which must be able to
    end) are."""
    return [i for i, row in enumerate(rows) if row.min_new_tokens and row.grammar is None]


def biased_indices(rows: list[Row]) -> list[int]:
    """Where in ``rows`` the rows with a logit bias are."""
    return [i for i, row in enumerate(rows) if row.logit_bias is not None]


def uneditable_cache_layers(config: Any) -> list[str]:
    """The cache layer types of a model with this ``config`` that the batch cannot edit.

    Joining, leaving and trimming edit every layer's keys and values along the sequence; the
    recurrent state of a linear-attention or state-space layer (Mamba, Qwen3-Next, Falcon-H1)
    and a sparse-attention indexer have no such axis, so left padding and ``index_select`` would
    corrupt them. A sliding-window layer is kept whole: the model's mask applies the window."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

    try:
        layers = DynamicCache(config=config).layers
    except Exception:  # a config transformers lays no cache out for: prefill's plain one serves
        return []
    editable = (DynamicLayer, DynamicSlidingWindowLayer)
    return sorted({type(layer).__name__ for layer in layers if type(layer) not in editable})


@functools.cache
def _slab_layer_class() -> Any:
    """Built on first use: transformers is imported only when the hf engine runs."""
    from transformers.cache_utils import DynamicLayer

    class SlabLayer(DynamicLayer):
        """Appends into spare capacity instead of re-concatenating the whole cache every step."""

        def set(self, keys: torch.Tensor, values: torch.Tensor) -> None:
            import torch.nn.functional as F

            self.buf_keys = F.pad(keys, (0, 0, 0, _SLAB_SPARE))
            self.buf_values = F.pad(values, (0, 0, 0, _SLAB_SPARE))
            self.length = keys.shape[-2]
            self.keys = self.buf_keys[:, :, : self.length]
            self.values = self.buf_values[:, :, : self.length]
            self.dtype, self.device, self.is_initialized = keys.dtype, keys.device, True

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> Any:
            n, q = self.length, key_states.shape[-2]
            if n + q > self.buf_keys.shape[-2]:  # full: copy into a slab with new spare room
                self.set(self.buf_keys[:, :, :n], self.buf_values[:, :, :n])
            self.buf_keys[:, :, n : n + q] = key_states
            self.buf_values[:, :, n : n + q] = value_states
            self.length = n + q
            self.keys = self.buf_keys[:, :, : self.length]
            self.values = self.buf_values[:, :, : self.length]
            return self.keys, self.values

    return SlabLayer


def _slab_cache(cache: Any) -> Any:
    """Swap a prefill cache's layers for slab layers (same tensors, spare room to grow into)."""
    layers = []
    for layer in cache.layers:
        new = _slab_layer_class()()
        new.set(layer.keys, layer.values)
        layers.append(new)
    cache.layers = layers
    return cache


def _score_prompt(logits: Any, row: Row) -> list[TokenScore]:
    """Log-probs of the prompt tokens under the model (echo); the first has none."""
    import torch

    ids = row.prompt_ids
    n = len(ids)
    predicted = logits[-n:-1]  # the logits at position i predict token i + 1
    target = torch.tensor(ids[1:], dtype=torch.long, device=logits.device)
    scores = [TokenScore(ids[0], None, [])]
    if n > 1:
        chosen, tops = gather_logprobs(predicted, target, row.logprobs or 0)
        scores.extend(
            TokenScore(t, lp, top) for t, lp, top in zip(ids[1:], chosen, tops, strict=True)
        )
    return scores
