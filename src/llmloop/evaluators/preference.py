"""Pairwise preference judging with position swapping to cancel the judge's order bias.

One concept: which of two answers a judge model prefers. Each item is judged in both orders
(A-vs-B and B-vs-A) in each of ``k`` rounds; a round whose two verdicts disagree once mapped back
counts as a tie and is flagged as inconsistent. The candidate answer is ``sample.output`` and the
other answer is read from ``sample.metadata[other_key]``. Template loading, engine calls and
statistics are shared with ``judges.py``; this module only adds verdict parsing and counting.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field

from llmloop.core.evals import EvalResult, EvalSample, SampleScore
from llmloop.errors import InvalidInputError
from llmloop.evaluators.base import EvaluatorConfig
from llmloop.evaluators.judges import (
    JudgeConfig,
    LLMJudge,
    clip_interval,
    render_template,
    sample_variables,
)
from llmloop.evaluators.stats import agreement, mean_interval, straddles

Verdict = Literal["A", "B", "tie"]
_TIE_WORDS = {"c", "tie", "draw", "equal", "none", "both"}


def _verdict_word(word: str) -> Verdict | None:
    word = word.strip().strip("*.\"'()[]").lower()
    if word == "a":
        return "A"
    if word == "b":
        return "B"
    return "tie" if word in _TIE_WORDS else None


def parse_verdict(text: str) -> Verdict | None:
    """The verdict in a judge answer: ``A``, ``B`` or ``tie``; None when none is found.

    Tried in order: JSON with ``winner``/``verdict``/``preference``; the last ``[[A]]``,
    ``[[B]]``, ``[[C]]`` or ``[[tie]]``; the last ``Winner: X`` / ``Verdict: X`` / ``Better: X``;
    a last line that is only A, B or tie.
    """
    for match in re.finditer(r"\{[^{}]*\}", text):
        try:
            obj = json.loads(match.group(0))
        except ValueError:
            continue
        for key in ("winner", "verdict", "preference", "better"):
            if isinstance(obj, dict) and isinstance(obj.get(key), str):
                found = _verdict_word(obj[key])
                if found is not None:
                    return found
    patterns = [
        r"\[\[\s*(A|B|C|tie)\s*\]\]",
        r"(?:winner|verdict|better(?: answer)?|preferred(?: answer)?)\s*(?:is|:|=)?\s*"
        r"(?:answer\s+)?\**\s*(A|B|tie)\b",
        r"^\W*(A|B|tie)\W*$",
    ]
    for pattern in patterns:
        found_all = re.findall(pattern, text, flags=re.IGNORECASE | re.MULTILINE)
        if found_all:
            return _verdict_word(found_all[-1])
    return None


class PairwiseJudgeConfig(JudgeConfig):
    """A judge that compares the candidate output with another answer to the same input."""

    template_name: str = Field(
        default="pairwise", description="A shipped template under resources/judges (no suffix)."
    )
    other_key: str = Field(
        default="baseline_output",
        description="Sample metadata key holding the answer the output is compared with.",
    )


class PairwiseJudge(LLMJudge):
    """Preference of ``output`` (A) over ``metadata[other_key]`` (B), judged in both orders.

    Per-sample scores: ``preference`` (wins + ties/2 over valid rounds, 0..1), ``win``/``loss``/
    ``tie`` counts and ``inconsistent`` rounds. Aggregates: ``preference`` with a CI,
    ``win_rate``/``loss_rate``/``tie_rate`` (item verdicts), ``inconsistency_rate`` (rounds),
    ``flag_rate``, ``failed_rate`` and ``human_kappa`` when samples carry human verdicts.
    """

    name: ClassVar[str] = "pairwise_judge"
    config_cls: ClassVar[type[EvaluatorConfig]] = PairwiseJudgeConfig
    config: PairwiseJudgeConfig

    def render(self, sample: EvalSample, first: str, second: str) -> str:
        """The judge prompt showing ``first`` as answer A and ``second`` as answer B."""
        variables = sample_variables(sample) | {
            "output_a": first,
            "output_b": second,
            "criteria": self.config.criteria,
        }
        return render_template(self.template, variables)

    def _other(self, sample: EvalSample) -> str:
        other = sample.metadata.get(self.config.other_key)
        if not isinstance(other, str):
            raise InvalidInputError(
                f"pairwise judge: sample '{sample.id}' needs a text under "
                f"metadata['{self.config.other_key}']"
            )
        return other

    async def _round(self, sample: EvalSample, other: str, j: int) -> tuple[Verdict | None, bool]:
        """One round in both orders: the candidate's verdict and whether the two agreed."""
        forward, backward = await asyncio.gather(
            self.ask(self.render(sample, sample.output, other), j),
            self.ask(self.render(sample, other, sample.output), j),
        )
        first = parse_verdict(forward.text) if forward.text is not None else None
        second = parse_verdict(backward.text) if backward.text is not None else None
        if first is None or second is None:
            return None, True
        swapped: Verdict = {"A": "B", "B": "A", "tie": "tie"}[second]  # type: ignore[assignment]
        if first == swapped:
            return first, True
        return "tie", False

    async def _judge_item(self, sample: EvalSample) -> SampleScore:
        other = self._other(sample)
        rounds = await asyncio.gather(
            *(self._round(sample, other, j) for j in range(self.config.k))
        )
        verdicts = [v for v, _ in rounds if v is not None]
        inconsistent = sum(1 for v, ok in rounds if v is not None and not ok)
        details: dict[str, Any] = {
            "verdicts": verdicts,
            "failed_rounds": len(rounds) - len(verdicts),
        }
        if not verdicts:
            return SampleScore(sample_id=sample.id, scores={}, details=details | {"failed": True})
        wins, losses = verdicts.count("A"), verdicts.count("B")
        ties = len(verdicts) - wins - losses
        preference = (wins + 0.5 * ties) / len(verdicts)
        verdict = "A" if preference > 0.5 else "B" if preference < 0.5 else "tie"
        details |= {
            "verdict": verdict,
            "flagged": inconsistent > 0 or (wins > 0 and losses > 0),
        }
        scores = {
            "preference": preference,
            "win": float(wins),
            "loss": float(losses),
            "tie": float(ties),
            "inconsistent": float(inconsistent),
        }
        return SampleScore(sample_id=sample.id, scores=scores, details=details)

    async def evaluate(self, samples: Sequence[EvalSample]) -> EvalResult:
        if not samples:
            raise InvalidInputError("pairwise judge: no samples to judge")
        self._gate = asyncio.Semaphore(self.config.concurrency)  # bound to this run's loop
        for sample in samples:
            self.render(sample, sample.output, self._other(sample))  # fail fast
        per = list(await asyncio.gather(*(self._judge_item(s) for s in samples)))
        judged = [p for p in per if p.scores]
        agg: dict[str, float] = {"failed_rate": 1 - len(judged) / len(per)}
        details: dict[str, Any] = {
            "k": self.config.k,
            "flagged": [p.sample_id for p in judged if p.details.get("flagged")],
            "failed": [p.sample_id for p in per if p.details.get("failed")],
        }
        if judged:
            cfg = self.config
            prefs = [p.scores["preference"] for p in judged]
            interval = mean_interval(prefs, cfg.confidence, cfg.ci_method, seed=cfg.seed)
            labels = [p.details["verdict"] for p in judged]
            rounds = sum(p.scores["win"] + p.scores["loss"] + p.scores["tie"] for p in judged)
            low, high = clip_interval(interval, 0.0, 1.0)
            agg |= {
                "preference": interval.mean,
                "preference_ci_low": low,
                "preference_ci_high": high,
                "win_rate": labels.count("A") / len(judged),
                "loss_rate": labels.count("B") / len(judged),
                "tie_rate": labels.count("tie") / len(judged),
                "inconsistency_rate": sum(p.scores["inconsistent"] for p in judged) / rounds,
                "flag_rate": len(details["flagged"]) / len(judged),
            }
            details["undecided"] = straddles(interval, 0.5)
            agg |= self._agreement(samples, per)
        return EvalResult(evaluator=self.name, aggregate=agg, samples=per, details=details)

    def _agreement(self, samples: Sequence[EvalSample], per: list[SampleScore]) -> dict[str, float]:
        pairs = []
        for sample, score in zip(samples, per, strict=True):
            human = sample.metadata.get(self.config.human_key)
            if score.scores and human is not None:
                label = _verdict_word(str(human))
                if label is None:
                    raise InvalidInputError(
                        f"human verdict {human!r} of sample '{sample.id}' is not A, B or tie"
                    )
                pairs.append((score.details["verdict"], label))
        if not pairs:
            return {}
        result = agreement([j for j, _ in pairs], [h for _, h in pairs], "categorical")
        out = {"human_n": float(result.n)}
        if result.cohen_kappa is not None:
            out["human_kappa"] = result.cohen_kappa
        return out


__all__ = ["PairwiseJudge", "PairwiseJudgeConfig", "Verdict", "parse_verdict"]
