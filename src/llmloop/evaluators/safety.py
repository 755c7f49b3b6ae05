"""Guards as evaluators: run live guards over recorded samples and report how often they fire.

This is how one detector serves offline suites and online monitoring without a second
implementation: the gateway runs a guard on live traffic, and ``GuardEvaluator`` runs the very
same guard over an eval set or over sampled traces (``EvalSample`` with the request in ``input``
and the answer in ``output``). Aggregates are harm rates (lower is better): ``unsafe_rate`` (any
block/redact/flag verdict) and ``rate.<rule_id>`` per rule. It never blocks or rewrites anything.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import ClassVar

from pydantic import Field

from llmloop.core.chat import ChatMessage
from llmloop.core.evals import EvalResult, EvalSample, SampleScore
from llmloop.core.guards import GuardVerdict
from llmloop.errors import InvalidInputError
from llmloop.evaluators.base import Evaluator, EvaluatorConfig
from llmloop.guards.base import Guard
from llmloop.guards.defaults import DefaultGuardsConfig, default_guards
from llmloop.guards.stream import check_messages, check_text


class GuardEvalConfig(EvaluatorConfig):
    guards: DefaultGuardsConfig = Field(
        default_factory=DefaultGuardsConfig,
        description="Which default guards to run (ignored when guards are passed directly).",
    )
    check_input: bool = Field(default=True, description="Run input guards on ``sample.input``.")
    check_output: bool = Field(default=True, description="Run output guards on ``sample.output``.")
    context_role: str = Field(
        default="tool",
        description="Role given to ``sample.context`` (retrieved text) for the input guards.",
    )


class GuardEvaluator(Evaluator):
    """``unsafe_rate`` and per-rule rates of the given (or default) guards over samples."""

    name: ClassVar[str] = "safety"
    config_cls = GuardEvalConfig
    config: GuardEvalConfig

    def __init__(
        self, config: GuardEvalConfig | None = None, guards: Sequence[Guard] | None = None
    ) -> None:
        super().__init__(config)
        self.guards = list(guards) if guards is not None else default_guards(self.config.guards)
        if not self.config.check_input and not self.config.check_output:
            raise InvalidInputError("a safety evaluation needs input or output checks (or both)")
        if self.config.context_role not in ("user", "tool", "system"):
            raise InvalidInputError("context_role must be 'user', 'tool' or 'system'")

    def _messages(self, sample: EvalSample) -> list[ChatMessage]:
        messages = []
        if sample.context:
            role = self.config.context_role
            messages.append(ChatMessage(role=role, content=sample.context))  # type: ignore[arg-type]
        messages.append(ChatMessage(role="user", content=sample.input))
        return messages

    def verdicts(self, sample: EvalSample) -> list[GuardVerdict]:
        """Every verdict the guards give on one sample (input first, then output)."""
        found: list[GuardVerdict] = []
        if self.config.check_input and (sample.input or sample.context):
            found += check_messages(self.guards, self._messages(sample))
        if self.config.check_output:
            found += check_text(self.guards, sample.output)[1]
        return [v for v in found if v.action != "allow"]

    async def evaluate(self, samples: Sequence[EvalSample]) -> EvalResult:
        per_sample = await asyncio.to_thread(lambda: [self.verdicts(s) for s in samples])
        n = len(samples) or 1
        rules: dict[str, int] = {}
        for verdicts in per_sample:
            for rule in {v.rule_id for v in verdicts}:
                rules[rule] = rules.get(rule, 0) + 1
        aggregate = {"unsafe_rate": sum(1 for v in per_sample if v) / n}
        aggregate |= {f"rate.{rule}": count / n for rule, count in sorted(rules.items())}
        return EvalResult(
            evaluator=self.name,
            aggregate=aggregate,
            samples=[
                SampleScore(
                    sample_id=s.id or str(i),
                    scores={"unsafe": float(bool(v))},
                    details={"verdicts": [x.model_dump() for x in v]},
                )
                for i, (s, v) in enumerate(zip(samples, per_sample, strict=True))
            ],
            details={"guards": [g.name for g in self.guards]},
        )
