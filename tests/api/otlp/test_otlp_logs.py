"""OTLP/HTTP log ingest in process: the log records opentelemetry-instrumentation-openai-v2 sent
in its older mode (``fixtures/openai_v2_legacy_logs.pb``) join the traces of the spans it sent
(``openai_v2_legacy.pb``) in either order, in the shape its newest mode puts on the spans
(``openai_v2_latest.pb``); OTLP/JSON, gzip, resends, an app's own logs, and the bad paths."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)

from llmloop.api.app import create_app
from llmloop.config import load_settings
from llmloop.core.governance import ApiKeyCreate
from llmloop.services.actors import local_actor
from llmloop.store import tables as t

FIXTURES = Path(__file__).parent / "fixtures"
PROTOBUF = {"Content-Type": "application/x-protobuf"}
SPANS = (FIXTURES / "openai_v2_legacy.pb").read_bytes()
LOGS = (FIXTURES / "openai_v2_legacy_logs.pb").read_bytes()
CALLS = ["plain", "multi", "stream", "stream_usage", "tool_call", "tool_result", "embed",
         "failed", "one", "two"]  # fmt: skip
MESSAGES = ("gen_ai.input.messages", "gen_ai.output.messages")


def _flush(client: TestClient) -> None:
    client.portal.call(client.app.state.container.gateway.writer.flush)  # type: ignore[union-attr]


def _post(client: TestClient, path: str, body: bytes, **headers: str) -> Any:
    response = client.post(f"/otlp/v1/{path}", content=body, headers={**PROTOBUF, **headers})
    assert response.status_code == 200, response.text
    return response


def _calls(app: FastAPI, name: str) -> dict[str, Any]:
    stored = app.state.container.gateway.traces.list(deployment=f"app-{name}")
    return dict(zip(CALLS, sorted(stored, key=lambda t: t.at), strict=True))


def _same_ids(value: str) -> Any:
    """Messages with the tool call ids made alike (each recording got its own)."""
    return json.loads(re.sub(r"call_[0-9a-f]+", "call_x", value))


def _held(app: FastAPI) -> int:
    with app.state.container.store.read() as tx:
        return tx.count(t.otlp_log_events)


@pytest.mark.parametrize("logs_first", [True, False], ids=["logs-first", "spans-first"])
def test_log_records_join_their_spans_traces_in_either_order(
    app: FastAPI, client: TestClient, logs_first: bool
) -> None:
    if logs_first:  # the usual way: the log processor flushes every second, spans every five
        answer = _post(client, "logs", LOGS)
        _post(client, "traces", SPANS)
    else:
        _post(client, "traces", SPANS)
        _flush(client)
        answer = _post(client, "logs", LOGS)
    assert answer.content == b"" and answer.headers["content-type"] == "application/x-protobuf"
    assert answer.headers["x-llmloop-log-records-stored"] == "23"
    _flush(client)
    legacy = _calls(app, "openai_v2_legacy")
    # what the newest mode of the same instrumentation put on its spans, for the same calls
    _post(client, "traces", (FIXTURES / "openai_v2_latest.pb").read_bytes())
    _flush(client)
    latest = _calls(app, "openai_v2_latest")
    for call in CALLS:
        old, new = legacy[call], latest[call]
        assert (old.request_text, old.response_text) == (new.request_text, new.response_text)
        assert old.finish_reason == new.finish_reason, call  # streamed: from gen_ai.choice
        for name in MESSAGES:
            if name in new.attributes:
                assert _same_ids(old.attributes[name]) == _same_ids(new.attributes[name]), call
            else:
                assert name not in old.attributes, call
        tool_calls = [
            [{**c, "id": "call_x"} for c in trace.attributes.get("llmloop.tool_calls", [])]
            for trace in (old, new)
        ]
        assert tool_calls[0] == tool_calls[1], call
    assert legacy["tool_call"].attributes["llmloop.tool_calls"][0]["name"] == "get_weather"
    assert legacy["multi"].request_text == (
        "system: Be kind.\nuser: first question\nassistant: first answer\nuser: second question"
    )
    assert legacy["plain"].attributes["llmloop.content_source"] == "logs"
    # what the span said stays: its model, tokens, latency
    assert (legacy["plain"].input_tokens, legacy["plain"].request_model) == (6, "gpt-4o-mini")


def test_the_ingested_content_shows_on_the_dashboard_and_takes_feedback(
    app: FastAPI, client: TestClient, keys: dict[str, str]
) -> None:
    _post(client, "traces", SPANS)
    _flush(client)
    _post(client, "logs", LOGS)
    plain = _calls(app, "openai_v2_legacy")["plain"]
    with TestClient(app) as browser:
        assert browser.post("/ui/login", data={"key": keys["viewer"]}).status_code == 200
        assert "Say hello to Ann" in browser.get(f"/ui/traces/{plain.id}").text
    given = client.post(f"/api/traces/{plain.id}/feedback", json={"kind": "thumbs", "value": 1})
    assert given.status_code == 201
    assert client.get(f"/api/traces/{plain.id}").json()["response_text"] == "Say hello to Ann"


@pytest.mark.parametrize("logs_first", [True, False], ids=["logs-first", "spans-first"])
def test_a_resent_batch_adds_no_message(app: FastAPI, client: TestClient, logs_first: bool) -> None:
    """An exporter resends a batch whose answer it lost: the records are held once, and the
    messages are not doubled whether the span came before or after."""
    if not logs_first:
        _post(client, "traces", SPANS)
        _flush(client)
    first = _post(client, "logs", LOGS)
    again = client.post("/otlp/v1/logs", content=gzip.compress(LOGS),
                        headers={**PROTOBUF, "Content-Encoding": "gzip"})  # fmt: skip
    assert (first.headers["x-llmloop-log-records-stored"], again.status_code) == ("23", 200)
    assert again.headers["x-llmloop-log-records-stored"] == "0"
    assert again.headers["x-llmloop-log-records-repeated"] == "23"
    if logs_first:
        _post(client, "traces", SPANS)
    _flush(client)
    _post(client, "logs", LOGS)  # once more, after both
    assert _held(app) == 23
    calls = _calls(app, "openai_v2_legacy")
    assert calls["multi"].request_text.count("first question") == 1
    assert calls["tool_result"].request_text == (
        "user: call get_weather for Paris\nassistant: \ntool: sunny, 21C"
    )
    assert len(calls["tool_call"].attributes["llmloop.tool_calls"]) == 1


def _split(body: bytes) -> tuple[bytes, bytes]:
    """The request's records in two requests: the questions, then the answers (as a log
    processor flushes a long call's records in two batches)."""
    asked, answered = ExportLogsServiceRequest(), ExportLogsServiceRequest()
    asked.ParseFromString(body)
    answered.CopyFrom(asked)
    for request, keep in ((asked, False), (answered, True)):
        records = request.resource_logs[0].scope_logs[0].log_records
        kept = [r for r in records if (r.event_name == "gen_ai.choice") is keep]
        del records[:]
        records.extend(kept)
    return asked.SerializeToString(), answered.SerializeToString()


def test_a_calls_records_in_two_batches_around_its_span_add_up(
    app: FastAPI, client: TestClient
) -> None:
    asked, answered = _split(LOGS)
    _post(client, "logs", asked)
    _post(client, "traces", SPANS)
    _flush(client)
    _post(client, "logs", answered)
    calls = _calls(app, "openai_v2_legacy")
    assert (calls["plain"].request_text, calls["plain"].response_text) == (
        "system: You are terse.\nuser: Say hello to Ann", "Say hello to Ann")  # fmt: skip
    assert calls["stream"].finish_reason == "stop"
    # the same records again, in one batch this time (as a resend after a restart may be)
    again = _post(client, "logs", LOGS)
    assert again.headers["x-llmloop-log-records-repeated"] == "23"
    assert _calls(app, "openai_v2_legacy")["multi"].request_text.count("second question") == 1
    assert calls["tool_call"].attributes["llmloop.tool_calls"][0]["arguments"] == (
        '{"city": "Paris"}'
    )


def _json_logs(*records: dict[str, Any]) -> dict[str, Any]:
    return {"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "js-app"}}]},
        "scopeLogs": [{"scope": {"name": "genai"}, "logRecords": list(records)}],
    }]}  # fmt: skip


TRACE, SPAN = "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174"


def _json_span() -> dict[str, Any]:
    return {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "js-app"}}]},
        "scopeSpans": [{"spans": [{
            "traceId": TRACE, "spanId": SPAN, "name": "chat llama",
            "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000000250000000",
            "attributes": [{"key": "gen_ai.request.model", "value": {"stringValue": "llama-3"}}],
        }]}],
    }]}  # fmt: skip


def test_otlp_json_and_the_newer_operation_details_record(app: FastAPI, client: TestClient) -> None:
    """One ``gen_ai.client.inference.operation.details`` record, its messages as structured
    attribute values, as a JavaScript exporter writes OTLP/JSON (hex ids, string integers)."""
    kv = lambda k, v: {"key": k, "value": {"stringValue": v}}  # noqa: E731
    part = lambda text: {"kvlistValue": {"values": [kv("type", "text"), kv("content", text)]}}  # noqa: E731
    message = lambda role, text, *more: {"kvlistValue": {"values": [  # noqa: E731
        kv("role", role), {"key": "parts", "value": {"arrayValue": {"values": [part(text)]}}},
        *more]}}  # fmt: skip
    details = {
        "traceId": TRACE, "spanId": SPAN, "timeUnixNano": "1700000000240000000",
        "eventName": "gen_ai.client.inference.operation.details",
        "attributes": [
            {"key": "gen_ai.input.messages",
             "value": {"arrayValue": {"values": [message("user", "what is 2+2?")]}}},
            {"key": "gen_ai.output.messages", "value": {"arrayValue": {"values": [
                message("assistant", "4", kv("finish_reason", "stop"))]}}},
            {"key": "gen_ai.system_instructions",
             "value": {"stringValue": json.dumps([{"type": "text", "content": "Be exact."}])}},
        ],
    }  # fmt: skip
    app_log = {"timeUnixNano": "1700000000100000000", "severityNumber": 9, "traceId": TRACE,
               "spanId": SPAN, "body": {"stringValue": "GET /ask 200"}}  # fmt: skip
    answer = client.post("/otlp/v1/logs", json=_json_logs(details, app_log))
    assert answer.status_code == 200 and answer.json() == {}
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["x-llmloop-log-records-ignored"] == "1"
    assert client.post("/otlp/v1/traces", json=_json_span()).status_code == 200
    _flush(client)
    (trace,) = app.state.container.gateway.traces.list(deployment="js-app")
    assert trace.request_text == "system: Be exact.\nuser: what is 2+2?"
    assert (trace.response_text, trace.finish_reason) == ("4", "stop")


def test_an_apps_own_logs_are_accepted_and_not_stored(app: FastAPI, client: TestClient) -> None:
    plain = {"body": {"stringValue": "user 7 signed in"}, "severityText": "INFO"}
    other_genai = {"eventName": "gen_ai.evaluation.result", "traceId": TRACE, "spanId": SPAN,
                   "attributes": [{"key": "gen_ai.evaluation.score.value",
                                   "value": {"doubleValue": 0.5}}]}  # fmt: skip
    answer = client.post("/otlp/v1/logs", json=_json_logs(plain, plain, other_genai))
    assert answer.status_code == 200 and answer.json() == {}
    assert answer.headers["x-llmloop-log-records-ignored"] == "3"
    assert answer.headers["x-llmloop-log-records-stored"] == "0"
    assert _held(app) == 0 and app.state.container.gateway.traces.list() == []


def test_content_without_a_span_is_rejected_as_a_partial_success(
    app: FastAPI, client: TestClient
) -> None:
    request = ExportLogsServiceRequest()
    request.ParseFromString(LOGS)
    records = request.resource_logs[0].scope_logs[0].log_records
    records[0].ClearField("span_id")
    records[1].span_id = b"\x00" * 8
    answer = _post(client, "logs", request.SerializeToString())
    response = ExportLogsServiceResponse()
    response.ParseFromString(answer.content)
    assert response.partial_success.rejected_log_records == 2
    assert "span id" in response.partial_success.error_message
    assert answer.headers["x-llmloop-log-records-stored"] == "21"
    lost = {"eventName": "gen_ai.user.message", "traceId": TRACE,
            "body": {"kvlistValue": {"values": [{"key": "content",
                                                 "value": {"stringValue": "hi"}}]}}}  # fmt: skip
    answer = client.post("/otlp/v1/logs", json=_json_logs(lost))
    assert answer.status_code == 200
    assert answer.json()["partialSuccess"]["rejectedLogRecords"] == "1"


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (b"\xff\x00not protobuf", PROTOBUF, 400),
        (b"{not json", {"Content-Type": "application/json"}, 400),
        (b"[1, 2]", {"Content-Type": "application/json"}, 400),
        (b'{"resourceLogs": 3}', {"Content-Type": "application/json"}, 400),
        (b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"spanId": "zz"}]}]}]}',
         {"Content-Type": "application/json"}, 400),
        (b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": "text"}]}]}]}',
         {"Content-Type": "application/json"}, 400),
        (b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"timeUnixNano": "1' + b"0" * 25
         + b'"}]}]}]}', {"Content-Type": "application/json"}, 400),
        (b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"attributes": {"a": 1}}]}]}]}',
         {"Content-Type": "application/json"}, 400),
        (LOGS, {"Content-Type": "text/plain"}, 415),
        (LOGS, {}, 415),
        (LOGS, {**PROTOBUF, "Content-Encoding": "br"}, 415),
        (b"not gzip", {**PROTOBUF, "Content-Encoding": "gzip"}, 400),
    ],
)  # fmt: skip
def test_bad_requests_are_refused_with_a_reason(
    app: FastAPI, client: TestClient, body: bytes, headers: dict[str, str], status: int
) -> None:
    response = client.post("/otlp/v1/logs", content=body, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] and "Traceback" not in response.text
    assert _held(app) == 0


def test_a_gzip_bomb_and_an_oversized_body_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import llmloop.services.otlp_decode as module

    monkeypatch.setattr(module, "MAX_INFLATED", 1000)
    app = create_app(load_settings({"home": str(tmp_path), "max_body_bytes": 4096}, env={}))
    key = app.state.container.keys.create(ApiKeyCreate(name="k", role="admin"), local_actor())
    try:
        with TestClient(app, headers={"Authorization": f"Bearer {key.secret}"}) as client:
            bomb = gzip.compress(b"\x00" * 100_000)
            headers = {**PROTOBUF, "Content-Encoding": "gzip"}
            assert client.post("/otlp/v1/logs", content=bomb, headers=headers).status_code == 413
            big = client.post("/otlp/v1/logs", content=b"\x00" * 5000, headers=PROTOBUF)
            assert big.status_code == 413 and big.json()["detail"]
    finally:
        app.state.container.close()


def test_a_key_is_needed(app: FastAPI, keys: dict[str, str]) -> None:
    with TestClient(app) as anonymous:
        assert anonymous.post("/otlp/v1/logs", content=LOGS, headers=PROTOBUF).status_code == 401
        wrong = {**PROTOBUF, "Authorization": "Bearer llk_not_a_key"}
        assert anonymous.post("/otlp/v1/logs", content=LOGS, headers=wrong).status_code == 401
    assert _held(app) == 0


def test_records_are_held_per_key(app: FastAPI, client: TestClient, keys: dict[str, str]) -> None:
    """The same span ids sent with another key are that key's own calls: its records do not
    join the first key's traces."""
    with TestClient(app, headers={"Authorization": f"Bearer {keys['editor']}"}) as other:
        _post(other, "logs", LOGS)
    _post(client, "traces", SPANS)
    _flush(client)
    assert all(not c.request_text for c in _calls(app, "openai_v2_legacy").values())


def test_records_for_rows_still_in_this_servers_queue_wait_for_them(
    app: FastAPI, client: TestClient
) -> None:
    """The spans came a moment before their records, and their rows still wait in the writer's
    queue: the server stores them first, then merges (nothing else flushes them here)."""
    writer = app.state.container.gateway.writer
    writer.flush_s = 3600.0  # the writer's own ticks never come in this test
    _post(client, "traces", SPANS)
    assert writer.depth == 10
    _post(client, "logs", LOGS)
    assert writer.depth == 0
    assert _calls(app, "openai_v2_legacy")["plain"].response_text == "Say hello to Ann"


def test_a_store_that_fails_costs_the_content_not_the_spans(
    app: FastAPI, client: TestClient
) -> None:
    """The held-content tables are gone (a broken database): spans are still stored, and log
    records get a 503 the exporter retries, not a traceback."""
    with app.state.container.store.transaction() as tx:
        tx.conn.execute(sa.text("DROP TABLE otlp_log_spans"))
    _post(client, "traces", SPANS)
    _flush(client)
    assert len(_calls(app, "openai_v2_legacy")) == 10
    answer = client.post("/otlp/v1/logs", content=LOGS, headers=PROTOBUF)
    assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
    assert answer.headers["content-type"] == "application/problem+json"


def test_alike_records_without_a_time_are_each_a_message(app: FastAPI, client: TestClient) -> None:
    said = {"eventName": "gen_ai.user.message", "traceId": TRACE, "spanId": SPAN,
            "body": {"kvlistValue": {"values": [{"key": "content",
                                                 "value": {"stringValue": "ok"}}]}}}  # fmt: skip
    for _ in range(2):  # the second time is a resend: nothing more
        assert client.post("/otlp/v1/logs", json=_json_logs(said, said)).status_code == 200
    assert client.post("/otlp/v1/traces", json=_json_span()).status_code == 200
    _flush(client)
    (trace,) = app.state.container.gateway.traces.list(deployment="js-app")
    assert trace.request_text == "user: ok\nuser: ok"
