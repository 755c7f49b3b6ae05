"""OTLP/HTTP trace ingest in process: spans made by the OpenTelemetry SDK (encoded by its own OTLP
encoder), OTLP/JSON as other languages' exporters send it, gzip, and the bad paths."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

PROTOBUF = {"Content-Type": "application/x-protobuf"}


@pytest.fixture
def otlp(client: TestClient) -> TestClient:
    return client


def _spans(service: str = "support-app") -> Any:
    """Three spans as an instrumented app makes them: a GenAI chat call with the current
    conventions, an OpenLLMetry-style call that failed, and an HTTP span that is not GenAI."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("app")
    with tracer.start_as_current_span("POST /ask"):
        with tracer.start_as_current_span("chat gpt-4o-mini") as span:
            span.set_attributes({
                "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o-mini", "gen_ai.response.model": "gpt-4o-mini-2024",
                "gen_ai.usage.input_tokens": 12, "gen_ai.usage.output_tokens": 7,
                "gen_ai.response.finish_reasons": ["stop"], "user.id": "ann",
                "gen_ai.input.messages": json.dumps([
                    {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
                    {"role": "user", "parts": [{"type": "text", "content": "Where is <b>it</b>?"}]},
                ]),
                "gen_ai.output.messages": json.dumps([
                    {"role": "assistant", "parts": [{"type": "text", "content": "On its way."}]}
                ]),
            })  # fmt: skip
        with tracer.start_as_current_span("openai.chat") as span:
            span.set_attributes({
                "gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o",
                "gen_ai.prompt.0.role": "user", "gen_ai.prompt.0.content": "Refund order 7?",
                "gen_ai.usage.prompt_tokens": 5, "gen_ai.usage.completion_tokens": 0,
            })  # fmt: skip
            span.set_status(Status(StatusCode.ERROR, "upstream 500"))
    provider.shutdown()
    return memory.get_finished_spans()


def _flush(client: TestClient) -> None:
    # the writer lives on the app's loop; flushing through the portal runs it there
    client.portal.call(client.app.state.container.gateway.writer.flush)  # type: ignore[union-attr]


def test_sdk_spans_become_traces(app: FastAPI, otlp: TestClient) -> None:
    body = encode_spans(_spans()).SerializeToString()
    response = otlp.post("/otlp/v1/traces", content=body, headers=PROTOBUF)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-protobuf"
    assert response.headers["x-llmloop-spans-stored"] == "2"  # the HTTP span is not stored
    _flush(otlp)
    traces = {t.request_model: t for t in app.state.container.gateway.traces.list(limit=10)}
    assert set(traces) == {"gpt-4o-mini", "gpt-4o"}
    ok, failed = traces["gpt-4o-mini"], traces["gpt-4o"]
    assert ok.deployment == "support-app" and ok.operation == "chat" and ok.status == "ok"
    assert ok.response_model == "gpt-4o-mini-2024" and ok.user == "ann"
    assert (ok.input_tokens, ok.output_tokens, ok.finish_reason) == (12, 7, "stop")
    assert ok.request_text == "system: Be brief.\nuser: Where is <b>it</b>?"
    assert ok.response_text == "On its way."
    assert ok.latency_ms >= 0 and ok.key_id is not None
    assert ok.attributes["gen_ai.provider.name"] == "openai"
    assert ok.attributes["llmloop.source"] == "otlp"
    assert len(ok.attributes["otel.trace_id"]) == 32 and "otel.parent_span_id" in ok.attributes
    assert failed.status == "error" and failed.error == "upstream 500"
    assert failed.request_text == "user: Refund order 7?" and failed.input_tokens == 5


def test_ingested_traces_are_monitored_and_take_feedback(app: FastAPI, otlp: TestClient) -> None:
    body = encode_spans(_spans("billing")).SerializeToString()
    assert otlp.post("/otlp/v1/traces", content=body, headers=PROTOBUF).status_code == 200
    _flush(otlp)
    summary = otlp.get("/api/monitoring/summary", params={"since": "1h"}).json()
    row = next(r for r in summary if r["deployment"] == "billing")
    assert row["requests"] == 2 and row["error_rate"] == 0.5
    trace = app.state.container.gateway.traces.list(deployment="billing", limit=1)[0]
    given = otlp.post(f"/api/traces/{trace.id}/feedback", json={"kind": "thumbs", "value": 1})
    assert given.status_code == 201


def test_gzip_and_json_encodings(app: FastAPI, otlp: TestClient) -> None:
    zipped = gzip.compress(encode_spans(_spans()).SerializeToString())
    headers = {**PROTOBUF, "Content-Encoding": "gzip"}
    assert otlp.post("/otlp/v1/traces", content=zipped, headers=headers).status_code == 200
    # OTLP/JSON as a JavaScript exporter writes it: hex ids, 64-bit integers as strings
    doc = {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "web"}}]},
        "scopeSpans": [{"spans": [{
            "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
            "name": "chat llama", "startTimeUnixNano": "1700000000000000000",
            "endTimeUnixNano": "1700000000250000000", "status": {"code": "STATUS_CODE_OK"},
            "attributes": [
                {"key": "gen_ai.request.model", "value": {"stringValue": "llama-3"}},
                {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "9"}},
                {"key": "gen_ai.response.finish_reasons",
                 "value": {"arrayValue": {"values": [{"stringValue": "length"}]}}},
            ],
            "events": [
                {"name": "gen_ai.user.message",
                 "attributes": [{"key": "content", "value": {"stringValue": "hello"}}]},
                {"name": "gen_ai.choice",
                 "attributes": [{"key": "content", "value": {"stringValue": "hi there"}}]},
            ],
        }]}],
    }]}  # fmt: skip
    response = otlp.post("/otlp/v1/traces", json=doc)
    assert response.status_code == 200 and response.json() == {}
    _flush(otlp)
    web = app.state.container.gateway.traces.list(deployment="web", limit=1)[0]
    assert (web.request_model, web.input_tokens, web.finish_reason) == ("llama-3", 9, "length")
    assert web.latency_ms == pytest.approx(250.0)
    assert web.at.year == 2023
    assert (web.request_text, web.response_text) == ("user: hello", "hi there")


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (b"\xff\x00not protobuf", PROTOBUF, 400),
        (b"{not json", {"Content-Type": "application/json"}, 400),
        (b'{"resourceSpans": 3}', {"Content-Type": "application/json"}, 400),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}',
         {"Content-Type": "application/json"}, 400),
        # a time past any date (the server failed on it with a 500)
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "1' + b"0" * 25
         + b'", "attributes": [{"key": "gen_ai.request.model", "value": {"stringValue": "m"}}]'
         + b"}]}]}]}", {"Content-Type": "application/json"}, 400),
        (b"x", {"Content-Type": "text/plain"}, 415),
        (b"x", {**PROTOBUF, "Content-Encoding": "br"}, 415),
        (b"not gzip", {**PROTOBUF, "Content-Encoding": "gzip"}, 400),
    ],
)  # fmt: skip
def test_bad_requests_are_refused_with_a_reason(
    app: FastAPI, otlp: TestClient, body: bytes, headers: dict[str, str], status: int
) -> None:
    response = otlp.post("/otlp/v1/traces", content=body, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"]
    assert app.state.container.gateway.writer.depth == 0


def test_a_gzip_bomb_is_refused(otlp: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    import llmloop.services.otlp_decode as module

    monkeypatch.setattr(module, "MAX_INFLATED", 1000)
    bomb = gzip.compress(b"\x00" * 100_000)
    response = otlp.post(
        "/otlp/v1/traces", content=bomb, headers={**PROTOBUF, "Content-Encoding": "gzip"}
    )
    assert response.status_code == 413


def test_a_key_is_needed(app: FastAPI) -> None:
    with TestClient(app) as anonymous:
        body = encode_spans(_spans()).SerializeToString()
        response = anonymous.post("/otlp/v1/traces", content=body, headers=PROTOBUF)
        assert response.status_code == 401


def test_a_full_trace_queue_answers_503_with_retry_after(
    app: FastAPI, otlp: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app.state.container.gateway.writer, "max_queue", 1)
    body = encode_spans(_spans()).SerializeToString()
    response = otlp.post("/otlp/v1/traces", content=body, headers=PROTOBUF)
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert app.state.container.gateway.writer.depth == 0


def test_openinference_spans_are_read_as_genai(app: FastAPI, otlp: TestClient) -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "rag-app"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("openinference.instrumentation.langchain")
    with tracer.start_as_current_span("ChatOpenAI") as span:  # as Arize's instrumentors write it
        span.set_attributes({
            "openinference.span.kind": "LLM", "llm.model_name": "gpt-4o", "llm.provider": "openai",
            "llm.token_count.prompt": 30, "llm.token_count.completion": 4,
            "llm.input_messages.0.message.role": "system",
            "llm.input_messages.0.message.content": "Use the context.",
            "llm.input_messages.1.message.role": "user",
            "llm.input_messages.1.message.content": "What is RAG?",
            "llm.output_messages.0.message.role": "assistant",
            "llm.output_messages.0.message.content": "Retrieval, then generation.",
        })  # fmt: skip
    with tracer.start_as_current_span("embed") as span:
        span.set_attributes(
            {"openinference.span.kind": "EMBEDDING", "embedding.model_name": "minilm",
             "input.value": "what is rag"}
        )  # fmt: skip
    with tracer.start_as_current_span("retrieve") as span:
        span.set_attributes({"openinference.span.kind": "RETRIEVER", "input.value": "rag"})
    provider.shutdown()
    body = encode_spans(memory.get_finished_spans()).SerializeToString()
    response = otlp.post("/otlp/v1/traces", content=body, headers=PROTOBUF)
    assert response.headers["x-llmloop-spans-stored"] == "2"  # the retriever span is not a call
    _flush(otlp)
    stored = {t.operation: t for t in app.state.container.gateway.traces.list(deployment="rag-app")}
    chat, embed = stored["chat"], stored["embeddings"]
    assert (chat.request_model, chat.input_tokens, chat.output_tokens) == ("gpt-4o", 30, 4)
    assert chat.request_text == "system: Use the context.\nuser: What is RAG?"
    assert chat.response_text == "Retrieval, then generation."
    assert chat.attributes["gen_ai.provider.name"] == "openai"
    assert chat.attributes["llm.model_name"] == "gpt-4o"  # its own names are kept
    assert embed.request_model == "minilm" and embed.request_text == "user: what is rag"


def test_ingested_traces_show_on_the_dashboard(
    app: FastAPI, otlp: TestClient, keys: dict[str, str]
) -> None:
    body = encode_spans(_spans("shop")).SerializeToString()
    assert otlp.post("/otlp/v1/traces", content=body, headers=PROTOBUF).status_code == 200
    _flush(otlp)
    with TestClient(app) as browser:
        assert browser.post("/ui/login", data={"key": keys["viewer"]}).status_code == 200
        listing = browser.get("/ui/traces?deployment=shop").text
        assert "gpt-4o-mini" in listing and ">otlp</span>" in listing
        trace = app.state.container.gateway.traces.list(deployment="shop", limit=1)[0]
        page = browser.get(f"/ui/traces/{trace.id}").text
        assert "otel.trace_id" in page and "llmloop.source" in page
