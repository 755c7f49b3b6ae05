"""OpenTelemetry exporters against a real `llmloop serve`: the SDK's own OTLP/HTTP exporter,
configured only by the standard OTEL_* variables, delivers an app's GenAI spans, once each even
when it resends a batch whose answer it lost, and its log exporter the messages an
instrumentation sends as log records; and a second llmloop server exports its gateway traces
over OTLP into the first one."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from tests.fixtures.served import ServerProcess, run_cli, start_serve, stop

pytest.importorskip("opentelemetry.exporter.otlp.proto.http")


@dataclass
class Server:
    url: str
    key: str
    process: ServerProcess


ECHO = [{"name": "chat", "targets": [{"engine": {"kind": "echo"}}]}]


def _start(
    home: Path, extra_env: dict[str, str] | None = None, deployments_list: list[Any] = ECHO
) -> Server:
    deployments = home.parent / f"{home.name}-deployments.yaml"
    deployments.write_text(json.dumps({"deployments": deployments_list}))
    env = {**os.environ, "LLMLOOP_HOME": str(home), "LLMLOOP_DEPLOYMENTS_FILE": str(deployments),
           "LLMLOOP_TRACE_FLUSH_MS": "100", **(extra_env or {})}  # fmt: skip
    made = run_cli(env, "keys", "create", "app", "--role", "editor", "--json")
    process = start_serve(env=env, output="pipe", deadline_s=60)
    return Server(process.url, json.loads(made)["secret"], process)


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Server]:
    server = _start(tmp_path / "receiver")
    yield server
    stop(server.process)


def _traces(server: Server) -> list[Any]:
    headers = {"Authorization": f"Bearer {server.key}"}
    return httpx.get(f"{server.url}/api/traces", headers=headers, timeout=5).json()  # type: ignore[no-any-return]


def _wait_for(server: Server, found: Callable[[list[dict[str, Any]]], bool]) -> list[Any]:
    deadline = time.time() + 30
    while True:
        traces = _traces(server)
        if found(traces) or time.time() > deadline:
            return traces
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


def test_the_sdk_exporters_deliver_messages_sent_as_log_records(
    receiver: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An instrumentation in its event mode: the span says the model and tokens, log records
    (exported by the SDK's own OTLP log exporter, to ``/otlp/v1/logs``) carry the messages.
    The spans go first here; the other order is replayed in process."""
    from opentelemetry._logs import SeverityNumber
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"{receiver.url}/otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"Authorization=Bearer%20{receiver.key}")
    resource = Resource.create({"service.name": "event-app"})
    tracing = TracerProvider(resource=resource)
    tracing.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    logging = LoggerProvider(resource=resource)
    logging.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter()))
    logger = logging.get_logger("opentelemetry.instrumentation.openai_v2")
    with tracing.get_tracer("app").start_as_current_span("chat gpt-4o-mini") as span:
        span.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini",
                             "gen_ai.usage.input_tokens": 21})  # fmt: skip
        logger.emit(event_name="gen_ai.system.message", body={"content": "Be brief."})
        logger.emit(event_name="gen_ai.user.message", body={"content": "Is it in stock?"})
        logger.emit(event_name="gen_ai.choice", body={
            "index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": "Yes, two left."}})  # fmt: skip
        logger.emit(body="handled /ask", severity_number=SeverityNumber.INFO)  # the app's own
    assert tracing.force_flush(10_000)
    _wait_for(receiver, lambda ts: any(t["deployment"] == "event-app" for t in ts))
    assert logging.force_flush(10_000)
    tracing.shutdown()
    logging.shutdown()
    answered = lambda ts: [t for t in ts if t["response_text"] == "Yes, two left."]  # noqa: E731
    (trace,) = answered(_wait_for(receiver, lambda ts: bool(answered(ts))))
    assert trace["request_text"] == "system: Be brief.\nuser: Is it in stock?"
    assert (trace["finish_reason"], trace["input_tokens"]) == ("stop", 21)
    assert len([t for t in _traces(receiver) if t["deployment"] == "event-app"]) == 1


def _losing_first_answer(target: str, posts: list[int]) -> ThreadingHTTPServer:
    """A proxy to ``target`` that loses its first POST's answer: it closes the connection
    after the server took the batch, as a reset or a timed-out answer would."""

    class Proxy(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            kept = ("authorization", "content-type", "content-encoding")
            headers = {k: v for k, v in self.headers.items() if k.lower() in kept}
            answer = httpx.post(target + self.path, content=body, headers=headers, timeout=10)
            posts.append(answer.status_code)
            if len(posts) == 1:
                self.close_connection = True  # no answer at all
                return
            self.send_response(answer.status_code)
            self.send_header("Content-Type", answer.headers.get("content-type", ""))
            self.send_header("Content-Length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)

        def log_message(self, *args: Any) -> None:
            pass

    proxy = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    return proxy


def test_a_batch_resent_after_a_lost_answer_is_stored_once(
    receiver: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    posts: list[int] = []
    proxy = _losing_first_answer(receiver.url, posts)
    try:
        endpoint = f"http://127.0.0.1:{proxy.server_port}/otlp"
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"Authorization=Bearer%20{receiver.key}")
        provider = TracerProvider(resource=Resource.create({"service.name": "retrying-app"}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        tracer = provider.get_tracer("app")
        with tracer.start_as_current_span("POST /ask"):
            for n in range(3):
                with tracer.start_as_current_span("chat m") as span:
                    span.set_attributes({"gen_ai.operation.name": "chat",
                                         "gen_ai.request.model": "m",
                                         "gen_ai.usage.input_tokens": n})  # fmt: skip
        assert provider.force_flush(30_000)  # the exporter retried, and was answered
        provider.shutdown()
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert posts == [200, 200]  # the server took the batch twice
    mine = lambda ts: [t for t in ts if t["deployment"] == "retrying-app"]  # noqa: E731
    assert len(mine(_wait_for(receiver, lambda ts: len(mine(ts)) >= 3))) == 3
    time.sleep(1.0)  # a second copy would be written by now (the writer flushes every 100 ms)
    assert sorted(t["input_tokens"] for t in mine(_traces(receiver))) == [0, 1, 2]


def test_a_gateway_exports_its_traces_over_otlp_into_another(
    receiver: Server, tmp_path: Path
) -> None:
    sender = _start(
        tmp_path / "sender",
        {"LLMLOOP_OTEL_EXPORTER": "otlp",
         "LLMLOOP_OTEL_ENDPOINT": f"{receiver.url}/otlp/v1/traces",
         "OTEL_EXPORTER_OTLP_TRACES_HEADERS": f"Authorization=Bearer%20{receiver.key}",
         "OTEL_BSP_SCHEDULE_DELAY": "200"},
        [*ECHO, {"name": "broken",
                 "targets": [{"engine": {"kind": "echo", "options": {"fail_rate": 1.0}}}]}],
    )  # fmt: skip
    try:
        client = openai.OpenAI(api_key=sender.key, base_url=f"{sender.url}/v1", max_retries=0)
        client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
        chunks = client.chat.completions.create(
            model="chat", stream=True, messages=[{"role": "user", "content": "say it in parts"}]
        )
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        with pytest.raises(openai.APIError):
            client.chat.completions.create(
                model="broken", messages=[{"role": "user", "content": "hi"}]
            )
        exported = lambda ts: [t for t in ts if t["target"] == "otlp"]  # noqa: E731
        traces = _wait_for(receiver, lambda ts: len(exported(ts)) >= 3)
        sent = {t["id"]: t for t in _traces(sender)}
    finally:
        stop(sender.process)
    by_model = {(t["request_model"], t["stream"]): t for t in exported(traces)}
    assert len(by_model) == len(exported(traces)) == 3, traces
    plain, streamed, failed = (
        by_model["chat", False],
        by_model["chat", True],
        by_model["broken", False],
    )
    assert plain["deployment"] == "chat"
    assert plain["attributes"]["gen_ai.system"] == "llmloop"
    assert plain["attributes"]["llmloop.source"] == "otlp"
    # the numbers the sender measured, not the span's rounded ends
    for trace in (plain, streamed, failed):
        own = sent[trace["attributes"]["llmloop.trace_id"]]
        assert trace["latency_ms"] == pytest.approx(own["latency_ms"])
        assert (trace["status"], trace["ttft_ms"]) == (own["status"], own["ttft_ms"])
    assert streamed["ttft_ms"] is not None and failed["status"] == "error"
