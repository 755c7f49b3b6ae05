"""The Guard contract: a config and checks on input messages and on output text.

Output checks are incremental: the gateway calls ``check_output`` with the text generated so far
(a sliding window for long streams) before releasing new text, and once more with ``final=True``.
A guard returns verdicts; it never raises for a policy decision and never talks to the network
unless its config says so.
"""

from __future__ import annotations

import abc
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from llmloop.core.chat import ChatMessage
from llmloop.core.guards import GuardVerdict


class GuardConfig(BaseModel):
    """Base of every guard config: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Guard(abc.ABC):  # noqa: B024 - every hook has a safe default; subclasses pick theirs
    name: ClassVar[str] = ""
    config_cls: ClassVar[type[GuardConfig]] = GuardConfig

    def __init__(self, config: GuardConfig | None = None) -> None:
        self.config = config if config is not None else self.config_cls()

    def check_input(self, messages: list[ChatMessage]) -> list[GuardVerdict]:
        """Verdicts on the request; empty means allow."""
        return []

    def check_output(self, text: str, final: bool) -> list[GuardVerdict]:
        """Verdicts on the output generated so far; empty means allow."""
        return []

    #: How many trailing characters of output the guard needs to see again on each call.
    window_chars: int = 512
