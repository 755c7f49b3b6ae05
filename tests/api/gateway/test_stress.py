"""Behaviour under stress: alias swap under load, client disconnect (streams and whole answers,
mid-body too), overload, per-key limits, bodies over the limit, and /metrics as Prometheus reads
it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import gw_probe
import orjson
import pytest
from gw_harness import Gateway, probe
from prometheus_client.parser import text_string_to_metric_families

from llmloop.core.models import ModelCreate, ModelVersionCreate
from llmloop.services.actors import local_actor

MSG = [{"role": "user", "content": "w1 w2 w3 w4"}]


def _register(gw: Gateway) -> None:
    models, me = gw.container.models, local_actor()
    models.create(ModelCreate(name="m"), me)
    for n in (1, 2):
        params = {"engine": "probe", "prefix": f"v{n}:", "delay_s": 0.004}
        models.create_version("m", ModelVersionCreate(format="echo", base_model=f"m-v{n}",
                                                      params=params), me)  # fmt: skip
    models.set_alias("m", "champion", 1, me)


async def test_alias_swap_under_load_fails_no_request(gw: Gateway) -> None:
    _register(gw)
    await gw.deploy({"name": "live", "targets": [{"model": "m", "alias": "champion"}]})
    results: list[tuple[int, str]] = []
    stop = asyncio.Event()

    async def client(stream: bool) -> None:
        while not stop.is_set():
            body = {"model": "live", "messages": MSG, "stream": stream}
            resp = await gw.http.post("/v1/chat/completions", json=body)
            text = resp.text if stream else resp.json()["choices"][0]["message"]["content"]
            results.append((resp.status_code, text))

    tasks = [asyncio.create_task(client(i % 2 == 0)) for i in range(16)]
    await asyncio.sleep(0.3)
    assert gw_probe.ACTIVE["m-v1"] > 0  # requests are in flight on v1 during the swap
    gw.container.models.set_alias("m", "champion", 2, local_actor())
    resp = await gw.http.post("/api/deployments/live/reload")
    assert resp.status_code == 200, resp.text
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.gather(*tasks)
    assert results and all(status == 200 for status, _ in results)
    assert all("[DONE]" in text or text.startswith("v") for _, text in results)
    assert any("v1:" in text for _, text in results) and "v2:" in results[-1][1]
    assert gw_probe.CLOSED["m-v1"] == 1 and gw_probe.CLOSED["m-v2"] == 0
    assert gw_probe.ACTIVE["m-v1"] == 0


async def test_disconnect_cancels_generation(gw: Gateway) -> None:
    await gw.deploy({"name": "slow", "targets": [probe("slow", delay_s=0.05)]})
    words = " ".join(f"w{i}" for i in range(200))  # 10 s if it ran to the end
    started = time.perf_counter()
    body = {"model": "slow", "stream": True, "messages": [{"role": "user", "content": words}]}
    seen = await gw.raw_stream(body, chunks_before_leaving=3)
    assert time.perf_counter() - started < 2.0
    assert seen < 10
    assert gw_probe.CANCELLED["slow"] == 1 and gw_probe.ACTIVE["slow"] == 0
    [trace] = await gw.traces(deployment="slow")
    assert trace["status"] == "cancelled"
    assert gw.container.gateway.manager.runtimes["slow"].admission.in_flight == 0


async def test_a_dropped_stream_is_charged_what_it_used(gw: Gateway) -> None:
    """Usage comes with a stream's last chunk: a client that leaves before it must still be
    charged (the prompt's estimate and a token per chunk), or tpm and budgets are bypassed."""
    await gw.deploy({"name": "slow", "targets": [probe("slow", delay_s=0.05)]})
    key = gw.new_key("editor", {"tpm": 400})
    words = " ".join(f"w{i}" for i in range(200))  # about 223 tokens by the estimate
    body = {"model": "slow", "stream": True, "max_tokens": 100,
            "messages": [{"role": "user", "content": words}]}  # fmt: skip
    await gw.raw_stream(body, chunks_before_leaving=4, key=key)
    await gw.container.gateway.drain_background()
    [trace] = await gw.traces(deployment="slow")
    assert trace["status"] == "cancelled"
    assert trace["input_tokens"] > 200 and 1 <= trace["output_tokens"] < 10
    assert trace["attributes"]["llmloop.usage_estimated"] is True
    again = await gw.http.post("/v1/chat/completions", json={**body, "stream": False},
                               headers={"Authorization": f"Bearer {key}"})  # fmt: skip
    assert again.status_code == 429  # ~230 used + ~323 reserved > 400


async def test_overload_answers_503_fast_with_retry_after(gw: Gateway) -> None:
    await gw.deploy({"name": "tiny", "admission": {"max_in_flight": 1, "max_queue": 0},
                     "targets": [probe("tiny", delay_s=0.2)]})  # fmt: skip
    slow = asyncio.create_task(gw.http.post(
        "/v1/chat/completions", json={"model": "tiny", "messages": MSG}))  # fmt: skip
    while gw_probe.ACTIVE["tiny"] == 0:
        await asyncio.sleep(0.005)
    started = time.perf_counter()
    resp = await gw.http.post("/v1/chat/completions", json={"model": "tiny", "messages": MSG})
    assert time.perf_counter() - started < 0.2
    assert resp.status_code == 503 and resp.headers["retry-after"] == "1"
    assert resp.json()["error"]["code"] == "overloaded"
    assert (await slow).status_code == 200


async def test_queue_admits_waiters_in_turn(gw: Gateway) -> None:
    await gw.deploy({"name": "queued", "admission": {"max_in_flight": 2, "max_queue": 10},
                     "targets": [probe("queued", delay_s=0.01)]})  # fmt: skip
    body = {"model": "queued", "messages": MSG}
    resps = await asyncio.gather(*[gw.http.post("/v1/chat/completions", json=body)
                                   for _ in range(12)])  # fmt: skip
    assert [r.status_code for r in resps] == [200] * 12
    assert gw.container.gateway.manager.runtimes["queued"].admission.in_flight == 0


async def test_per_key_rate_limit_is_429_with_retry_after(gw: Gateway) -> None:
    key = gw.new_key("viewer", {"rpm": 2})
    headers = {"Authorization": f"Bearer {key}"}
    body = {"model": "chat", "messages": MSG}
    codes = [(await gw.http.post("/v1/chat/completions", json=body, headers=headers))
             for _ in range(3)]  # fmt: skip
    assert [r.status_code for r in codes] == [200, 200, 429]
    assert int(codes[2].headers["retry-after"]) >= 1
    assert codes[2].json()["error"]["type"] == "rate_limit_error"


async def test_metrics_endpoint_counts_requests(gw: Gateway) -> None:
    await gw.http.post("/v1/chat/completions", json={"model": "chat", "messages": MSG})
    text = (await gw.http.get("/metrics", headers={"Authorization": ""})).text
    line = 'llmloop_gateway_requests_total{deployment="chat",operation="chat",status="ok"} 1.0'
    assert line in text
    assert "llmloop_gateway_latency_seconds_bucket" in text


def _scope(path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
            "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
            "root_path": "", "headers": headers, "client": ("127.0.0.1", 1),
            "server": ("gw", 80)}  # fmt: skip


async def _drive(
    gw: Gateway, path: str, parts: list[bytes], leave: asyncio.Event
) -> list[dict[str, Any]]:
    """Send ``parts`` as the body (the last one ends it, unless ``leave`` comes first), then
    disconnect once ``leave`` is set; returns what the app sent."""
    pending = list(parts)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if pending and not leave.is_set():
            part = pending.pop(0)
            return {"type": "http.request", "body": part, "more_body": bool(pending)}
        await leave.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    auth = [(b"authorization", f"Bearer {gw.key}".encode())]
    await asyncio.wait_for(gw.app(_scope(path, auth), receive, send), 5)
    return sent


async def test_a_client_that_leaves_cancels_a_whole_answer(gw: Gateway) -> None:
    """Not only streams: a client that gives up on a whole answer (a timeout in its SDK) stops
    the engine at once, instead of it generating every token for nobody."""
    await gw.deploy({"name": "slow", "targets": [probe("slow", delay_s=0.05)]})
    words = " ".join(f"w{i}" for i in range(200))  # 10 s if it ran to the end
    body = orjson.dumps({"model": "slow", "messages": [{"role": "user", "content": words}]})
    leave = asyncio.Event()
    driving = asyncio.create_task(_drive(gw, "/v1/chat/completions", [body], leave))
    while gw_probe.ACTIVE["slow"] == 0:
        await asyncio.sleep(0.005)
    leave.set()
    sent = await driving
    assert sent == []  # nobody to answer
    assert gw_probe.CANCELLED["slow"] == 1 and gw_probe.ACTIVE["slow"] == 0
    [trace] = await gw.traces(deployment="slow")
    assert trace["status"] == "cancelled" and trace["http_status"] == 499
    assert gw.container.gateway.manager.runtimes["slow"].admission.in_flight == 0
    # the server goes on serving
    resp = await gw.http.post("/v1/chat/completions", json={"model": "chat", "messages": MSG})
    assert resp.status_code == 200


async def test_a_client_that_leaves_mid_body_is_no_error(
    gw: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    leave = asyncio.Event()
    leave.set()  # gone after the first part of the body
    parts = [b'{"model": "chat", "mess', b'ages": []}']
    with caplog.at_level(logging.ERROR):
        sent = await _drive(gw, "/v1/chat/completions", parts, leave)
    assert sent == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # no traceback logged
    assert await gw.traces() == []


async def _chunks(total: int, size: int = 1 << 20) -> AsyncIterator[bytes]:
    for _ in range(total // size):
        yield b" " * size


@pytest.mark.parametrize("path", ["/api/datasets", "/v1/chat/completions"])
async def test_a_chunked_body_over_the_limit_is_413(gw: Gateway, path: str) -> None:
    """No Content-Length: the limit applies as the body streams in, on the REST routes too
    (FastAPI answers a body it cannot read with its own 400, which must not win)."""
    limit = gw.app.state.settings.max_body_bytes
    resp = await gw.http.post(path, content=_chunks(limit + (2 << 20)))
    assert "content-length" not in resp.request.headers
    assert resp.status_code == 413
    body = resp.json()
    code = body["error"]["code"] if path.startswith("/v1/") else body["code"]
    assert code == "payload_too_large"


def _families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


async def test_metrics_parse_and_count_refusals_and_load(gw: Gateway) -> None:
    """/metrics through prometheus_client's own parser: the families and types an operator
    alerts on, refusals (503 overloaded, 429 per limit) counted, the load gauges of each
    deployment set, no label that grows with traffic, latency buckets long enough for LLMs."""
    await gw.deploy({"name": "tiny", "admission": {"max_in_flight": 1, "max_queue": 0},
                     "targets": [probe("tiny", delay_s=0.2)]})  # fmt: skip
    body = {"model": "tiny", "messages": MSG}
    slow = asyncio.create_task(gw.http.post("/v1/chat/completions", json=body))
    while gw_probe.ACTIVE["tiny"] == 0:
        await asyncio.sleep(0.005)
    assert (await gw.http.post("/v1/chat/completions", json=body)).status_code == 503
    during = _families((await gw.http.get("/metrics")).text)
    assert (await slow).status_code == 200
    key = {"Authorization": f"Bearer {gw.new_key('viewer', {'rpm': 1})}"}
    for status in (200, 429):
        resp = await gw.http.post("/v1/chat/completions", json={**body, "model": "chat"},
                                  headers=key)  # fmt: skip
        assert resp.status_code == status
    after = _families((await gw.http.get("/metrics")).text)

    in_flight = {
        s.labels["deployment"]: s.value for s in during["llmloop_gateway_in_flight"].samples
    }
    assert in_flight["tiny"] == 1 and in_flight["chat"] == 0
    assert during["llmloop_gateway_queued"].type == "gauge"
    refused = {(s.labels["deployment"], s.labels["reason"]): s.value
               for s in after["llmloop_gateway_refused_requests"].samples
               if s.name.endswith("_total")}  # fmt: skip
    assert refused == {("tiny", "overloaded"): 1, ("chat", "rpm"): 1}
    assert after["llmloop_gateway_in_flight"].samples[0].value == 0
    types = {"llmloop_gateway_requests": "counter", "llmloop_gateway_tokens": "counter",
             "llmloop_gateway_latency_seconds": "histogram",
             "llmloop_gateway_ttft_seconds": "histogram",
             "llmloop_gateway_trace_queue_depth": "gauge"}  # fmt: skip
    assert {name: after[name].type for name in types} == types
    allowed = {"deployment", "operation", "status", "direction", "reason", "le"}
    for family in after.values():
        for sample in family.samples:
            assert set(sample.labels) <= allowed, (family.name, sample.labels)
    buckets = [float(s.labels["le"]) for s in after["llmloop_gateway_latency_seconds"].samples
               if s.name.endswith("_bucket") and s.labels["deployment"] == "tiny"]  # fmt: skip
    assert max(b for b in buckets if b != float("inf")) >= 300  # long generations are minutes
