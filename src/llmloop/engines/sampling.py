"""Batched next-token sampling for a decode batch whose rows each carry their own SamplingParams.

One call turns a ``[rows, vocab]`` logits tensor into one token per row with tensor ops over the
whole batch: greedy rows (temperature 0) take the argmax, the others are scaled by their own
temperature, cut by their own top-k and top-p, penalised by their own repetition, frequency and
presence penalties, and drawn with the exponential-race trick so that a row with a ``seed`` uses
its own generator and stays reproducible whatever else shares the batch. It also gathers
log-probs. It knows nothing of models, caches or text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from llmloop.core.chat import SamplingParams

if TYPE_CHECKING:
    import torch

_MIN_TEMPERATURE = 1e-5


@dataclass
class SamplingRow:
    """What the sampler needs to know about one row: its params, generator and token history."""

    params: SamplingParams
    generator: torch.Generator | None
    prompt_ids: list[int]
    output_ids: list[int]


class BatchSampler:
    """Per-row sampling settings packed into tensors; rebuilt whenever the batch changes."""

    def __init__(self, rows: Sequence[SamplingRow], vocab_size: int, device: torch.device) -> None:
        import torch

        self.rows = list(rows)
        self.vocab_size = vocab_size
        params = [r.params for r in self.rows]
        self.greedy = torch.tensor([p.temperature == 0.0 for p in params], device=device)
        self.all_greedy = bool(self.greedy.all())
        temps = [max(p.temperature, _MIN_TEMPERATURE) for p in params]
        self.temperature = torch.tensor(temps, device=device).unsqueeze(1)
        self.any_temperature = any(t != 1.0 for t in temps)
        self.top_p = torch.tensor([p.top_p for p in params], device=device).unsqueeze(1)
        self.any_top_p = any(p.top_p < 1.0 for p in params)
        top_ks = [p.top_k if p.top_k else vocab_size for p in params]
        self.top_k = torch.tensor([min(k, vocab_size) for k in top_ks], device=device)
        self.any_top_k = any(k < vocab_size for k in top_ks)
        self.seeded = [i for i, r in enumerate(self.rows) if r.generator is not None]
        self.any_penalty = any(
            p.frequency_penalty or p.presence_penalty or (p.repetition_penalty or 1.0) != 1.0
            for p in params
        )
        self.counts: torch.Tensor | None = None
        self.seen: torch.Tensor | None = None
        if self.any_penalty:
            self._build_penalties(params, device)

    def _build_penalties(self, params: list[SamplingParams], device: torch.device) -> None:
        import torch

        n = len(self.rows)
        self.frequency = torch.tensor([p.frequency_penalty for p in params], device=device)
        self.presence = torch.tensor([p.presence_penalty for p in params], device=device)
        reps = [p.repetition_penalty or 1.0 for p in params]
        self.repetition = torch.tensor(reps, device=device).unsqueeze(1)
        self.counts = torch.zeros(n, self.vocab_size, device=device)
        self.seen = torch.zeros(n, self.vocab_size, dtype=torch.bool, device=device)
        for i, row in enumerate(self.rows):
            if row.output_ids:
                out = torch.tensor(row.output_ids, device=device)
                self.counts[i].scatter_add_(0, out, torch.ones_like(out, dtype=torch.float))
                self.seen[i, out] = True
            if row.prompt_ids:
                self.seen[i, torch.tensor(row.prompt_ids, device=device)] = True

    def _penalise(self, logits: torch.Tensor) -> torch.Tensor:
        import torch

        assert self.counts is not None and self.seen is not None
        # Repetition penalty (CTRL / transformers semantics) covers prompt and output tokens.
        rep = torch.where(logits < 0, logits * self.repetition, logits / self.repetition)
        logits = torch.where(self.seen, rep, logits)
        # Frequency and presence penalties (OpenAI semantics) cover output tokens only.
        logits = logits - self.frequency.unsqueeze(1) * self.counts
        return logits - self.presence.unsqueeze(1) * (self.counts > 0).to(logits.dtype)

    def sample(self, logits: torch.Tensor) -> torch.Tensor:
        """One token id per row from ``logits`` ``[rows, vocab]`` (float)."""
        import torch

        if self.any_penalty:
            logits = self._penalise(logits)
        greedy_ids = logits.argmax(dim=-1)
        if self.all_greedy:
            return greedy_ids
        if self.any_temperature:
            logits = logits / self.temperature
        if self.any_top_k:
            kth = torch.topk(logits, int(self.top_k.max()), dim=-1).values
            cutoff = kth.gather(1, (self.top_k - 1).unsqueeze(1))
            logits = logits.masked_fill(logits < cutoff, float("-inf"))
        if self.any_top_p:
            logits = self._top_p(logits)
        probs = torch.softmax(logits, dim=-1)
        # Exponential race: argmax(p / E) with E ~ Exp(1) is a draw from p, and lets each seeded
        # row draw its own noise from its own generator.
        noise = torch.empty_like(probs).exponential_()
        for i in self.seeded:
            noise[i].exponential_(generator=self.rows[i].generator)
        sampled = (probs / noise).argmax(dim=-1)
        return torch.where(self.greedy, greedy_ids, sampled)

    def _top_p(self, logits: torch.Tensor) -> torch.Tensor:
        import torch

        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        # Drop a token when the mass before it already reaches top_p (the top token always stays).
        drop_sorted = (cumulative - torch.softmax(sorted_logits, dim=-1)) >= self.top_p
        drop = torch.zeros_like(drop_sorted).scatter(1, order, drop_sorted)
        return logits.masked_fill(drop, float("-inf"))

    def record(self, tokens: torch.Tensor) -> None:
        """Count the just-sampled tokens for the penalties."""
        if self.counts is None or self.seen is None:
            return
        import torch

        index = tokens.unsqueeze(1)
        self.counts.scatter_add_(1, index, torch.ones_like(index, dtype=self.counts.dtype))
        self.seen.scatter_(1, index, True)


def gather_logprobs(
    logits: torch.Tensor, tokens: torch.Tensor, top: int
) -> tuple[list[float], list[list[tuple[int, float]]]]:
    """Log-prob of ``tokens`` under ``logits`` and the ``top`` best.

    ``logits`` are the model's, before temperature and penalties; for a row with a grammar they
    are already masked, so these are log-probs of the constrained distribution, and forbidden
    tokens (log-prob -inf) are left out of the top list.
    """
    import torch

    logp = torch.log_softmax(logits.float(), dim=-1)
    chosen = logp.gather(1, tokens.unsqueeze(1)).squeeze(1).tolist()
    if top <= 0:
        return chosen, [[] for _ in chosen]
    values, ids = torch.topk(logp, top, dim=-1)
    tops = [
        [(t, v) for t, v in zip(i, vs, strict=True) if v != -math.inf]
        for i, vs in zip(ids.tolist(), values.tolist(), strict=True)
    ]
    return chosen, tops
