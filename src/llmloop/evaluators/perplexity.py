"""Perplexity from a model's own per-token log-likelihoods, token-weighted over the corpus.

One concept: how surprised a model is by a text. Log-probs come from a *scorer*, an async
``score(texts) -> list[list[float]]`` giving each text's per-token natural-log probabilities.
Two scorers ship here: one over any :class:`~llmloop.engines.base.Engine` that returns echoed
prompt log-probs (``logprobs=0, echo=True``), and one that runs a local Hugging Face causal LM
in batches with torch. The corpus perplexity is ``exp(-sum(logprobs) / n_tokens)``, so long texts
weigh more than short ones, as in language-model evaluation. It does not generate text.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field

from llmloop.core.chat import GenerationRequest, SamplingParams
from llmloop.core.evals import EvalResult, EvalSample, SampleScore
from llmloop.engines.base import Engine
from llmloop.errors import ConfigError, InvalidInputError, UpstreamError, require_extra
from llmloop.evaluators.base import Evaluator, EvaluatorConfig

LogprobScorer = Callable[[list[str]], Awaitable[list[list[float]]]]


def engine_logprob_scorer(engine: Engine, model: str = "", concurrency: int = 8) -> LogprobScorer:
    """A scorer that asks ``engine`` to echo each text with log-probs and keeps the prompt part.

    The engine must support ``logprobs`` with ``echo``; its first prompt token has no log-prob
    (nothing precedes it) and is left out, as the OpenAI completions API does.
    """
    if concurrency < 1:
        raise InvalidInputError("engine_logprob_scorer: concurrency must be at least 1")
    gate = asyncio.Semaphore(concurrency)

    async def one(text: str) -> list[float]:
        req = GenerationRequest(
            model=model or engine.spec.model,
            prompt=text,
            logprobs=0,
            echo=True,
            sampling=SamplingParams(max_tokens=1, temperature=0.0),
        )
        async with gate:
            result = await engine.chat(req)
        if result.logprobs is None:
            raise UpstreamError(f"engine '{engine.kind}' returned no log-probs for scoring")
        prompt_part = result.logprobs[: result.usage.prompt_tokens]
        return [t.logprob for t in prompt_part if t.logprob is not None]

    async def score(texts: list[str]) -> list[list[float]]:
        return list(await asyncio.gather(*(one(t) for t in texts)))

    return score


class HFLogprobScorer:
    """Per-token log-probs from a local causal LM (transformers), computed in padded batches.

    Batches are right-padded so that real tokens never attend to padding; a BOS token is
    prepended when the tokenizer has one, so the first text token is scored too. A text longer
    than the window (``max_length``, capped at the model's context) is scored in windows that
    overlap by half: every token is scored once, with at least half a window of context, as in
    the transformers perplexity guide; nothing is cut off.
    """

    def __init__(
        self, model_path: str, batch_size: int = 8, max_length: int = 1024, device: str = "cpu"
    ) -> None:
        self.model_path = model_path
        self.batch_size = batch_size
        self.max_length = max_length
        self.device = device
        self._model: Any = None
        self._tokenizer: Any = None

    def _load(self) -> None:
        if self._model is not None:
            return
        require_extra("transformers", "hf", "Perplexity with a local model")
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            self._tokenizer = AutoTokenizer.from_pretrained(self.model_path)
            model = AutoModelForCausalLM.from_pretrained(self.model_path)
            self._model = model.to(self.device)  # type: ignore[arg-type]
        except OSError as exc:
            raise ConfigError(f"cannot load model from '{self.model_path}': {exc}")
        self._model.eval()

    def window(self) -> int:
        """Tokens per forward pass: ``max_length``, at most the model's context length."""
        self._load()
        config = self._model.config
        context = getattr(config, "max_position_embeddings", None) or getattr(
            config, "n_positions", None
        )
        return max(2, min(self.max_length, int(context))) if context else self.max_length

    def _encode(self, text: str) -> list[int]:
        ids: list[int] = self._tokenizer(text, add_special_tokens=True)["input_ids"]
        bos = self._tokenizer.bos_token_id
        if bos is not None and (not ids or ids[0] != bos):
            ids = [bos, *ids]
        return ids

    @staticmethod
    def segments(n_ids: int, window: int) -> list[tuple[int, int, int]]:
        """``(begin, end, first_scored)`` windows over ``n_ids`` tokens, overlapping by half.

        Window ``ids[begin:end]`` scores tokens ``first_scored .. end-1``; token 0 never is.
        """
        stride = max(1, window // 2)
        out, begin, scored = [], 0, 1
        while True:
            end = min(begin + window, n_ids)
            out.append((begin, end, scored))
            if end >= n_ids:
                return out
            begin, scored = begin + stride, end

    def score_sync(self, texts: list[str]) -> list[list[float]]:
        """Blocking: per-token log-probs of each text (token 0, the BOS, is not scored)."""
        window = self.window()
        jobs = []  # (text index, window ids, targets to skip)
        for index, text in enumerate(texts):
            ids = self._encode(text)
            for begin, end, scored in self.segments(len(ids), window):
                if end - begin >= 2:  # one token alone predicts nothing
                    jobs.append((index, ids[begin:end], scored - begin - 1))
        out: list[list[float]] = [[] for _ in texts]
        for start in range(0, len(jobs), self.batch_size):
            batch = jobs[start : start + self.batch_size]
            picked = self._forward([ids for _, ids, _ in batch])
            for (index, ids, skip), row in zip(batch, picked, strict=True):
                out[index] += row[skip : len(ids) - 1]
        return out

    def _forward(self, encoded: list[list[int]]) -> list[list[float]]:
        """Log-prob of each next token of each (right-padded) sequence in one forward pass."""
        import torch

        pad = self._tokenizer.pad_token_id
        pad = pad if pad is not None else 0
        width = max(len(ids) for ids in encoded)
        input_ids = torch.full((len(encoded), width), pad, dtype=torch.long)
        mask = torch.zeros((len(encoded), width), dtype=torch.long)
        for row, ids in enumerate(encoded):
            input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            mask[row, : len(ids)] = 1
        with torch.inference_mode():
            logits = self._model(
                input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device)
            ).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1)
        target = input_ids[:, 1:].to(self.device)
        picked: list[list[float]] = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1).cpu().tolist()
        return picked

    async def __call__(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self.score_sync, texts)


class PerplexityConfig(EvaluatorConfig):
    """Which text to score and, without an injected scorer, which local model scores it."""

    text_field: Literal["output", "reference", "input", "input+output"] = Field(
        default="output", description="The sample text whose likelihood is measured."
    )
    model_path: str | None = Field(
        default=None,
        description="Local Hugging Face model directory; used when no scorer is passed in.",
    )
    batch_size: int = Field(default=8, ge=1, le=1024, description="Texts per forward pass.")
    max_length: int = Field(
        default=1024,
        ge=2,
        description="Tokens per forward pass (at most the model's context); longer texts are "
        "scored in windows overlapping by half, never cut off.",
    )
    device: str = Field(default="cpu", description="torch device for the local model.")


class PerplexityEvaluator(Evaluator):
    """Token-weighted corpus perplexity (``perplexity``, lower is better) and per-sample values."""

    name: ClassVar[str] = "perplexity"
    config_cls: ClassVar[type[EvaluatorConfig]] = PerplexityConfig
    config: PerplexityConfig

    def __init__(
        self, config: EvaluatorConfig | None = None, scorer: LogprobScorer | None = None
    ) -> None:
        super().__init__(config)
        cfg = self.config
        if scorer is None and cfg.model_path is not None:
            scorer = HFLogprobScorer(cfg.model_path, cfg.batch_size, cfg.max_length, cfg.device)
        self.scorer = scorer

    def _text(self, sample: EvalSample) -> str:
        field = self.config.text_field
        if field == "input+output":
            return sample.input + sample.output
        if field == "reference":
            if sample.reference is None:
                raise InvalidInputError(f"perplexity: sample '{sample.id}' has no reference")
            return sample.reference
        return sample.input if field == "input" else sample.output

    async def evaluate(self, samples: Sequence[EvalSample]) -> EvalResult:
        if self.scorer is None:
            raise ConfigError("perplexity needs a scorer or 'model_path' in its config")
        if not samples:
            raise InvalidInputError("perplexity: no samples to score")
        texts = [self._text(s) for s in samples]
        logprobs = await self.scorer(texts)
        if len(logprobs) != len(texts):
            raise UpstreamError(f"scorer returned {len(logprobs)} results for {len(texts)} texts")
        per, failed, total_lp, total_n = [], [], 0.0, 0
        for sample, lps in zip(samples, logprobs, strict=True):
            if not lps:
                failed.append({"sample_id": sample.id, "reason": "no scored tokens"})
                continue
            nll = -sum(lps) / len(lps)
            total_lp += sum(lps)
            total_n += len(lps)
            scores = {"perplexity": math.exp(nll), "nll": nll, "n_tokens": float(len(lps))}
            per.append(SampleScore(sample_id=sample.id, scores=scores))
        if not per:
            raise InvalidInputError("perplexity: no sample had any scored token")
        mean_nll = -total_lp / total_n
        aggregate = {
            "perplexity": math.exp(mean_nll),
            "nll": mean_nll,
            "perplexity_sample_mean": sum(p.scores["perplexity"] for p in per) / len(per),
            "n_tokens": float(total_n),
        }
        return EvalResult(
            evaluator=self.name, aggregate=aggregate, samples=per, details={"failed": failed}
        )


__all__ = [
    "HFLogprobScorer",
    "LogprobScorer",
    "PerplexityConfig",
    "PerplexityEvaluator",
    "engine_logprob_scorer",
]
