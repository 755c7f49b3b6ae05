"""Canary tokens: a secret planted in the system prompt whose appearance in output proves leakage.

``make_canary()`` mints a token; the deployment puts it in the system prompt and gives it to the
guard. The guard finds the token verbatim and in the common disguises a model uses when told to
"spell it out" (separators between characters, reversed, base64, any case). While streaming it
holds back a trailing run that could be the start of a token, so no part of it is released before
the decision. It does not detect paraphrased system prompts (that is the red-team detector's job).
"""

from __future__ import annotations

import base64
import re
import secrets
from typing import Literal

from pydantic import Field, field_validator

from llmloop.core.guards import GuardVerdict
from llmloop.guards.base import Guard, GuardConfig

_SEPARATORS = re.compile(r"[\s\-_.,|/*`'\"]+")


def make_canary(prefix: str = "llmloop-canary") -> str:
    """A fresh random canary token, e.g. ``llmloop-canary-3f9c0a7d12e4b856``."""
    return f"{prefix}-{secrets.token_hex(8)}"


class CanaryConfig(GuardConfig):
    tokens: list[str] = Field(
        default_factory=list, description="Canary tokens planted in system prompts (>= 8 chars)."
    )
    action: Literal["block", "redact", "flag"] = Field(
        default="block", description="What a leak does; 'redact' replaces the token."
    )
    disguises: bool = Field(
        default=True, description="Also catch spaced-out, reversed and base64 forms."
    )

    @field_validator("tokens")
    @classmethod
    def _long_enough(cls, tokens: list[str]) -> list[str]:
        if any(len(t) < 8 for t in tokens):
            raise ValueError("canary tokens must be at least 8 characters (or they match by luck)")
        return tokens


def _squash(text: str) -> str:
    return _SEPARATORS.sub("", text).lower()


class CanaryGuard(Guard):
    """Output guard: a canary token in the response means the system prompt leaked."""

    name = "canary"
    config_cls = CanaryConfig
    config: CanaryConfig

    def __init__(self, config: CanaryConfig | None = None) -> None:
        super().__init__(config)
        tokens = self.config.tokens
        self._exact = re.compile("|".join(re.escape(t) for t in tokens), re.I) if tokens else None
        self._squashed = [_squash(t) for t in tokens]
        self._encoded = [base64.b64encode(t.encode()).decode()[:-4] for t in tokens]
        longest = max((len(t) for t in tokens), default=0)
        # Spaced-out forms are up to ~3x longer than the token itself.
        self.window_chars = max(64, longest * 4)

    def find(self, text: str) -> str | None:
        """How a canary appears in ``text`` ('verbatim', 'disguised', 'base64'), or None."""
        if self._exact is None:
            return None
        if self._exact.search(text):
            return "verbatim"
        if not self.config.disguises:
            return None
        squashed = _squash(text)
        for token in self._squashed:
            if token in squashed or token[::-1] in squashed:
                return "disguised"
        if any(enc in text for enc in self._encoded):
            return "base64"
        return None

    def check_output(self, text: str, final: bool) -> list[GuardVerdict]:
        how = self.find(text)
        if how is None:
            return []
        redacted = None
        if self.config.action == "redact" and self._exact is not None:
            redacted = self._exact.sub("[REDACTED]", text)
        return [
            GuardVerdict(
                guard=self.name,
                rule_id=f"canary.{how}",
                action=self.config.action,
                stage="output",
                reason=f"system-prompt canary token found ({how})",
                redacted=redacted,
            )
        ]

    def hold_from(self, text: str) -> int:
        """Hold back a suffix that could still grow into a canary token."""
        lowered = text.lower()
        start = len(text)
        for token in self.config.tokens:
            t = token.lower()
            for size in range(min(len(t) - 1, len(text)), 0, -1):
                if lowered.endswith(t[:size]):
                    start = min(start, len(text) - size)
                    break
        return start
