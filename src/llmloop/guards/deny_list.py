"""A deny-list guard: blocks (or redacts) requests and responses containing listed terms.

Case-insensitive whole-substring matching; the simplest guard and the reference for the hooks.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field

from llmloop.core.chat import ChatMessage
from llmloop.core.guards import GuardStage, GuardVerdict
from llmloop.guards.base import Guard, GuardConfig


class DenyListConfig(GuardConfig):
    terms: list[str] = Field(default_factory=list, description="Terms to refuse (any case).")
    action: Literal["block", "redact", "flag"] = Field(default="block")
    check_input: bool = Field(default=True, description="Check the request messages.")
    check_output: bool = Field(default=True, description="Check the generated text.")


class DenyListGuard(Guard):
    name = "deny_list"
    config_cls = DenyListConfig
    config: DenyListConfig

    def __init__(self, config: DenyListConfig | None = None) -> None:
        super().__init__(config)
        terms = [t for t in self.config.terms if t]
        self._pattern = (
            re.compile("|".join(re.escape(t) for t in terms), re.IGNORECASE) if terms else None
        )
        longest = max((len(t) for t in terms), default=0)
        self.window_chars = max(64, longest * 2)

    def _verdicts(self, text: str, stage: GuardStage) -> list[GuardVerdict]:
        if self._pattern is None:
            return []
        found = self._pattern.search(text)
        if found is None:
            return []
        redacted = self._pattern.sub("[REDACTED]", text) if self.config.action == "redact" else None
        return [
            GuardVerdict(
                guard=self.name,
                rule_id="deny_list.term",
                action=self.config.action,
                stage=stage,
                reason=f"denied term at offset {found.start()}",
                redacted=redacted,
            )
        ]

    def check_input(self, messages: list[ChatMessage]) -> list[GuardVerdict]:
        if not self.config.check_input:
            return []
        return self._verdicts("\n".join(m.content for m in messages), "input")

    def check_output(self, text: str, final: bool) -> list[GuardVerdict]:
        if not self.config.check_output:
            return []
        return self._verdicts(text, "output")
