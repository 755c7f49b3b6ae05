"""Engine test fixtures: the tiny model with a tool-rendering (hermes-style) chat template."""

from __future__ import annotations

from pathlib import Path

import pytest

# The weather tools of test_hf_tools.py, as text the tokenizer learns from.
_TOOL_TEXT = str(
    [
        {
            "type": "function",
            "function": {
                "name": name,
                "description": f"The {what} now.",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
        for name, what in (("get_weather", "weather"), ("get_local_time", "time"))
    ]
)


@pytest.fixture(scope="session")
def tools_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama whose chat template renders tools and calls (``TOOLS_CHAT_TEMPLATE``)."""
    pytest.importorskip("transformers")
    from llmloop.testing.tiny import DEFAULT_TEXTS, TOOLS_CHAT_TEMPLATE, build_tiny_llama

    # Tool schemas are long in a tokenizer that never saw JSON: teach it some, give it room.
    texts = [*DEFAULT_TEXTS, *([_TOOL_TEXT, TOOLS_CHAT_TEMPLATE] * 20)]
    out = tmp_path_factory.mktemp("tiny-tools")
    return build_tiny_llama(out, texts, max_positions=2048, chat_template=TOOLS_CHAT_TEMPLATE)
