"""Template expansion and paraphrase through a caller-supplied async generate()."""

from __future__ import annotations

import pytest

from llmloop.data.augment import ParaphraseConfig, TemplateConfig, expand_templates, paraphrase_rows
from llmloop.errors import ConfigError, InvalidInputError


def test_template_expansion() -> None:
    config = TemplateConfig(
        templates={
            "prompt": "Capital of {{ country }} in {{ lang }}?",
            "response": "{{ country | upper }}",
        },
        variables={"country": ["France", "Peru"], "lang": ["en", "fr"]},
        keep_variables=True,
    )
    rows, report = expand_templates(config)
    assert len(rows) == 4 and report.rows_added == 4
    assert rows[0] == {
        "prompt": "Capital of France in en?",
        "response": "FRANCE",
        "country": "France",
        "lang": "en",
    }


@pytest.mark.parametrize(
    ("templates", "variables", "message"),
    [
        ({"text": "{{ missing }}"}, {"x": [1]}, "template failed"),
        ({"text": "{% for %}"}, {"x": [1]}, "does not parse"),
        ({"text": "{{ x }}"}, {"x": []}, "at least one value"),
        ({"text": "{{ x.__class__.__mro__ }}"}, {"x": [1]}, "template failed"),
        ({"text": '{{ "x" * 10**9 }}'}, {"x": [1]}, "template failed"),  # not a memory bomb
        ({"text": "{{ x ** 99999 ** 9 }}"}, {"x": [9]}, "template failed"),
    ],
)
def test_template_errors(
    templates: dict[str, str], variables: dict[str, list[object]], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        expand_templates(TemplateConfig(templates=templates, variables=variables))


def test_template_size_limit() -> None:
    config = TemplateConfig(
        templates={"text": "{{ a }}{{ b }}"},
        variables={"a": list(range(10)), "b": list(range(10))},
        max_rows=50,
    )
    with pytest.raises(ConfigError, match="100 rows, over max_rows=50"):
        expand_templates(config)


async def test_paraphrase_with_fake_generate() -> None:
    seen: list[str] = []

    async def generate(prompt: str) -> str:
        seen.append(prompt)
        text = prompt.rsplit("\n", 1)[-1]
        if "fail" in text:
            raise RuntimeError("engine down")
        if "same" in text:
            return text
        return f"In other words: {text}"

    rows = [
        {"prompt": "hello there", "response": "hi"},
        {"prompt": "please fail"},
        {"prompt": "same"},
    ]
    out, report = await paraphrase_rows(rows, generate, ParaphraseConfig(variants=2, concurrency=2))
    assert out[:3] == rows
    assert (
        out[3:]
        == [{"prompt": "In other words: hello there", "response": "hi", "augmented_from": 0}] * 2
    )
    assert (report.rows_in, report.rows_added, report.failures) == (3, 2, 4)
    assert report.errors[0] == "row 1: RuntimeError: engine down"
    assert len(seen) == 6 and seen[0].endswith("hello there")


async def test_paraphrase_errors() -> None:
    async def broken(prompt: str) -> str:
        raise RuntimeError("boom")

    with pytest.raises(InvalidInputError, match="row 0 failed: boom"):
        await paraphrase_rows([{"prompt": "x"}], broken, ParaphraseConfig(on_error="fail"))
    with pytest.raises(InvalidInputError, match="no text field 'prompt'"):
        await paraphrase_rows([{"text": "x"}], broken)
    with pytest.raises(ConfigError, match="must contain"):
        await paraphrase_rows([{"prompt": "x"}], broken, ParaphraseConfig(instruction="no slot"))
