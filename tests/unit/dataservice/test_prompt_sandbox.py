"""Prompt templates render in a bounded sandbox: escapes, memory and number bombs are refused
with a clear message (quickly, and while a version is created too), ordinary templates render."""

from __future__ import annotations

import time

import pytest

from llmloop.errors import InvalidInputError
from llmloop.services.prompts import render_template, template_variables


@pytest.mark.parametrize(
    ("template", "why"),
    [
        ('{{ "x" * 1000000000 }}', "repeating a sequence"),
        ("{{ [0] * 10**9 }}", "repeating a sequence"),
        ("{{ 99999 ** 99999 ** 9 }}", "too large a number"),
        ("{{ n ** 100000 }}", "too large a number"),
        ('{{ "x"|center(10**9) }}', "filter center"),
        ('{{ "x"|indent(10**9) }}', "filter indent"),
        ('{{ "x".ljust(n * 10**9) }}', "str.ljust"),
        ('{{ "%999999999d" % 1 }}', "format width"),
        ('{{ "{:>999999999}".format(1) }}', "format width"),
        ('{{ "{:>999999999}"["format"](1) }}', "format width"),
        ('{{ "%.999999999f"|format(1) }}', "format width"),
        ('{% for i in range(99999) %}{{ "y" * 99 }}{% endfor %}', "over 2000000 characters"),
        ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "recurses"),
        ('{{ "".__class__.__mro__ }}', "unsafe"),
        ("{{ cycler.__init__.__globals__ }}", "unsafe"),
    ],
)
def test_bombs_and_escapes_are_refused(template: str, why: str) -> None:
    started = time.monotonic()
    template_variables(template)  # creating the version neither hangs nor fails oddly
    with pytest.raises(InvalidInputError, match=why):
        render_template(template, {"n": 7})
    assert time.monotonic() - started < 20


def test_ordinary_templates_still_render() -> None:
    template = (
        '{{ "ab" * 3 }} {{ 2 ** 10 }} {{ 7 % 3 }} {{ "%05.1f" % 3.14159 }} '
        '{{ "{:>6}".format(price) }} {{ "%d"|format(5000000) }} {{ name|center(9) }}|'
        "{{ items|join(', ') }} {{ 10**30 }}"
    )
    text = render_template(template, {"price": 12, "name": "Zoë 日本", "items": ["a", "b"]})
    assert text == (
        "ababab 1024 1 003.1     12 5000000   Zoë 日本 |a, b 1000000000000000000000000000000"
    )
    with pytest.raises(InvalidInputError, match="missing template variable"):
        render_template("{{ question }}", {})
    assert render_template("{{ q }}", {"q": "{{ 7*7 }}", "extra": 1}) == "{{ 7*7 }}"
