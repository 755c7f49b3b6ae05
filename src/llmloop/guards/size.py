"""Size and abuse limits on requests: message count, characters, and flooding patterns.

Cheap checks that run before anything else: too many messages, too many characters per message
or in total, a single character or token repeated to exhaust context ("a a a a ..."), and runs of
invisible/control characters used to hide instructions. Rate limits and quotas are not here
(the gateway's key service owns them); this guard only looks at one request.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field

from llmloop.core.chat import ChatMessage
from llmloop.core.guards import GuardVerdict
from llmloop.guards.base import Guard, GuardConfig

_INVISIBLE = re.compile(r"[\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff\U000e0000-\U000e007f]")


class SizeConfig(GuardConfig):
    max_messages: int = Field(default=256, ge=1, description="Messages per request.")
    max_message_chars: int = Field(default=32_000, ge=1, description="Characters per message.")
    max_total_chars: int = Field(default=128_000, ge=1, description="Characters per request.")
    max_repeat_ratio: float = Field(
        default=0.8,
        gt=0.0,
        le=1.0,
        description="Share of a long message taken by its most common word that counts as flood.",
    )
    min_flood_words: int = Field(
        default=200, ge=10, description="Messages shorter than this (in words) are never floods."
    )
    max_invisible_chars: int = Field(
        default=16, ge=0, description="Zero-width/bidi/tag characters allowed per message."
    )
    action: Literal["block", "flag"] = Field(default="block", description="What a hit does.")


class SizeGuard(Guard):
    """Input guard: refuses oversized, flooded or invisibly-smuggled requests."""

    name = "size"
    config_cls = SizeConfig
    config: SizeConfig

    def _verdict(self, rule_id: str, reason: str) -> list[GuardVerdict]:
        return [
            GuardVerdict(
                guard=self.name,
                rule_id=rule_id,
                action=self.config.action,
                stage="input",
                reason=reason,
            )
        ]

    def check_input(self, messages: list[ChatMessage]) -> list[GuardVerdict]:
        cfg = self.config
        if len(messages) > cfg.max_messages:
            return self._verdict("size.messages", f"{len(messages)} messages > {cfg.max_messages}")
        total = sum(len(m.content) for m in messages)
        if total > cfg.max_total_chars:
            return self._verdict("size.total_chars", f"{total} characters > {cfg.max_total_chars}")
        for index, message in enumerate(messages):
            text = message.content
            if len(text) > cfg.max_message_chars:
                return self._verdict("size.message_chars", f"message {index}: {len(text)} chars")
            hidden = len(_INVISIBLE.findall(text))
            if hidden > cfg.max_invisible_chars:
                return self._verdict("abuse.invisible", f"message {index}: {hidden} hidden chars")
            words = text.split()
            if len(words) >= cfg.min_flood_words:
                top = max(_counts(words).values())
                if top / len(words) >= cfg.max_repeat_ratio:
                    return self._verdict(
                        "abuse.flood", f"message {index}: one word repeated {top}x"
                    )
        return []


def _counts(words: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for word in words:
        counts[word] = counts.get(word, 0) + 1
    return counts
