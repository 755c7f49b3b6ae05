"""The gateway as a real server (uvicorn subprocess on 127.0.0.1): the official client streams,
LiteLLM works as a client unchanged, and SIGTERM drains in-flight requests, flushes every trace
and exits 0. ``llmloop serve`` itself as an operator runs it: a port in use is refused at once,
a stalled client cannot hold the shutdown, and ``--workers`` share their metrics."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.fixtures.served import LLMLOOP, ServerProcess, free_port, kill, start, start_serve

from llmloop.config import load_settings
from llmloop.core.governance import ApiKeyCreate
from llmloop.services.actors import local_actor
from llmloop.services.container import Container

ROOT = Path(__file__).resolve().parents[2]
LITELLM_PY = ROOT / ".bench" / "litellm" / "bin" / "python"
# uvicorn >= 0.29 re-raises SIGTERM after its graceful shutdown (exit -15) unless a handler was
# installed before it started; a no-op handler makes a drained shutdown exit 0. `llmloop serve`
# must do the same.
LAUNCH = (
    "import signal, sys, uvicorn\n"
    "signal.signal(signal.SIGTERM, lambda *_: None)\n"
    "uvicorn.run('llmloop.api.app:create_app', factory=True, host='127.0.0.1',"
    " port=int(sys.argv[1]), log_level='warning')\n"
)


@dataclass
class Server:
    proc: subprocess.Popen[str]
    url: str
    key: str
    home: Path


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    deployments = tmp_path / "deployments.yaml"
    deployments.write_text(json.dumps({"deployments": [
        {"name": "chat", "targets": [{"engine": {"kind": "echo"}}]},
        {"name": "agent", "targets": [{"engine": {"kind": "echo", "options": {
            "tool_arguments": {"get_weather": {"city": "Paris"}}}}}]},
        {"name": "slow", "targets": [{"engine": {"kind": "echo",
                                                 "options": {"delay_s": 0.1}}}]}]}))  # fmt: skip
    env = {**os.environ, "LLMLOOP_HOME": str(tmp_path / "home"),
           "LLMLOOP_DEPLOYMENTS_FILE": str(deployments), "LLMLOOP_GATEWAY_RELOAD_S": "0",
           "LLMLOOP_TRACE_FLUSH_MS": "60000", "LLMLOOP_TRACE_BATCH_SIZE": "100000",
           "LLMLOOP_TRACE_WRITER": "process"}  # fmt: skip
    settings = load_settings(env=env)
    container = Container(settings)
    key = container.keys.create(ApiKeyCreate(name="e2e", role="admin"), local_actor()).secret
    container.close()
    port = free_port()
    process = start([sys.executable, "-c", LAUNCH, str(port)], port, env, cwd=ROOT, deadline_s=30)
    yield Server(process.proc, process.url, key, tmp_path / "home")
    kill(process)


@dataclass
class Serve:
    """``llmloop serve`` itself (the fixture above runs uvicorn directly)."""

    proc: subprocess.Popen[str]
    url: str
    port: int
    key: str


@pytest.fixture
def serve(server: Server) -> Iterator[Callable[..., Serve]]:
    """Start ``llmloop serve ARGS`` on a fresh port with the ``server`` fixture's home."""
    started: list[ServerProcess] = []
    env = {**os.environ, "LLMLOOP_HOME": str(server.home),
           "LLMLOOP_DEPLOYMENTS_FILE": str(server.home.parent / "deployments.yaml"),
           "LLMLOOP_GATEWAY_RELOAD_S": "0", "LLMLOOP_REDIS_URL": ""}  # fmt: skip

    def start_one(*args: str) -> Serve:
        port = free_port()
        log = server.home.parent / f"serve-{port}.log"  # a file: a pipe could fill up
        process = start_serve(*args, env=env, port=port, output=log, deadline_s=120)
        started.append(process)
        return Serve(process.proc, process.url, port, server.key)

    yield start_one
    for process in started:
        kill(process)


def test_a_port_in_use_is_refused_before_anything_loads(server: Server) -> None:
    port = server.url.rsplit(":", 1)[1]
    env = {**os.environ, "LLMLOOP_HOME": str(server.home)}
    out = subprocess.run([LLMLOOP, "serve", "--port", port], env=env, capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert out.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    assert "application startup" not in out.stderr + out.stdout  # refused before the app ran


def test_sigterm_does_not_wait_for_ever_on_a_stalled_client(serve: Callable[..., Serve]) -> None:
    """A client that stops sending its body (or reading its stream) holds its connection open;
    the drain gives it ``--drain-timeout`` seconds, then the server exits 0."""
    srv = serve("--drain-timeout", "1")
    with socket.create_connection(("127.0.0.1", srv.port)) as stalled:
        auth = b"Authorization: Bearer " + srv.key.encode()
        stalled.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" + auth
                        + b"\r\nContent-Length: 100\r\n\r\n{")  # fmt: skip
        time.sleep(0.5)
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.proc.wait(60) == 0  # without a drain timeout: until the client goes


def test_workers_report_metrics_of_all_workers(serve: Callable[..., Serve]) -> None:
    """``--workers 2`` share one port, so a scrape reaches either worker: each must report the
    counts of both (prometheus_client's multiprocess mode), or rates jump back and forth."""
    srv = serve("--workers", "2")
    headers = {"Authorization": f"Bearer {srv.key}"}
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
    for _ in range(12):  # a connection each: the kernel spreads them over the workers
        assert httpx.post(f"{srv.url}/v1/chat/completions", json=body, headers=headers,
                          timeout=30).status_code == 200  # fmt: skip
    seen = set()
    for _ in range(8):
        text = httpx.get(f"{srv.url}/metrics", timeout=30).text
        families = {f.name: f for f in text_string_to_metric_families(text)}
        samples = families["llmloop_gateway_requests"].samples
        seen.add(sum(s.value for s in samples if s.name.endswith("_total")))
    assert seen == {12.0}
    srv.proc.send_signal(signal.SIGTERM)
    assert srv.proc.wait(60) == 0


def _trace_writer_children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if not entry.name.isdigit():
                continue
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == pid and b"trace_process" in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def _count_traces(home: Path) -> int:
    container = Container(load_settings({"home": str(home)}, env={}))
    try:
        return container.gateway.traces.count()
    finally:
        container.close()


async def test_sigterm_drains_in_flight_and_loses_no_trace(server: Server) -> None:
    client = openai.AsyncOpenAI(api_key=server.key, base_url=f"{server.url}/v1", max_retries=0)
    msgs = [{"role": "user", "content": "hello world"}]
    for i in range(20):
        resp = await client.chat.completions.create(model="chat", messages=msgs, user=f"u{i}")  # type: ignore[arg-type]
        assert resp.choices[0].message.content == "hello world"
    stream = await client.chat.completions.create(
        model="chat",
        messages=msgs,
        stream=True,
        stream_options={"include_usage": True},  # type: ignore[arg-type]
    )
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "hello world"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 4
    words = " ".join(f"w{i}" for i in range(10))  # about 1 s of generation
    slow = asyncio.create_task(client.chat.completions.create(
        model="slow", messages=[{"role": "user", "content": words}]))  # fmt: skip
    await asyncio.sleep(0.3)
    writers = _trace_writer_children(server.proc.pid)
    assert len(writers) == 1  # the writer process took the first batch (the server's default)
    server.proc.send_signal(signal.SIGTERM)
    answer = await slow
    assert answer.choices[0].message.content == words  # the in-flight request finished
    assert server.proc.wait(30) == 0
    assert _count_traces(server.home) == 22
    assert not any(Path(f"/proc/{pid}").exists() for pid in writers)  # it left with the server
    await client.close()


def _litellm_python() -> str:
    """The .venv's Python when LiteLLM is installed there (the dev extra), else the benchmark's."""
    if importlib.util.find_spec("litellm") is not None:
        return sys.executable
    if LITELLM_PY.exists():
        return str(LITELLM_PY)
    pytest.skip("LiteLLM is not installed (the dev extra, or .bench/litellm)")


def test_litellm_as_a_client(server: Server) -> None:
    python = _litellm_python()
    script = (
        "import litellm, sys\n"
        "litellm.suppress_debug_info = True\n"
        "kw = dict(model='openai/chat', api_base=sys.argv[1], api_key=sys.argv[2],"
        " messages=[{'role': 'user', 'content': 'via litellm'}])\n"
        "r = litellm.completion(**kw)\n"
        "print('OUT', r.choices[0].message.content, r.usage.prompt_tokens > 0)\n"
        "print('OUT', ''.join(c.choices[0].delta.content or '' for c in litellm.completion("
        "stream=True, **kw)))\n"
        "try:\n"
        "    litellm.completion(**{**kw, 'api_key': 'sk-wrong'})\n"
        "except litellm.AuthenticationError as e:\n"
        "    print('OUT AuthenticationError', e.status_code)\n"
    )  # fmt: skip
    # LiteLLM fetches its model price list from the internet at import unless told not to.
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    out = subprocess.run([python, "-c", script, f"{server.url}/v1", server.key],
                         capture_output=True, text=True, timeout=120, env=env)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [line for line in out.stdout.splitlines() if line.startswith("OUT ")]
    assert lines == ["OUT via litellm True", "OUT via litellm", "OUT AuthenticationError 401"]


def test_langchain_chat_openai(server: Server) -> None:
    langchain_openai = pytest.importorskip(
        "langchain_openai", reason="langchain-openai is not installed in .venv"
    )
    llm = langchain_openai.ChatOpenAI(model="chat", base_url=f"{server.url}/v1",
                                      api_key=server.key, max_retries=0)  # fmt: skip
    assert llm.invoke("from langchain").content == "from langchain"
    assert "".join(str(c.content) for c in llm.stream("streamed")) == "streamed"
    # Tools over real HTTP: a forced call, whole and streamed (deltas merged by LangChain).
    from langchain_core.tools import tool

    @tool
    def current_time() -> str:
        """The time now."""
        return "noon"

    bound = llm.bind_tools([current_time], tool_choice="current_time")
    [call] = bound.invoke("what time is it?").tool_calls
    assert call["name"] == "current_time" and call["args"] == {}
    merged = None
    for part in bound.stream("what time is it?"):
        merged = part if merged is None else merged + part
    assert merged is not None and [c["name"] for c in merged.tool_calls] == ["current_time"]


def test_responses_api_over_http(server: Server) -> None:
    """The official client's Responses API against the real server: a stored conversation
    continued by id, a stream read through the SDK's own event accumulator, and a 404."""
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=server.key, max_retries=0)
    first = client.responses.create(model="chat", input="first turn", instructions="Be brief.")
    assert first.output_text == "first turn" and first.status == "completed"
    second = client.responses.create(model="chat", input="second turn",
                                     previous_response_id=first.id)  # fmt: skip
    assert second.output_text == "second turn"
    with client.responses.stream(model="chat", input="streamed over http",
                                 previous_response_id=second.id) as stream:  # fmt: skip
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == "streamed over http"
    assert client.responses.retrieve(final.id).output_text == "streamed over http"
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="chat", input="x", previous_response_id="resp_unknown")


def test_openai_agents_sdk(server: Server) -> None:
    """The OpenAI Agents SDK's agent loop (Responses API: a function call, the tool's output
    sent back, the final answer), whole, streamed and chained by response id."""
    agents = pytest.importorskip("agents", reason="openai-agents is not installed in .venv")
    agents.set_tracing_disabled(True)
    client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=server.key, max_retries=0)
    model = agents.OpenAIResponsesModel(model="agent", openai_client=client)
    seen: list[str] = []

    @agents.function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        seen.append(city)
        return f"sunny in {city}"

    agent = agents.Agent(name="helper", instructions="Be brief.", tools=[get_weather],
                         model=model)  # fmt: skip

    async def run() -> None:
        result = await agents.Runner.run(agent, "call get_weather for me")
        assert result.final_output == "sunny in Paris"
        streamed = agents.Runner.run_streamed(agent, "get_weather, streamed")
        kinds = {event.type async for event in streamed.stream_events()}
        assert streamed.final_output == "sunny in Paris" and "raw_response_event" in kinds
        first = await agents.Runner.run(agent, "hello", auto_previous_response_id=True)
        chained = await agents.Runner.run(
            agent, "again", previous_response_id=first.last_response_id
        )
        assert chained.final_output == "again"
        await client.close()

    asyncio.run(run())
    assert seen == ["Paris", "Paris"]
