"""OpenTelemetry exporters against a real `llmloop serve`: the SDK's own OTLP/HTTP exporter,
configured only by the standard OTEL_* variables, delivers an app's GenAI spans; and a second
llmloop server exports its gateway traces over OTLP into the first one."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

pytest.importorskip("opentelemetry.exporter.otlp.proto.http")

LLMLOOP = str(Path(sys.executable).with_name("llmloop"))


@dataclass
class Server:
    url: str
    key: str
    proc: subprocess.Popen[str]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(home: Path, extra_env: dict[str, str] | None = None) -> Server:
    deployments = home.parent / f"{home.name}-deployments.yaml"
    deployments.write_text(
        json.dumps({"deployments": [{"name": "chat", "targets": [{"engine": {"kind": "echo"}}]}]})
    )
    env = {**os.environ, "LLMLOOP_HOME": str(home), "LLMLOOP_DEPLOYMENTS_FILE": str(deployments),
           "LLMLOOP_TRACE_FLUSH_MS": "100", **(extra_env or {})}  # fmt: skip
    made = subprocess.run(
        [LLMLOOP, "keys", "create", "app", "--role", "editor", "--json"],
        env=env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    port = _port()
    proc = subprocess.Popen(
        [LLMLOOP, "serve", "--port", str(port)], env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return Server(url, json.loads(made.stdout)["secret"], proc)
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    pytest.fail(f"the server did not start: {proc.communicate()[0]}")


def _stop(server: Server) -> None:
    server.proc.terminate()
    try:
        output = server.proc.communicate(timeout=30)[0]
    except subprocess.TimeoutExpired:
        server.proc.kill()
        output = server.proc.communicate()[0]
    assert "Traceback" not in output, output


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Server]:
    server = _start(tmp_path / "receiver")
    yield server
    _stop(server)


def _wait_for(server: Server, found: Callable[[list[dict[str, Any]]], bool]) -> list[Any]:
    headers = {"Authorization": f"Bearer {server.key}"}
    deadline = time.time() + 30
    while True:
        traces = httpx.get(f"{server.url}/api/traces", headers=headers, timeout=5).json()
        if found(traces) or time.time() > deadline:
            return traces  # type: ignore[no-any-return]
        time.sleep(0.2)


def test_the_sdk_exporter_delivers_an_apps_genai_spans(
    receiver: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # Configured the standard way, as a user's app would be: base endpoint and a header.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"{receiver.url}/otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"Authorization=Bearer%20{receiver.key}")
    provider = TracerProvider(resource=Resource.create({"service.name": "shop-assistant"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    tracer = provider.get_tracer("shop")
    with tracer.start_as_current_span("chat gpt-4o-mini") as span:
        span.set_attributes({
            "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.usage.input_tokens": 21, "gen_ai.usage.output_tokens": 9,
            "gen_ai.prompt.0.role": "user", "gen_ai.prompt.0.content": "Is it in stock?",
            "gen_ai.completion.0.content": "Yes, two left.",
        })  # fmt: skip
    assert provider.force_flush(10_000)
    provider.shutdown()
    traces = _wait_for(receiver, lambda ts: any(t["deployment"] == "shop-assistant" for t in ts))
    shop = [t for t in traces if t["deployment"] == "shop-assistant"]
    assert len(shop) == 1
    assert shop[0]["request_model"] == "gpt-4o-mini" and shop[0]["input_tokens"] == 21
    assert shop[0]["request_text"] == "user: Is it in stock?"
    assert shop[0]["response_text"] == "Yes, two left."


def test_a_gateway_exports_its_traces_over_otlp_into_another(
    receiver: Server, tmp_path: Path
) -> None:
    sender = _start(
        tmp_path / "sender",
        {"LLMLOOP_OTEL_EXPORTER": "otlp",
         "LLMLOOP_OTEL_ENDPOINT": f"{receiver.url}/otlp/v1/traces",
         "OTEL_EXPORTER_OTLP_TRACES_HEADERS": f"Authorization=Bearer%20{receiver.key}",
         "OTEL_BSP_SCHEDULE_DELAY": "200"},
    )  # fmt: skip
    try:
        client = openai.OpenAI(api_key=sender.key, base_url=f"{sender.url}/v1", max_retries=0)
        client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
        traces = _wait_for(receiver, lambda ts: any(t["target"] == "otlp" for t in ts))
    finally:
        _stop(sender)
    exported = [t for t in traces if t["target"] == "otlp"]
    assert len(exported) == 1, traces
    assert exported[0]["deployment"] == "chat" and exported[0]["request_model"] == "chat"
    assert exported[0]["attributes"]["gen_ai.system"] == "llmloop"
    assert exported[0]["attributes"]["llmloop.source"] == "otlp"
