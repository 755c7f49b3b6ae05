"""The vllm engine without vllm installed: a clear missing-extra error (the GPU tests run it)."""

from __future__ import annotations

import importlib.util

import pytest

from llmloop.core.chat import EngineSpec
from llmloop.errors import ConfigError, MissingExtraError


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm installed")
def test_without_vllm_the_error_names_the_extra() -> None:
    from llmloop.engines.vllm import VLLMEngine

    with pytest.raises(MissingExtraError, match=r"llmloop\[vllm\]"):
        VLLMEngine(EngineSpec(kind="vllm", model="some/model"))


def test_bad_options_are_config_errors() -> None:
    from llmloop.engines.vllm import VLLMEngine

    with pytest.raises(ConfigError, match="gpu_memory_utilization"):
        VLLMEngine(EngineSpec(kind="vllm", model="m", options={"gpu_memory_utilization": 2}))


def test_importing_llmloop_does_not_import_heavy_libraries() -> None:
    import subprocess
    import sys

    code = (
        "import sys, llmloop, llmloop.engines.hf, llmloop.engines.vllm, llmloop.engines.llamacpp;"
        "print(sorted(m for m in ('torch', 'transformers', 'vllm') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_tool_parser_option_is_checked_without_vllm() -> None:
    from llmloop.engines.vllm import parse_config

    assert parse_config({}).tool_parser == "auto"
    assert parse_config({"tool_parser": "llama3_json"}).tool_parser == "llama3_json"
    with pytest.raises(ConfigError, match="tool_parser"):
        parse_config({"tool_parser": "xml"})
