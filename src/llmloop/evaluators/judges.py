"""LLM-as-judge: rubric templates rendered with Jinja2, asked k times of any Engine, scored.

One concept: a model grading answers on a declared scale. Templates are Jinja2 text (shipped
defaults live in ``llmloop/resources/judges/*.jinja``; any template string works, e.g. one from
the prompt registry). Each item is judged ``k`` times with varying seeds; the score is parsed
robustly from the answer (an unparsable answer or an engine error is a failed vote, never a
crash). Per item we report mean, variance and a confidence interval and flag items whose
verdict straddles the pass threshold; the aggregate has a confidence interval, and agreement
with human labels (Cohen's kappa, Spearman) when samples carry them. Pairwise preference
judging lives in ``preference.py`` and reuses the helpers here. This module stores nothing.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, ClassVar

import jinja2
from pydantic import Field, model_validator

from llmloop.core.chat import ChatMessage, GenerationRequest, SamplingParams
from llmloop.core.evals import EvalResult, EvalSample, SampleScore
from llmloop.core.sandbox import BoundedSandbox, render_compiled
from llmloop.engines.base import Engine
from llmloop.errors import ConfigError, InvalidInputError, LlmloopError, NotFoundError
from llmloop.evaluators.base import Evaluator, EvaluatorConfig
from llmloop.evaluators.stats import (
    Interval,
    IntervalMethod,
    agreement,
    mean_interval,
    straddles,
)

_ENV = BoundedSandbox(keep_trailing_newline=True)
_NUMBER = r"[-+]?\d+(?:\.\d+)?"


def list_judge_templates() -> list[str]:
    """Names of the shipped judge templates (``quality``, ``correctness``, ...)."""
    folder = resources.files("llmloop").joinpath("resources", "judges")
    return sorted(
        p.name.removesuffix(".jinja") for p in folder.iterdir() if p.name.endswith(".jinja")
    )


def load_judge_template(name: str) -> str:
    """The text of a shipped judge template by name; NotFoundError lists the known names."""
    path = resources.files("llmloop").joinpath("resources", "judges", f"{name}.jinja")
    if not re.fullmatch(r"[a-z0-9_-]+", name) or not path.is_file():
        raise NotFoundError(
            f"no judge template '{name}'; shipped: {', '.join(list_judge_templates())}"
        )
    return path.read_text(encoding="utf-8")


def compile_template(text: str) -> jinja2.Template:
    """Compile a Jinja2 judge template in a sandbox; syntax errors become ConfigError."""
    try:
        return _ENV.from_string(text)
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(f"judge template has a syntax error on line {exc.lineno}: {exc.message}")


def render_template(template: jinja2.Template, variables: dict[str, Any]) -> str:
    """Render a compiled template; an unknown variable or a runtime error is a ConfigError."""
    try:
        return render_compiled(template, variables)
    except jinja2.UndefinedError as exc:
        raise ConfigError(
            f"judge template uses an unknown variable ({exc.message}); "
            f"available: {', '.join(sorted(variables))}"
        )
    except jinja2.TemplateError as exc:
        raise ConfigError(f"judge template failed to render: {exc}")


def sample_variables(sample: EvalSample) -> dict[str, Any]:
    """The variables every judge template can use for one sample."""
    return {
        "id": sample.id,
        "input": sample.input,
        "output": sample.output,
        "reference": sample.reference,
        "references": sample.references or [],
        "context": sample.context,
        "metadata": sample.metadata,
    }


def parse_score(text: str, low: float, high: float) -> float | None:
    """The score in ``text`` on the scale ``[low, high]``, or None when none can be found.

    Tried in order: a JSON object with ``score``/``rating``; ``[[N]]``; the last ``Score: N`` /
    ``Rating: N`` (optionally ``N/M``); the last ``N/M`` or ``N out of M`` with M = ``high``;
    an answer that is only a number. A number outside the scale counts as unparsable.
    """
    candidates: list[str] = []
    for match in re.finditer(r"\{[^{}]*\}", text):
        try:
            obj = json.loads(match.group(0))
        except ValueError:
            continue
        for key in ("score", "rating", "Score", "Rating"):
            if isinstance(obj, dict) and isinstance(obj.get(key), int | float | str):
                candidates.append(str(obj[key]))
    patterns = [
        rf"\[\[\s*({_NUMBER})\s*\]\]",
        rf"(?:score|rating|grade)\s*(?:\*\*)?\s*[:=]?\s*(?:\*\*)?\s*({_NUMBER})",
        rf"({_NUMBER})\s*(?:/|out of)\s*{high:g}\b",
        rf"^\s*({_NUMBER})\s*\.?\s*$",
    ]
    for pattern in patterns:
        found = re.findall(pattern, text, flags=re.IGNORECASE | re.MULTILINE)
        if found:
            candidates.append(found[-1])
    for raw in candidates:
        try:
            value = float(raw)
        except ValueError:
            continue
        if low <= value <= high:
            return value
    return None


def clip_interval(interval: Interval, low: float, high: float) -> list[float]:
    """The interval's bounds kept on the scale ``[low, high]``: a mean of scores on a bounded
    scale cannot leave it, however wide a t-interval of few votes is."""
    return [min(high, max(low, interval.low)), min(high, max(low, interval.high))]


class JudgeConfig(EvaluatorConfig):
    """What every LLM judge shares: template, judge model, repetitions and sampling."""

    template: str | None = Field(
        default=None, description="Jinja2 template text; overrides 'template_name' when given."
    )
    template_name: str = Field(
        default="quality", description="A shipped template under resources/judges (no suffix)."
    )
    criteria: str | None = Field(
        default=None, description="Extra rubric text exposed to the template as 'criteria'."
    )
    system_prompt: str | None = Field(default=None, description="Optional system message.")
    model: str = Field(default="", description="Judge model name; '' uses the engine's model.")
    k: int = Field(default=3, ge=1, le=50, description="How many times each item is judged.")
    temperature: float = Field(
        default=0.7, ge=0.0, le=2.0, description="Sampling temperature for each judgement."
    )
    seed: int = Field(default=0, description="Judgement j of each item uses seed + j.")
    max_tokens: int = Field(default=512, ge=1, description="Token limit of a judge answer.")
    concurrency: int = Field(default=8, ge=1, le=256, description="Judge calls in flight.")
    confidence: float = Field(default=0.95, gt=0.0, lt=1.0, description="Confidence level.")
    ci_method: IntervalMethod = Field(
        default="t", description="Aggregate interval: 't' or 'bootstrap' over item means."
    )
    human_key: str = Field(
        default="human_label",
        description="Sample metadata key holding a human label to measure agreement against.",
    )


@dataclass(frozen=True)
class JudgeCall:
    """One judge answer: the raw text, or the error that replaced it."""

    text: str | None
    error: str | None = None


class LLMJudge(Evaluator):
    """Shared machinery of judges: an Engine, a compiled template and bounded, seeded calls."""

    requires_engine: ClassVar[bool] = True
    config: JudgeConfig

    def __init__(self, config: EvaluatorConfig | None = None, engine: Engine | None = None) -> None:
        super().__init__(config)
        cfg = self.config
        text = cfg.template if cfg.template is not None else load_judge_template(cfg.template_name)
        self.template = compile_template(text)
        self.engine = engine
        self._gate: asyncio.Semaphore | None = None

    def _engine(self) -> Engine:
        if self.engine is None:
            raise ConfigError(f"judge '{self.name}' needs an engine to ask; none was given")
        return self.engine

    async def ask(self, prompt: str, vote: int) -> JudgeCall:
        """Ask the judge model once; engine failures are returned, not raised."""
        cfg, engine = self.config, self._engine()
        if self._gate is None:
            self._gate = asyncio.Semaphore(cfg.concurrency)
        messages = [ChatMessage(role="user", content=prompt)]
        if cfg.system_prompt:
            messages.insert(0, ChatMessage(role="system", content=cfg.system_prompt))
        req = GenerationRequest(
            model=cfg.model or engine.spec.model,
            messages=messages,
            sampling=SamplingParams(
                max_tokens=cfg.max_tokens, temperature=cfg.temperature, seed=cfg.seed + vote
            ),
        )
        async with self._gate:
            try:
                result = await engine.chat(req)
            except LlmloopError as exc:
                return JudgeCall(text=None, error=f"{type(exc).__name__}: {exc.detail}")
        return JudgeCall(text=result.text)


class PointwiseJudgeConfig(JudgeConfig):
    """A rubric judge that scores each answer on a numeric scale."""

    scale_min: float = Field(default=1.0, description="Lowest score of the scale.")
    scale_max: float = Field(default=5.0, description="Highest score of the scale.")
    threshold: float | None = Field(
        default=None,
        description="An item passes when its mean score is at least this; None = scale midpoint.",
    )

    @model_validator(mode="after")
    def _scale(self) -> PointwiseJudgeConfig:
        if self.scale_min >= self.scale_max:
            raise ValueError("scale_min must be below scale_max")
        if self.threshold is not None and not self.scale_min <= self.threshold <= self.scale_max:
            raise ValueError("threshold must lie on the scale")
        return self

    @property
    def pass_threshold(self) -> float:
        """The threshold in force (the scale midpoint when none is set)."""
        if self.threshold is not None:
            return self.threshold
        return (self.scale_min + self.scale_max) / 2


class PointwiseJudge(LLMJudge):
    """Scores each item k times: ``judge_score`` (mean), pass rate, flags and a CI.

    Per-sample scores: ``judge_score``, ``judge_variance``, ``judge_pass`` (0/1); items with no
    parsable vote get empty scores and ``details.failed``. Aggregates: ``judge_score`` and its
    ``judge_score_ci_low/high``, ``judge_pass_rate``, ``judge_flag_rate``, ``judge_failed_rate``,
    and ``human_kappa`` / ``human_spearman`` when human labels are present.
    """

    name: ClassVar[str] = "judge"
    config_cls: ClassVar[type[EvaluatorConfig]] = PointwiseJudgeConfig
    config: PointwiseJudgeConfig

    def render(self, sample: EvalSample) -> str:
        """The judge prompt for one sample."""
        cfg = self.config
        variables = sample_variables(sample) | {
            "scale_min": f"{cfg.scale_min:g}",
            "scale_max": f"{cfg.scale_max:g}",
            "criteria": cfg.criteria,
        }
        return render_template(self.template, variables)

    async def _judge_item(self, sample: EvalSample) -> SampleScore:
        import numpy as np

        cfg = self.config
        prompt = self.render(sample)
        calls = await asyncio.gather(*(self.ask(prompt, j) for j in range(cfg.k)))
        votes: list[float] = []
        failures: list[str] = []
        for call in calls:
            score = (
                None if call.text is None else parse_score(call.text, cfg.scale_min, cfg.scale_max)
            )
            if score is None:
                failures.append(call.error or f"unparsable answer: {(call.text or '')[:200]!r}")
            else:
                votes.append(score)
        details: dict[str, Any] = {"votes": votes, "failures": failures}
        if not votes:
            return SampleScore(sample_id=sample.id, scores={}, details=details | {"failed": True})
        threshold = cfg.pass_threshold
        interval = mean_interval(votes, confidence=cfg.confidence)
        split = min(votes) < threshold <= max(votes)
        mean = float(np.mean(votes))
        variance = float(np.var(votes, ddof=1)) if len(votes) > 1 else 0.0
        details |= {
            "ci": clip_interval(interval, cfg.scale_min, cfg.scale_max),
            "flagged": straddles(interval, threshold) or split,
            "votes_split": split,
        }
        scores = {
            "judge_score": mean,
            "judge_variance": variance,
            "judge_pass": float(mean >= threshold),
        }
        return SampleScore(sample_id=sample.id, scores=scores, details=details)

    async def evaluate(self, samples: Sequence[EvalSample]) -> EvalResult:
        if not samples:
            raise InvalidInputError(f"{self.name}: no samples to judge")
        self._gate = asyncio.Semaphore(self.config.concurrency)  # bound to this run's loop
        for sample in samples:
            self.render(sample)  # fail fast on template errors before any engine call
        per = list(await asyncio.gather(*(self._judge_item(s) for s in samples)))
        return EvalResult(
            evaluator=self.name,
            aggregate=self._aggregate(samples, per),
            samples=per,
            details=self._details(per),
        )

    def _aggregate(self, samples: Sequence[EvalSample], per: list[SampleScore]) -> dict[str, float]:
        cfg = self.config
        judged = [p for p in per if p.scores]
        agg: dict[str, float] = {
            "judge_failed_rate": 1 - len(judged) / len(per),
            "judge_items": float(len(judged)),
        }
        if not judged:
            return agg
        means = [p.scores["judge_score"] for p in judged]
        interval = mean_interval(means, cfg.confidence, cfg.ci_method, seed=cfg.seed)
        low, high = clip_interval(interval, cfg.scale_min, cfg.scale_max)
        agg |= {
            "judge_score": interval.mean,
            "judge_score_ci_low": low,
            "judge_score_ci_high": high,
            "judge_pass_rate": sum(p.scores["judge_pass"] for p in judged) / len(judged),
            "judge_flag_rate": sum(bool(p.details.get("flagged")) for p in judged) / len(judged),
            "judge_variance_mean": sum(p.scores["judge_variance"] for p in judged) / len(judged),
            # 1.0 when the aggregate's own interval crosses the threshold: the run is undecided.
            "judge_score_straddles": float(straddles(interval, cfg.pass_threshold)),
        }
        agg |= self._agreement(samples, per)
        return agg

    def _agreement(self, samples: Sequence[EvalSample], per: list[SampleScore]) -> dict[str, float]:
        pairs = [
            (p.scores["judge_score"], s.metadata[self.config.human_key])
            for s, p in zip(samples, per, strict=True)
            if p.scores and s.metadata.get(self.config.human_key) is not None
        ]
        if not pairs:
            return {}
        try:
            human = [float(h) for _, h in pairs]
        except (TypeError, ValueError):
            raise InvalidInputError(f"human labels under '{self.config.human_key}' must be numbers")
        # Kappa compares categories: the judge's mean rounded (halves up, unlike Python's
        # round-half-to-even, which sends 2.5 down and 3.5 up) to the nearest scale point.
        result = agreement(
            [math.floor(j + 0.5) for j, _ in pairs],
            [math.floor(h + 0.5) for h in human],
            "categorical",
        )
        scores = agreement([j for j, _ in pairs], human, "scores")
        out = {"human_n": float(result.n)}
        if result.cohen_kappa is not None:
            out["human_kappa"] = result.cohen_kappa
        if scores.spearman is not None:
            out["human_spearman"] = scores.spearman
        return out

    def _details(self, per: list[SampleScore]) -> dict[str, Any]:
        cfg = self.config
        return {
            "threshold": cfg.pass_threshold,
            "scale": [cfg.scale_min, cfg.scale_max],
            "k": cfg.k,
            "flagged": [p.sample_id for p in per if p.details.get("flagged")],
            "failed": [p.sample_id for p in per if p.details.get("failed")],
        }


__all__ = [
    "JudgeCall",
    "JudgeConfig",
    "LLMJudge",
    "PointwiseJudge",
    "PointwiseJudgeConfig",
    "clip_interval",
    "compile_template",
    "list_judge_templates",
    "load_judge_template",
    "parse_score",
    "render_template",
    "sample_variables",
]
