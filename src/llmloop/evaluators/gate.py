"""Regression gates: rules over evaluation metrics that a candidate must pass to be promoted.

One concept: pass or fail a candidate against fixed thresholds and a baseline. Rules read like
``rougeL >= baseline - 0.01``, ``bleu >= 20`` or ``toxicity_rate <= 0.01``. A baseline-relative
rule may ask for a paired bootstrap test (``... (paired_bootstrap)``): it then fails only when
the candidate is *significantly* worse on per-sample scores paired by sample id, so noise alone
does not block a release. It does not run evaluations or promote models; it only judges reports.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llmloop.core.evals import EvalResult
from llmloop.errors import ConfigError, InvalidInputError
from llmloop.evaluators.stats import PairedTest, paired_bootstrap
from llmloop.evaluators.suites import SuiteReport, flatten_metrics, metric_sample_scores

Op = Literal[">=", "<=", ">", "<", "=="]
Report = SuiteReport | Mapping[str, EvalResult] | Sequence[EvalResult]
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
}


def compare(value: float, op: str, threshold: float) -> bool:
    """``value op threshold``, with values equal up to float rounding counted as equal.

    ``baseline + 0.1`` with a baseline of 0.2 is 0.30000000000000004: a candidate at exactly 0.3
    meets ``>=`` and does not beat ``>``.
    """
    if math.isclose(value, threshold, rel_tol=1e-9, abs_tol=1e-12):
        return op in (">=", "<=", "==")
    return _OPS[op](value, threshold)


_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_RULE = re.compile(
    rf"^\s*(?P<metric>[A-Za-z_][\w.\-]*)\s*(?P<op>>=|<=|==|>|<)\s*"
    rf"(?:(?P<value>{_NUM})|baseline\s*(?:(?P<sign>[-+])\s*(?P<offset>{_NUM}))?)\s*"
    rf"(?:\(\s*(?P<test>paired_bootstrap)\s*(?:,\s*(?P<conf>{_NUM})\s*)?\))?\s*$"
)


class GateRule(BaseModel):
    """One rule: ``metric op value`` or ``metric op baseline + offset``, optionally tested."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: str = Field(description="Metric key in the report (``alias.key`` or a unique key).")
    op: Op = Field(description="Comparison the candidate value must satisfy.")
    value: float | None = Field(default=None, description="Absolute threshold.")
    baseline_offset: float | None = Field(
        default=None, description="Relative threshold: the baseline's value plus this offset."
    )
    test: Literal["none", "paired_bootstrap"] = Field(
        default="none", description="Fail a relative rule only when significantly worse."
    )
    confidence: float = Field(default=0.95, gt=0.0, lt=1.0, description="Test confidence.")
    n_resamples: int = Field(default=2000, ge=100, description="Bootstrap resamples.")
    seed: int = Field(default=0, description="Bootstrap random seed.")

    @model_validator(mode="after")
    def _check(self) -> GateRule:
        if (self.value is None) == (self.baseline_offset is None):
            raise ValueError("give exactly one of 'value' and 'baseline_offset'")
        if self.test != "none" and (self.value is not None or self.op == "=="):
            raise ValueError("a statistical test needs a baseline rule with >=, >, <= or <")
        return self

    @classmethod
    def parse(cls, text: str) -> GateRule:
        """Parse ``"rougeL >= baseline - 0.01 (paired_bootstrap, 0.95)"`` and the like."""
        match = _RULE.match(text)
        if match is None:
            raise ConfigError(
                f"cannot read gate rule {text!r}; write e.g. 'bleu >= 20' or "
                "'rougeL >= baseline - 0.01 (paired_bootstrap)'"
            )
        parts = match.groupdict()
        offset = None
        if parts["value"] is None:
            offset = float(parts["offset"] or 0.0) * (-1 if parts["sign"] == "-" else 1)
        try:
            return cls(
                metric=parts["metric"],
                op=parts["op"],  # type: ignore[arg-type]
                value=None if parts["value"] is None else float(parts["value"]),
                baseline_offset=offset,
                test=parts["test"] or "none",  # type: ignore[arg-type]
                confidence=float(parts["conf"]) if parts["conf"] else 0.95,
            )
        except ValueError as exc:
            raise ConfigError(f"invalid gate rule {text!r}: {exc}")

    def describe(self) -> str:
        """The rule as text, in the syntax :meth:`parse` reads."""
        if self.value is not None:
            return f"{self.metric} {self.op} {self.value:g}"
        offset = self.baseline_offset or 0.0
        rhs = "baseline" + (f" {'-' if offset < 0 else '+'} {abs(offset):g}" if offset else "")
        suffix = f" ({self.test}, {self.confidence:g})" if self.test != "none" else ""
        return f"{self.metric} {self.op} {rhs}{suffix}"


class RuleResult(BaseModel):
    """How one rule went."""

    model_config = ConfigDict(frozen=True)

    rule: str = Field(description="The rule as text.")
    status: Literal["passed", "failed", "skipped"]
    candidate: float | None = Field(default=None, description="Candidate metric value.")
    baseline: float | None = Field(default=None, description="Baseline metric value.")
    threshold: float | None = Field(default=None, description="The value compared against.")
    test: PairedTest | None = Field(default=None, description="Paired bootstrap outcome.")
    reason: str = Field(default="", description="Why it failed or was skipped.")

    @property
    def passed(self) -> bool:
        """Passed or skipped rules do not block."""
        return self.status != "failed"


class GateResult(BaseModel):
    """The gate's verdict: passed only when no rule failed."""

    model_config = ConfigDict(frozen=True)

    passed: bool
    rules: list[RuleResult]

    @property
    def failures(self) -> list[RuleResult]:
        """The rules that failed."""
        return [r for r in self.rules if r.status == "failed"]


def _results(report: Report) -> Mapping[str, EvalResult]:
    if isinstance(report, SuiteReport):
        return report.results
    if isinstance(report, Mapping):
        return report
    by_name: dict[str, EvalResult] = {}
    for result in report:
        if result.evaluator in by_name:
            raise InvalidInputError(
                f"two results named '{result.evaluator}'; pass a mapping keyed by alias instead"
            )
        by_name[result.evaluator] = result
    return by_name


def _tested(
    rule: GateRule, cand: Mapping[str, EvalResult], base: Mapping[str, EvalResult]
) -> PairedTest | None:
    """The paired bootstrap on per-sample scores shared by both reports, if there are enough.

    None as well when a report's aggregate is not the mean of its per-sample scores (corpus BLEU
    and chrF, token-weighted perplexity): a test of sentence means says nothing about it.
    """
    c = metric_sample_scores(cand, rule.metric)
    b = metric_sample_scores(base, rule.metric)
    common = sorted(set(c) & set(b))
    if len(common) < 2 or not (_is_mean(cand, rule.metric, c) and _is_mean(base, rule.metric, b)):
        return None
    return paired_bootstrap(
        [c[i] for i in common],
        [b[i] for i in common],
        confidence=rule.confidence,
        n_resamples=rule.n_resamples,
        seed=rule.seed,
    )


def _is_mean(results: Mapping[str, EvalResult], metric: str, scores: Mapping[str, float]) -> bool:
    """Whether the aggregate ``metric`` is the mean of its per-sample ``scores``."""
    value = flatten_metrics(results).get(metric)
    if value is None or not scores:
        return False
    mean = math.fsum(scores.values()) / len(scores)
    return math.isclose(mean, value, rel_tol=1e-6, abs_tol=1e-9)


def _check_rule(
    rule: GateRule,
    cand: Mapping[str, EvalResult],
    base: Mapping[str, EvalResult] | None,
    missing_baseline: Literal["skip", "fail"],
) -> RuleResult:
    text = rule.describe()
    cand_metrics = flatten_metrics(cand)
    value = cand_metrics.get(rule.metric)
    if value is None:
        known = ", ".join(sorted(cand_metrics)) or "none"
        return RuleResult(
            rule=text, status="failed", reason=f"metric not in candidate report (has: {known})"
        )
    if not math.isfinite(value):
        return RuleResult(rule=text, status="failed", reason=f"candidate {rule.metric} is {value}")
    if rule.value is not None:
        ok = compare(value, rule.op, rule.value)
        return RuleResult(
            rule=text, status="passed" if ok else "failed", candidate=value, threshold=rule.value
        )
    if base is None:
        status: Literal["skipped", "failed"] = "skipped" if missing_baseline == "skip" else "failed"
        return RuleResult(rule=text, status=status, candidate=value, reason="no baseline report")
    base_value = flatten_metrics(base).get(rule.metric)
    if base_value is None or not math.isfinite(base_value):
        reason = (
            "metric not in baseline report" if base_value is None else f"baseline is {base_value}"
        )
        return RuleResult(rule=text, status="failed", candidate=value, reason=reason)
    offset = rule.baseline_offset or 0.0
    threshold = base_value + offset
    ok = compare(value, rule.op, threshold)
    test = _tested(rule, cand, base) if rule.test != "none" else None
    reason = ""
    if rule.test != "none" and test is None:
        reason = (
            "no per-sample scores that average to the aggregate, paired by id in both reports, "
            "for the test; compared aggregates"
        )
    elif test is not None:
        # Only a significant shortfall fails: the whole CI of (candidate - baseline) is beyond
        # the allowed offset in the bad direction.
        ok = (
            compare(test.high, ">=", offset)
            if rule.op in (">=", ">")
            else compare(test.low, "<=", offset)
        )
        reason = (
            f"delta {test.delta:+.4g}, {test.confidence:.0%} CI "
            f"[{test.low:+.4g}, {test.high:+.4g}] vs allowed {offset:+.4g}"
        )
    return RuleResult(
        rule=text,
        status="passed" if ok else "failed",
        candidate=value,
        baseline=base_value,
        threshold=threshold,
        test=test,
        reason=reason,
    )


def evaluate_gate(
    rules: Sequence[GateRule | str],
    candidate: Report,
    baseline: Report | None = None,
    missing_baseline: Literal["skip", "fail"] = "skip",
) -> GateResult:
    """Check every rule against ``candidate`` (and ``baseline`` for relative rules).

    A missing metric fails its rule with a message listing what the report has. Baseline rules
    without a baseline report are skipped (first run) unless ``missing_baseline="fail"``.
    """
    if not rules:
        raise InvalidInputError("a gate needs at least one rule")
    parsed = [r if isinstance(r, GateRule) else GateRule.parse(r) for r in rules]
    cand = _results(candidate)
    base = _results(baseline) if baseline is not None else None
    results = [_check_rule(r, cand, base, missing_baseline) for r in parsed]
    return GateResult(passed=all(r.passed for r in results), rules=results)


__all__ = ["GateResult", "GateRule", "Op", "Report", "RuleResult", "evaluate_gate"]
