"""Guard verdicts: what a guardrail decided about a request or a (partial) response, and why."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from llmloop.core.base import Value

GuardAction = Literal["allow", "block", "redact", "flag"]
GuardStage = Literal["input", "output"]


class GuardVerdict(Value):
    guard: str = Field(description="Guard name.")
    rule_id: str = Field(description="Stable id of the rule that fired, e.g. 'deny_list.secret'.")
    action: GuardAction
    stage: GuardStage
    reason: str = ""
    score: float | None = None
    redacted: str | None = Field(
        default=None, description="For 'redact': the text with the offending spans replaced."
    )
