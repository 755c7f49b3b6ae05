"""The Evaluator contract: a pydantic config and one async method, ``evaluate(samples)``.

Library metrics are synchronous underneath and simply compute; judges and red-team probes drive an
:class:`~llmloop.engines.base.Engine` (the one allowed cross-adapter import). Evaluators never
touch the store: the evaluation service records what they return.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from llmloop.core.evals import EvalResult, EvalSample


class EvaluatorConfig(BaseModel):
    """Base of every evaluator config: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Evaluator(abc.ABC):
    name: ClassVar[str] = ""
    config_cls: ClassVar[type[EvaluatorConfig]] = EvaluatorConfig

    def __init__(self, config: EvaluatorConfig | None = None) -> None:
        self.config = config if config is not None else self.config_cls()

    @abc.abstractmethod
    async def evaluate(self, samples: Sequence[EvalSample]) -> EvalResult:
        """Score ``samples``; aggregates are keyed by metric name (higher is better unless named
        ``*_rate`` of a harm, documented per evaluator)."""
