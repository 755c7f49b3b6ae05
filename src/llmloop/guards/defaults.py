"""The default guard set a deployment gets unless it configures its own.

Input: size/abuse limits, prompt injection (direct and in tool/retrieved content), PII.
Output: canary tokens, markdown/HTML link exfiltration and ANSI escapes, toxicity, PII, and JSON
schema validity when a schema is given. Order matters and is cheapest first, so an early block
saves the cost of the rest. The PII guard is imported by name and skipped if that module is not
available. This module only builds guards; running them is ``guards.stream``.
"""

from __future__ import annotations

import importlib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from llmloop.guards.base import Guard
from llmloop.guards.canary import CanaryConfig, CanaryGuard
from llmloop.guards.injection import InjectionConfig, InjectionGuard
from llmloop.guards.links import LinksConfig, LinksGuard
from llmloop.guards.schema import JsonSchemaConfig, JsonSchemaGuard
from llmloop.guards.size import SizeConfig, SizeGuard
from llmloop.guards.stream import value_hold
from llmloop.guards.toxicity import ToxicityConfig, ToxicityGuard


class DefaultGuardsConfig(BaseModel):
    """Which default guards to build, and how (each section is that guard's own config)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: SizeConfig | None = Field(
        default_factory=SizeConfig, description="Size/abuse limits on requests; None disables."
    )
    injection: InjectionConfig | None = Field(
        default_factory=InjectionConfig, description="Prompt-injection detector; None disables."
    )
    pii: dict[str, Any] | None = Field(
        default_factory=dict,
        description="PiiGuardConfig fields for llmloop.guards.pii (redacts by default); None "
        "disables.",
    )
    canary: CanaryConfig | None = Field(
        default_factory=CanaryConfig,
        description="Canary tokens planted in system prompts; no tokens means no guard.",
    )
    links: LinksConfig | None = Field(
        default_factory=LinksConfig,
        description="Markdown/HTML exfiltration, link allow-list and ANSI escapes; None disables.",
    )
    toxicity: ToxicityConfig | None = Field(
        default_factory=ToxicityConfig, description="Toxicity of the output; None disables."
    )
    json_schema: JsonSchemaConfig | None = Field(
        default=None, description="Validate the final output against a JSON schema when set."
    )


def _pii_guard(fields: dict[str, Any]) -> Guard | None:
    try:
        module = importlib.import_module("llmloop.guards.pii")
    except ImportError:
        return None
    guard_cls = getattr(module, "PiiGuard", None)
    if guard_cls is None:
        return None
    guard: Guard = guard_cls(guard_cls.config_cls(**fields))
    if not hasattr(guard, "hold_from"):
        # Without a hold policy a stream keeps the guard's whole window (1 KiB) back, which
        # delays the first token; PII values are short: holding the value being written is enough.
        guard.hold_from = value_hold  # type: ignore[attr-defined]
    return guard


def default_guards(config: DefaultGuardsConfig | None = None) -> list[Guard]:
    """The default guards, cheapest first, built from ``config`` (defaults when None)."""
    cfg = config or DefaultGuardsConfig()
    guards: list[Guard] = []
    if cfg.size is not None:
        guards.append(SizeGuard(cfg.size))
    if cfg.canary is not None and cfg.canary.tokens:
        guards.append(CanaryGuard(cfg.canary))
    if cfg.links is not None:
        guards.append(LinksGuard(cfg.links))
    if cfg.injection is not None:
        guards.append(InjectionGuard(cfg.injection))
    if cfg.pii is not None and (pii := _pii_guard(cfg.pii)) is not None:
        guards.append(pii)
    if cfg.toxicity is not None:
        guards.append(ToxicityGuard(cfg.toxicity))
    if cfg.json_schema is not None:
        guards.append(JsonSchemaGuard(cfg.json_schema))
    return guards


def warm_up(guards: list[Guard]) -> None:
    """Load models and train classifiers now, so the first request does not pay for it."""
    for guard in guards:
        guard.check_input([])
        guard.check_output("warm up", final=False)
    for guard in guards:
        detector = getattr(guard, "detector", None)
        if detector is not None and hasattr(detector, "score"):
            detector.score("warm up")
