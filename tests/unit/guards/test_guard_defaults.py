"""The default guard set: what it contains, how sections are disabled, warm-up."""

from __future__ import annotations

import pytest

from llmloop.guards.canary import CanaryConfig
from llmloop.guards.defaults import DefaultGuardsConfig, default_guards, warm_up
from llmloop.guards.schema import JsonSchemaConfig


def test_default_set_is_cheapest_first_and_includes_pii() -> None:
    names = [g.name for g in default_guards()]
    assert names == ["size", "links", "injection", "pii", "toxicity"]


def test_canary_and_schema_are_added_when_configured() -> None:
    cfg = DefaultGuardsConfig(
        canary=CanaryConfig(tokens=["llmloop-canary-0000111122223333"]),
        json_schema=JsonSchemaConfig(json_schema={"type": "object"}),
    )
    names = [g.name for g in default_guards(cfg)]
    assert names[1] == "canary" and names[-1] == "json_schema"


def test_sections_can_be_disabled() -> None:
    cfg = DefaultGuardsConfig(size=None, injection=None, pii=None, links=None, toxicity=None)
    assert default_guards(cfg) == []


def test_pii_fields_are_validated_and_unknown_sections_refused() -> None:
    guards = default_guards(DefaultGuardsConfig(pii={"action": "block"}))
    pii = next(g for g in guards if g.name == "pii")
    assert pii.config.action == "block"  # type: ignore[attr-defined]
    with pytest.raises(ValueError):
        DefaultGuardsConfig(unknown={})  # type: ignore[call-arg]


def test_warm_up_loads_models() -> None:
    warm_up(default_guards())
