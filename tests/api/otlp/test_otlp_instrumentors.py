"""What real instrumentation libraries export becomes the right traces: payloads recorded from
opentelemetry-instrumentation-openai-v2 (newest conventions with and without content, and its
older mode), OpenLLMetry, OpenInference (OpenAI and LangChain) and an llmloop gateway, replayed
in process (``fixtures/record.py`` says how they were recorded)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

FIXTURES = Path(__file__).parent / "fixtures"
PROTOBUF = {"Content-Type": "application/x-protobuf"}
# The calls each OpenAI recording made, in order (see record.py): the request's text and the
# answer's, with what the provider (an echo deployment) counted.
CALLS = ["plain", "multi", "stream", "stream_usage", "tool_call", "tool_result", "embed",
         "failed", "one", "two"]  # fmt: skip
TEXTS = {
    "plain": ("system: You are terse.\nuser: Say hello to Ann", "Say hello to Ann"),
    "multi": ("system: Be kind.\nuser: first question\nassistant: first answer\n"
              "user: second question", "second question"),
    "stream": ("user: stream me please usage False", "stream me please usage False"),
    "stream_usage": ("user: stream me please usage True", "stream me please usage True"),
    "tool_call": ("user: call get_weather for Paris", ""),
    "tool_result": ("user: call get_weather for Paris\nassistant: \ntool: sunny, 21C",
                    "sunny, 21C"),
    "embed": ("user: alpha beta\nuser: gamma", ""),
    "failed": ("user: hi", ""),
    "one": ("user: one", "one"),
    "two": ("user: two", "two"),
}  # fmt: skip
TOKENS = {"plain": (6, 4), "multi": (5, 2), "stream": (0, 0), "stream_usage": (5, 5),
          "tool_call": (4, 2), "tool_result": (5, 2), "embed": (3, 0), "failed": (0, 0),
          "one": (1, 1), "two": (1, 1)}  # fmt: skip


@dataclass(frozen=True)
class Sender:
    """One recording, and what its instrumentor puts on spans (the rest it leaves out)."""

    name: str
    content: bool = True  # messages on the span
    stream_finish: bool = True  # a streamed call's finish reason
    streams: bool = False  # says a call streamed, and when its first chunk came
    user: bool = False  # the request's user
    embed_text: bool = True  # the texts embedded
    tool_finish: str = "tool_calls"


SENDERS = [
    Sender("openai_v2_latest", embed_text=False),
    # its older mode sends the messages as OTLP log records: its spans alone have none
    # (test_otlp_logs.py replays the records with them)
    Sender("openai_v2_legacy", content=False, stream_finish=False),
    Sender("openai_v2_latest_no_content", content=False, stream_finish=False),
    Sender("openllmetry_openai", streams=True, user=True, tool_finish="tool_call"),
    Sender("openinference_openai", streams=True, user=True),
]


def _flush(client: TestClient) -> None:
    client.portal.call(client.app.state.container.gateway.writer.flush)  # type: ignore[union-attr]


def _sent(name: str) -> dict[str, Any]:
    """The recording's spans by span id: name, duration (ms), parent."""
    request = ExportTraceServiceRequest()
    request.ParseFromString((FIXTURES / f"{name}.pb").read_bytes())
    return {
        s.span_id.hex(): (s.name, (s.end_time_unix_nano - s.start_time_unix_nano) / 1e6,
                          s.parent_span_id.hex())
        for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans
    }  # fmt: skip


def _ingest(app: FastAPI, otlp: TestClient, name: str, deployment: str = "") -> list[Any]:
    body = (FIXTURES / f"{name}.pb").read_bytes()
    response = otlp.post("/otlp/v1/traces", content=body, headers=PROTOBUF)
    assert response.status_code == 200, response.text
    _flush(otlp)
    stored = app.state.container.gateway.traces.list(deployment=deployment or f"app-{name}")
    return sorted(stored, key=lambda t: t.at)


@pytest.mark.parametrize("sender", SENDERS, ids=lambda s: s.name)
def test_an_openai_instrumentors_spans_become_the_calls_traces(
    app: FastAPI, client: TestClient, sender: Sender
) -> None:
    stored = _ingest(app, client, sender.name)
    sent = _sent(sender.name)
    app_span = next(i for i, (name, _, _) in sent.items() if name == "handle-request")
    # every GenAI span once, the app's own span not at all
    assert len(stored) == len(CALLS) == len(sent) - 1
    assert {t.attributes["otel.span_id"] for t in stored} == set(sent) - {app_span}
    calls = dict(zip(CALLS, stored, strict=True))
    for call, trace in calls.items():
        assert trace.latency_ms == pytest.approx(sent[trace.attributes["otel.span_id"]][1])
        assert (trace.input_tokens, trace.output_tokens) == TOKENS[call], call
        request, response = TEXTS[call] if sender.content else ("", "")
        if call == "embed" and not sender.embed_text:
            request = ""
        assert (trace.request_text, trace.response_text) == (request, response), call
        streamed = sender.streams and call.startswith("stream")
        assert trace.stream is streamed, call
        if streamed:
            assert 0 < trace.ttft_ms < trace.latency_ms
        else:
            assert trace.ttft_ms is None
    for call in ("plain", "multi", "tool_result", "one", "two"):
        assert calls[call].finish_reason == "stop"
    for call in ("stream", "stream_usage"):
        assert calls[call].finish_reason == ("stop" if sender.stream_finish else None)
    assert calls["tool_call"].finish_reason == sender.tool_finish
    if sender.content:
        (tool_call,) = calls["tool_call"].attributes["llmloop.tool_calls"]
        assert tool_call["id"].startswith("call_")
        assert (tool_call["name"], tool_call["arguments"]) == ("get_weather", '{"city": "Paris"}')
    assert calls["plain"].user == ("ann" if sender.user else None)
    assert calls["plain"].attributes["gen_ai.system"] == "openai"  # not the gateway's "llmloop"
    embed = calls["embed"]
    assert (embed.operation, embed.request_model) == ("embeddings", "text-embedding-3-small")
    assert not [k for k in embed.attributes if k.endswith(".vector") or k == "output.value"]
    failed = calls["failed"]
    assert (failed.status, failed.http_status, failed.request_model) == (
        "error", 500, "no-such-model")  # fmt: skip
    assert "404 - The model 'no-such-model' does not exist" in (failed.error or "")
    assert all(t.status == "ok" and t.error is None for t in stored if t is not failed)
    # the two calls under the app's span: one trace, that span their parent
    one, two = calls["one"].attributes, calls["two"].attributes
    assert one["otel.trace_id"] == two["otel.trace_id"]
    assert one["otel.parent_span_id"] == two["otel.parent_span_id"] == app_span


def test_langchain_through_openinference(app: FastAPI, client: TestClient) -> None:
    plain, streamed, tool_call, failed = _ingest(app, client, "openinference_langchain")
    assert (plain.request_text, plain.response_text) == (
        "system: You are terse.\nuser: langchain hello", "langchain hello")  # fmt: skip
    assert (plain.request_model, plain.input_tokens, plain.output_tokens) == ("gpt-4o-mini", 4, 2)
    assert (plain.finish_reason, streamed.finish_reason) == ("stop", "stop")
    assert (streamed.request_text, streamed.response_text) == (
        "user: langchain stream", "langchain stream")  # fmt: skip
    assert tool_call.finish_reason == "tool_calls" and tool_call.response_text == ""
    assert [c["name"] for c in tool_call.attributes["llmloop.tool_calls"]] == ["get_weather"]
    assert (failed.status, failed.request_model) == ("error", "no-such-model")
    # the status message, without the traceback LangChain's instrumentor appends to it
    assert failed.error == (
        "OpenAIModelNotFoundError(\"Error code: 404 - The model 'no-such-model' does not exist\")"
    )


def test_a_gateways_own_export_keeps_its_numbers(app: FastAPI, client: TestClient) -> None:
    plain, streamed, tool_call = _ingest(app, client, "llmloop_gateway", "gpt-4o-mini")
    assert plain.user == "bob" and plain.attributes["gen_ai.system"] == "llmloop"
    assert plain.latency_ms == pytest.approx(plain.attributes["llmloop.latency_ms"])
    assert streamed.stream and streamed.ttft_ms == pytest.approx(20.528971000203455)
    assert (streamed.input_tokens, streamed.output_tokens) == (2, 2)
    assert tool_call.finish_reason == "tool_calls"
    (call,) = tool_call.attributes["llmloop.tool_calls"]
    assert (call["name"], call["arguments"]) == ("get_weather", '{"city": "Paris"}')


def test_a_batch_sent_again_is_stored_once(
    app: FastAPI, client: TestClient, keys: dict[str, str]
) -> None:
    """An exporter resends a batch whose answer it lost (a reset, a timeout), though the server
    took it: the spans are the same traces, whether the first copy still waits in the writer's
    queue or is stored already."""
    body = (FIXTURES / "openllmetry_openai.pb").read_bytes()
    first = client.post("/otlp/v1/traces", content=body, headers=PROTOBUF)
    again = client.post("/otlp/v1/traces", content=body, headers=PROTOBUF)
    assert first.headers["x-llmloop-spans-stored"] == "10"
    assert again.headers["x-llmloop-spans-stored"] == "0"
    assert again.headers["x-llmloop-spans-repeated"] == "10"
    _flush(client)
    traces = app.state.container.gateway.traces
    assert traces.count(deployment="app-openllmetry_openai") == 10
    # another server process (which never saw the first copy): the table keeps one row
    app.state.container.otlp._recent.clear()
    assert client.post("/otlp/v1/traces", content=body, headers=PROTOBUF).status_code == 200
    _flush(client)
    assert traces.count(deployment="app-openllmetry_openai") == 10
    # the same span ids from another key are that key's own calls
    with TestClient(app, headers={"Authorization": f"Bearer {keys['editor']}"}) as other:
        assert other.post("/otlp/v1/traces", content=body, headers=PROTOBUF).status_code == 200
        _flush(other)
    assert traces.count(deployment="app-openllmetry_openai") == 20


def test_a_call_that_three_instrumentors_wrapped_is_one_trace(
    app: FastAPI, client: TestClient
) -> None:
    """``opentelemetry-instrument`` activates every instrumentor installed: each OpenAI call
    came as three nested spans (OpenLLMetry's around openai-v2's around OpenInference's), and
    OpenLLMetry's streamed spans stayed current after their calls, so later calls nest under
    them too. Each call is one trace, with what any of its spans said."""
    stored = _ingest(app, client, "three_openai_instrumentors")
    sent = _sent("three_openai_instrumentors")
    assert len(stored) == len(CALLS) and len(sent) == 3 * len(CALLS) + 1
    covered = [t.attributes["otel.span_id"] for t in stored]
    covered += [w for t in stored for w in t.attributes["otel.wrapper_span_ids"]]
    assert sorted(covered) == sorted(
        i for i, (name, _, _) in sent.items() if name != "handle-request"
    )
    calls = dict(zip(CALLS, stored, strict=True))
    for call, trace in calls.items():
        assert (trace.request_text, trace.response_text) == TEXTS[call], call
        assert (trace.input_tokens, trace.output_tokens) == TOKENS[call], call
        assert trace.stream is call.startswith("stream"), call
    assert calls["plain"].user == "ann" and calls["failed"].status == "error"
    assert calls["tool_call"].attributes["llmloop.tool_calls"][0]["name"] == "get_weather"
    assert [t.operation for t in stored].count("embeddings") == 1
