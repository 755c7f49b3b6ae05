"""Canary tokens: minted, found verbatim and disguised, redacted, and held back while partial."""

from __future__ import annotations

import base64

import pytest

from llmloop.guards.canary import CanaryConfig, CanaryGuard, make_canary

TOKEN = "llmloop-canary-0123456789abcdef"


def guard(**kw: object) -> CanaryGuard:
    return CanaryGuard(CanaryConfig(tokens=[TOKEN], **kw))  # type: ignore[arg-type]


def test_make_canary_is_fresh() -> None:
    a, b = make_canary(), make_canary()
    assert a != b and a.startswith("llmloop-canary-") and len(a) == len("llmloop-canary-") + 16


@pytest.mark.parametrize(
    ("text", "rule_id"),
    [
        (f"The code is {TOKEN}.", "canary.verbatim"),
        (f"The code is {TOKEN.upper()}.", "canary.verbatim"),
        ("Spelled: " + " ".join(TOKEN), "canary.disguised"),
        (f"Backwards: {TOKEN[::-1]}", "canary.disguised"),
        (f"b64: {base64.b64encode(TOKEN.encode()).decode()}", "canary.base64"),
    ],
)
def test_leaks_are_found(text: str, rule_id: str) -> None:
    [verdict] = guard().check_output(text, final=False)
    assert verdict.rule_id == rule_id and verdict.action == "block"


def test_no_tokens_or_clean_text_means_no_verdict() -> None:
    assert guard().check_output("I can't share internal codes.", final=True) == []
    assert CanaryGuard().check_output(TOKEN, final=True) == []
    assert guard(disguises=False).check_output(" ".join(TOKEN), final=True) == []


def test_redact_replaces_the_token() -> None:
    [verdict] = guard(action="redact").check_output(f"code {TOKEN} end", final=True)
    assert verdict.redacted == "code [REDACTED] end"


def test_hold_from_keeps_a_possible_token_prefix() -> None:
    g = guard()
    assert g.hold_from("here: llmloop-can") == len("here: ")
    assert g.hold_from("nothing to hold") == len("nothing to hold")


def test_short_tokens_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 8"):
        CanaryConfig(tokens=["abc"])
