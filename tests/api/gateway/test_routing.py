"""Routing: canary split, stickiness, shadow traffic, fallbacks, retries, circuit breaker."""

from __future__ import annotations

import asyncio
from collections import Counter

import gw_probe
from gw_harness import Gateway, echo, probe

MSG = [{"role": "user", "content": "hi"}]


async def _ask(gw: Gateway, model: str, user: str | None = None) -> tuple[int, str]:
    body: dict[str, object] = {"model": model, "messages": MSG, "max_tokens": 8}
    if user:
        body["user"] = user
    resp = await gw.http.post("/v1/chat/completions", json=body)
    if resp.status_code != 200:
        return resp.status_code, resp.text
    return 200, resp.json()["choices"][0]["message"]["content"]


async def test_canary_split_within_5_percent(gw: Gateway) -> None:
    await gw.deploy({"name": "canary", "targets": [
        {**echo("A:"), "weight": 0.8}, {**echo("B:"), "weight": 0.2}]})  # fmt: skip
    answers = Counter()
    for _ in range(10):
        results = await asyncio.gather(*[_ask(gw, "canary") for _ in range(100)])
        answers.update(text[:2] for _, text in results)
    assert answers["A:"] + answers["B:"] == 1000
    assert abs(answers["B:"] / 1000 - 0.2) <= 0.05


async def test_sticky_users_keep_their_target(gw: Gateway) -> None:
    await gw.deploy({"name": "sticky", "sticky": True, "targets": [
        {**echo("A:"), "weight": 1}, {**echo("B:"), "weight": 1}]})  # fmt: skip
    seen: dict[str, set[str]] = {}
    for i in range(40):
        user = f"user-{i % 8}"
        _, text = await _ask(gw, "sticky", user)
        seen.setdefault(user, set()).add(text[:2])
    assert all(len(v) == 1 for v in seen.values())
    assert {next(iter(v)) for v in seen.values()} == {"A:", "B:"}


async def test_shadow_answer_is_stored_not_returned(gw: Gateway) -> None:
    await gw.deploy({"name": "shadowed", "targets": [echo("P:")], "shadow": echo("S:")})
    status, text = await _ask(gw, "shadowed")
    assert (status, text) == (200, "P:hi")
    await gw.container.gateway.drain_background()
    traces = await gw.traces(deployment="shadowed")
    primary = next(t for t in traces if t["kind"] == "primary")
    shadow = next(t for t in traces if t["kind"] == "shadow")
    assert shadow["parent_id"] == primary["id"]
    assert (primary["response_text"], shadow["response_text"]) == ("P:hi", "S:hi")


async def test_trace_sample_stores_a_share_of_traces_and_their_shadows(gw: Gateway) -> None:
    await gw.deploy({"name": "quiet", "targets": [echo("P:")], "trace_sample": 0.0})
    await gw.deploy({"name": "half", "targets": [echo("P:")], "shadow": echo("S:"),
                     "trace_sample": 0.5})  # fmt: skip
    for _ in range(10):
        assert await _ask(gw, "quiet") == (200, "P:hi")
    for _ in range(200):
        assert await _ask(gw, "half") == (200, "P:hi")
    await gw.container.gateway.drain_background()
    assert await gw.traces(deployment="quiet") == []
    metrics = (await gw.http.get("/metrics")).text
    counted = 'llmloop_gateway_requests_total{deployment="quiet",operation="chat",status="ok"}'
    assert f"{counted} 10.0" in metrics
    traces = await gw.traces(deployment="half")
    primaries = {t["id"] for t in traces if t["kind"] == "primary"}
    shadows = {t["parent_id"] for t in traces if t["kind"] == "shadow"}
    assert 70 <= len(primaries) <= 130  # binomial(200, 0.5): 6 standard deviations
    assert shadows == primaries  # a shadow is kept exactly when its primary is


async def test_fallback_serves_when_the_target_fails(gw: Gateway) -> None:
    await gw.deploy({"name": "fb", "targets": [echo("P:", fail_rate=1.0)],
                     "fallbacks": [echo("F:")]})  # fmt: skip
    assert await _ask(gw, "fb") == (200, "F:hi")
    [trace] = await gw.traces(deployment="fb")
    assert trace["target"].startswith("fallback")


async def test_retries_only_retryable_errors(gw: Gateway) -> None:
    retry = {"max_retries": 3, "backoff_s": 0.001}
    await gw.deploy({"name": "flaky", "retry": retry, "targets": [probe("flaky", fail_first=2)]})
    assert await _ask(gw, "flaky") == (200, "hi")
    assert gw_probe.CALLS["flaky"] == 3
    await gw.deploy({"name": "fatal", "retry": retry, "targets": [probe("fatal", fatal=True)],
                     "fallbacks": [echo("F:")]})  # fmt: skip
    status, body = await _ask(gw, "fatal")
    assert status == 502 and "fatal" in body
    assert gw_probe.CALLS["fatal"] == 1


async def test_all_targets_failing_is_502_after_retries(gw: Gateway) -> None:
    await gw.deploy({"name": "down", "retry": {"max_retries": 1, "backoff_s": 0},
                     "targets": [probe("down", fail_first=99)]})  # fmt: skip
    status, _ = await _ask(gw, "down")
    assert status == 502 and gw_probe.CALLS["down"] == 2


async def test_circuit_breaker_opens_and_recovers(gw: Gateway) -> None:
    gw_probe.DOWN["p"] = True
    await gw.deploy({"name": "cb", "breaker": {"failure_threshold": 2, "cooldown_s": 0.3},
                     "targets": [probe("cb", down="p")], "fallbacks": [echo("F:")]})  # fmt: skip
    for _ in range(2):
        assert await _ask(gw, "cb") == (200, "F:hi")
    assert gw_probe.CALLS["cb"] == 2
    for _ in range(3):  # open: the failing target is not even tried
        assert await _ask(gw, "cb") == (200, "F:hi")
    assert gw_probe.CALLS["cb"] == 2
    gw_probe.DOWN["p"] = False
    await asyncio.sleep(0.35)
    assert await _ask(gw, "cb") == (200, "hi")  # the half-open probe succeeds and closes it
    assert await _ask(gw, "cb") == (200, "hi")
    assert gw_probe.CALLS["cb"] == 4


async def test_open_breaker_without_fallback_is_503_with_retry_after(gw: Gateway) -> None:
    await gw.deploy({"name": "cb2", "breaker": {"failure_threshold": 1, "cooldown_s": 30},
                     "targets": [probe("cb2", fail_first=99)]})  # fmt: skip
    assert (await _ask(gw, "cb2"))[0] == 502
    resp = await gw.http.post("/v1/chat/completions", json={"model": "cb2", "messages": MSG})
    assert resp.status_code == 503 and int(resp.headers["retry-after"]) >= 1


async def _shadows(gw: Gateway, deployment: str) -> list[dict[str, object]]:
    await gw.container.gateway.drain_background()
    return [t for t in await gw.traces(deployment=deployment) if t["kind"] == "shadow"]


async def test_a_shadow_answer_is_scored_against_the_primary(gw: Gateway) -> None:
    await gw.deploy({"name": "scored", "targets": [echo("")],
                     "shadow": echo("", reply="hello there")})  # fmt: skip
    words = [{"role": "user", "content": "hello there world"}]
    resp = await gw.client.chat.completions.create(model="scored", messages=words)
    assert resp.choices[0].message.content == "hello there world"  # never the shadow's
    [shadow] = await _shadows(gw, "scored")
    assert shadow["response_text"] == "hello there"
    assert shadow["attributes"]["llmloop.shadow.agreement"] == 0.8  # token F1: 2 of 3 words
    assert shadow["attributes"]["llmloop.shadow.exact_match"] is False


async def test_a_streamed_primary_is_scored_once_it_has_ended(gw: Gateway) -> None:
    """The shadow (a whole answer) ends long before the slow stream it copies."""
    await gw.deploy({"name": "slowstream", "targets": [echo("", delay_s=0.05)],
                     "shadow": echo("")})  # fmt: skip
    words = [{"role": "user", "content": "one two three four five six"}]
    stream = await gw.client.chat.completions.create(model="slowstream", messages=words,
                                                     stream=True)  # fmt: skip
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "one two three four five six"
    [shadow] = await _shadows(gw, "slowstream")
    assert shadow["attributes"]["llmloop.shadow.exact_match"] is True
    assert shadow["attributes"]["llmloop.shadow.agreement"] == 1.0


async def test_a_shadow_keeps_no_text_when_the_deployment_keeps_none(gw: Gateway) -> None:
    await gw.deploy({"name": "private", "log_text": False, "targets": [echo("P:")],
                     "shadow": echo("S:")})  # fmt: skip
    assert await _ask(gw, "private") == (200, "P:hi")
    [shadow] = await _shadows(gw, "private")
    assert (shadow["request_text"], shadow["response_text"]) == ("", "")
    assert "llmloop.shadow.agreement" not in shadow["attributes"]


async def test_slow_shadow_copies_are_bounded_not_piled_up(gw: Gateway) -> None:
    await gw.deploy({"name": "bounded", "admission": {"max_in_flight": 2},
                     "targets": [echo("P:")], "shadow": echo("S:", delay_s=0.5)})  # fmt: skip
    for _ in range(5):
        assert await _ask(gw, "bounded") == (200, "P:hi")  # the primary is not held up
    shadows = await _shadows(gw, "bounded")
    assert len(shadows) == 2 and all(s["response_text"] == "S:hi" for s in shadows)
    metrics = (await gw.http.get("/metrics")).text
    assert 'llmloop_gateway_shadow_requests_total{deployment="bounded",status="skipped"} 3.0' in (
        metrics
    )
