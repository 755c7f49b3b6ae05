"""The llamacpp engine: the missing-extra error, and the child-server path with a fake binary."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from llmloop.core.chat import ChatMessage, EngineSpec, GenerationRequest, SamplingParams
from llmloop.engines.llamacpp import LlamaCppEngine, _capped
from llmloop.errors import ConfigError, MissingExtraError, UpstreamError

FAKE_SERVER = """\
import argparse, asyncio
from llmloop.core.chat import EngineSpec
from llmloop.engines.echo import EchoEngine
from llmloop.testing.mock_upstream import serve_forever

parser = argparse.ArgumentParser()
parser.add_argument("-m"); parser.add_argument("--host"); parser.add_argument("--port", type=int)
args, _ = parser.parse_known_args()
asyncio.run(serve_forever(EchoEngine(EngineSpec(kind="echo", model=args.m)), args.port))
"""


@pytest.fixture
def fake_binary(tmp_path: Path) -> Path:
    script = tmp_path / "llama-server"
    script.write_text(f"#!{sys.executable}\n{FAKE_SERVER}")
    script.chmod(0o755)
    return script


@pytest.fixture
def gguf(tmp_path: Path) -> str:
    """A stand-in GGUF file (the fake server never reads it)."""
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF")
    return str(path)


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is not None, reason="bindings installed")
def test_without_bindings_the_error_names_the_extra() -> None:
    with pytest.raises(MissingExtraError, match=r"llmloop\[llamacpp\]"):
        LlamaCppEngine(EngineSpec(kind="llamacpp", model="model.gguf"))


async def test_child_server_serves_and_stops(fake_binary: Path, gguf: str) -> None:
    engine = LlamaCppEngine(
        EngineSpec(kind="llamacpp", model=gguf, options={"server_binary": str(fake_binary)})
    )
    req = GenerationRequest(
        model="m",
        messages=[ChatMessage(role="user", content="hello gguf world")],
        sampling=SamplingParams(max_tokens=2),
    )
    await engine.start()
    process = engine._process
    try:
        result = await engine.chat(req)
        assert (result.text, result.finish_reason) == ("hello gguf", "length")
        chunks = [c async for c in engine.stream(req)]
        assert chunks[-1].finish_reason == "length" and chunks[-1].usage is not None
        # The gateway's own cap (not the client's choice) still reaches our child server.
        default_cap = SamplingParams.model_validate({"max_tokens": 2})
        default_cap.__pydantic_fields_set__.discard("max_tokens")
        capped = await engine.chat(req.model_copy(update={"sampling": default_cap}))
        assert (capped.text, capped.finish_reason) == ("hello gguf", "length")
    finally:
        await engine.aclose()
    assert process is not None and process.returncode is not None


async def test_a_child_that_dies_is_an_upstream_error(tmp_path: Path, gguf: str) -> None:
    script = tmp_path / "broken-server"
    script.write_text("#!/bin/sh\necho 'cannot open model' >&2\nexit 3\n")
    script.chmod(0o755)
    engine = LlamaCppEngine(
        EngineSpec(kind="llamacpp", model=gguf, options={"server_binary": str(script)})
    )
    with pytest.raises(UpstreamError, match="cannot open model"):
        await engine.start()
    await engine.aclose()


def test_bad_options_are_config_errors(fake_binary: Path, gguf: str) -> None:
    with pytest.raises(ConfigError, match="n_ctx"):
        LlamaCppEngine(
            EngineSpec(
                kind="llamacpp",
                model=gguf,
                options={"server_binary": str(fake_binary), "n_ctx": 1},
            )
        )


def test_the_model_is_a_gguf_file_or_a_folder_holding_one(
    fake_binary: Path, gguf: str, tmp_path: Path
) -> None:
    def make(model: str, binary: str = str(fake_binary)) -> LlamaCppEngine:
        return LlamaCppEngine(
            EngineSpec(kind="llamacpp", model=model, options={"server_binary": binary})
        )

    assert make(gguf).model_path == gguf
    assert make(str(tmp_path)).model_path == gguf  # a registry version's folder
    with pytest.raises(ConfigError, match=r"GGUF file .*missing\.gguf not found"):
        make(str(tmp_path / "missing.gguf"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"must hold one \.gguf file \(found: none\)"):
        make(str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="server_binary '/no/llama-server'"):
        make(gguf, "/no/llama-server")


async def test_a_child_that_logs_a_lot_is_not_blocked_by_its_pipe(
    tmp_path: Path, gguf: str
) -> None:
    """llama-server logs every request: an unread stderr pipe would fill and stall it."""
    script = tmp_path / "noisy-server"
    noise = "import sys\nfor _ in range(4000): sys.stderr.write('x' * 99 + '\\n')\n"
    script.write_text(f"#!{sys.executable}\n{noise}{FAKE_SERVER}")
    script.chmod(0o755)
    options = {"server_binary": str(script), "startup_timeout_s": 20}
    engine = LlamaCppEngine(EngineSpec(kind="llamacpp", model=gguf, options=options))
    req = GenerationRequest(model="m", messages=[ChatMessage(role="user", content="hi")])
    try:
        assert (await engine.chat(req)).text == "hi"
    finally:
        await engine.aclose()


def test_tools_without_a_description_get_one_for_llama_server() -> None:
    """OpenAI makes a function's description optional; llama-server's templates answer 500
    without it."""
    bare = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}
    described = {"type": "function", "function": {"name": "f", "description": "does f"}}
    req = GenerationRequest(model="m", messages=[ChatMessage(role="user", content="hi")],
                            tools=[bare, described])  # fmt: skip
    sent = _capped(req)
    assert sent.tools == [
        {
            "type": "function",
            "function": {"name": "get_weather", "parameters": {}, "description": ""},
        },
        described,
    ]
    assert req.tools is not None and "description" not in req.tools[0]["function"]  # not mutated
    plain = req.model_copy(update={"tools": [described]})
    plain.sampling.__pydantic_fields_set__.add("max_tokens")
    assert _capped(plain) is plain  # nothing to change: the same request


def test_an_embeddings_child_pools_and_a_chat_target_refuses_to_embed(
    fake_binary: Path, gguf: str
) -> None:
    options = {"server_binary": str(fake_binary), "embeddings": True}
    engine = LlamaCppEngine(EngineSpec(kind="llamacpp", model=gguf, options=options))
    args = engine._server_args(8080)
    assert args[args.index("--embeddings") + 1 : args.index("--embeddings") + 3] == [
        "--pooling", "mean"]  # fmt: skip
    cls = {**options, "pooling": "cls"}
    assert "cls" in LlamaCppEngine(
        EngineSpec(kind="llamacpp", model=gguf, options=cls)
    )._server_args(1)
    with pytest.raises(ConfigError, match="pooling"):
        LlamaCppEngine(
            EngineSpec(kind="llamacpp", model=gguf, options={**options, "pooling": "max"})
        )
