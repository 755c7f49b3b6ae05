"""Shared fixtures: offline hub settings and a tiny local model built once per session."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# In-process apps write traces from a thread: a writer process per test app would cost a
# Python start-up each. The writer process (the default) has its own tests, and the e2e server
# runs with it.
os.environ.setdefault("LLMLOOP_TRACE_WRITER", "thread")

_MARKER_DIRS = {"unit", "contract", "api", "cli", "e2e", "gpu"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Markers from folder names: tests/unit/... is marked ``unit`` and so on."""
    for item in items:
        parts = Path(str(item.fspath)).parts
        for part in parts:
            if part in _MARKER_DIRS:
                item.add_marker(getattr(pytest.mark, part))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Everything imported to collect the suite (torch, transformers, a million objects) is set
    aside from the cyclic collector: each full collection then walks only what tests made since.
    The trainers' accelerate calls gc.collect() per run, which cost about 1 s each on the whole
    heap (tests/unit/trainers: 21.9 s of collections, 7.2 s frozen)."""
    gc.collect()
    gc.freeze()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random Llama with a byte-level BPE tokenizer and a chat template."""
    pytest.importorskip("transformers")
    from llmloop.testing.tiny import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


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
