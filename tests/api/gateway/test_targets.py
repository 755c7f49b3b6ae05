"""Target resolution from the registry, and the breaker, admission and retry policies alone."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from gw_harness import Gateway

from llmloop.core.deployments import (
    AdmissionPolicy,
    BreakerPolicy,
    DeploymentSpec,
    RetryPolicy,
    TargetSpec,
)
from llmloop.core.models import ModelCreate, ModelVersionCreate
from llmloop.errors import ConfigError, NotFoundError, OverloadedError
from llmloop.services.actors import local_actor
from llmloop.services.gateway.admission import Admission
from llmloop.services.gateway.breaker import CircuitBreaker
from llmloop.services.gateway.router import sticky_point
from llmloop.services.gateway.targets import resolve_target


def _version(gw: Gateway, name: str, **fields: object) -> None:
    gw.container.models.create(ModelCreate(name=name), local_actor())
    spec = ModelVersionCreate.model_validate(fields)
    gw.container.models.create_version(name, spec, local_actor())


def _resolve(gw: Gateway, **target: object):  # type: ignore[no-untyped-def]
    c = gw.container
    return resolve_target(TargetSpec.model_validate(target), c.models, c.artifacts)


async def test_formats_decide_the_engine(gw: Gateway, tmp_path: Path) -> None:
    _version(gw, "e", format="echo", params={"prefix": "E:", "price_in_per_1k": 0.5})
    r = _resolve(gw, model="e")
    assert (r.engine.kind, r.engine.options["prefix"], r.price_in_per_1k) == ("echo", "E:", 0.5)
    assert r.version_id and r.key.startswith(r.version_id)
    assert "price_in_per_1k" not in r.engine.options  # the gateway's, not the engine's
    inline = {
        "kind": "openai",
        "model": "m",
        "options": {"base_url": "http://up/v1", "price_in_per_1k": 3, "price_out_per_1k": 4},
    }
    r = _resolve(gw, engine=inline)  # an engine whose options forbid unknown keys
    assert (r.price_in_per_1k, r.price_out_per_1k, r.engine.options) == (
        3.0, 4.0, {"base_url": "http://up/v1"})  # fmt: skip
    params = {"base_url": "http://up/v1", "model": "gpt-x", "price_out_per_1k": 2}
    _version(gw, "o", format="openai", params=params)
    r = _resolve(gw, model="o", version=1)
    assert (r.engine.kind, r.engine.model, r.engine.options) == (
        "openai", "gpt-x", {"base_url": "http://up/v1", "model": "gpt-x"})  # fmt: skip
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "config.json").write_text("{}")
    ref = gw.container.artifacts.put_dir(tmp_path / "w")
    _version(gw, "h", format="hf", artifact=ref.model_dump())
    r = _resolve(gw, model="h", alias="latest")
    assert r.engine.kind == "hf" and (Path(r.engine.model) / "config.json").exists()
    _version(gw, "l", format="peft-lora", base_model="tiny/base", artifact=ref.model_dump())
    r = _resolve(gw, model="l")
    assert (r.engine.model, r.engine.adapter) == ("tiny/base", r.engine.adapter)
    assert r.engine.adapter and Path(r.engine.adapter).is_dir()


async def test_unresolvable_targets(gw: Gateway) -> None:
    with pytest.raises(NotFoundError):
        _resolve(gw, model="missing")
    _version(gw, "nourl", format="openai", params={})
    with pytest.raises(ConfigError, match="base_url"):
        _resolve(gw, model="nourl")
    _version(gw, "g", format="other")
    with pytest.raises(ConfigError, match="cannot be served"):
        _resolve(gw, model="g")
    with pytest.raises(NotFoundError):
        _resolve(gw, model="g", alias="champion")


def test_breaker_states() -> None:
    now = [0.0]
    b = CircuitBreaker(BreakerPolicy(failure_threshold=2, cooldown_s=5), clock=lambda: now[0])
    b.record_failure()
    assert b.allow() and b.state == "closed"
    b.record_failure()
    assert b.state == "open" and not b.allow() and b.retry_after() == 5
    now[0] = 5.0
    assert b.state == "half_open" and b.allow() and not b.allow()  # one probe only
    b.record_failure()
    assert b.state == "open"
    now[0] = 10.0
    assert b.allow()
    b.record_success()
    assert b.state == "closed" and b.allow() and b.allow()


def test_retry_backoff_is_exponential_and_capped() -> None:
    p = RetryPolicy(max_retries=5, backoff_s=0.1, backoff_factor=2, max_backoff_s=0.5)
    assert [p.delay(i) for i in range(1, 6)] == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])


def test_sticky_point_is_stable_and_spread() -> None:
    assert sticky_point("alice") == sticky_point("alice")
    points = [sticky_point(f"user-{i}") for i in range(2000)]
    assert all(0 <= p < 1 for p in points)
    assert abs(sum(p < 0.3 for p in points) / 2000 - 0.3) < 0.05


async def test_admission_queue_and_refusal() -> None:
    gate = Admission("d", AdmissionPolicy(max_in_flight=1, max_queue=1, queue_timeout_s=0.2))
    await gate.acquire()
    waiter = asyncio.create_task(gate.acquire())
    await asyncio.sleep(0)
    assert gate.queued == 1
    with pytest.raises(OverloadedError):
        await gate.acquire()  # queue full
    gate.release()  # hands the slot to the waiter
    await waiter
    assert gate.in_flight == 1 and gate.queued == 0
    with pytest.raises(OverloadedError, match="timed out"):
        await gate.acquire()  # waits 0.2 s, then refused
    gate.release()
    assert gate.in_flight == 0


async def test_a_deployment_that_cannot_serve_is_refused_and_not_stored(
    gw: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    openai_opts = {"base_url": "http://127.0.0.1:9/v1", "api_key_env": "NO_SUCH_KEY_VAR"}
    cases = [
        ({"engine": {"kind": "openai", "model": "m", "options": openai_opts}}, 422,
         "targets.0 (openai:m): environment variable 'NO_SUCH_KEY_VAR' is not set"),
        ({"engine": {"kind": "nosuch", "model": "m"}}, 404, "targets.0 (nosuch:m): no engine"),
        ({"engine": {"kind": "openai", "model": "m", "options": {"base_ur": "x"}}}, 422,
         "targets.0 (openai:m): bad openai engine options"),
    ]  # fmt: skip
    for target, status, detail in cases:
        for method, url in (("POST", "/api/deployments"), ("PUT", "/api/deployments/bad")):
            resp = await gw.http.request(method, url, json={"name": "bad", "targets": [target]})
            assert resp.status_code == status, resp.text
            assert detail in resp.json()["detail"]
            assert (await gw.http.get("/api/deployments/bad")).status_code == 404
    resp = await gw.http.post("/api/deployments", json={"name": "bad", "targets": [
        {"engine": {"kind": "echo", "model": "m"}}], "cache": {"ttl_s": 0}})  # fmt: skip
    assert resp.status_code == 422 and resp.json()["detail"].startswith("cache: ")


async def test_a_stored_deployment_that_cannot_start_is_the_servers_502(gw: Gateway) -> None:
    """A target gone from the registry after the deployment was stored is not the caller's
    404 (its model exists): it is an upstream failure naming what is wrong."""
    _version(gw, "gone", format="echo")
    spec = DeploymentSpec.model_validate(
        {"name": "orphan", "targets": [{"model": "gone", "alias": "champion"}]}
    )
    gw.container.deployments.apply(spec, local_actor())  # stored without the gateway's checks
    resp = await gw.http.post("/v1/chat/completions", json={
        "model": "orphan", "messages": [{"role": "user", "content": "hi"}]})  # fmt: skip
    assert resp.status_code == 502, resp.text
    message = resp.json()["error"]["message"]
    assert "deployment 'orphan' cannot start" in message and "no alias 'champion'" in message
