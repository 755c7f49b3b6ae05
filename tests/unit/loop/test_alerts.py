"""Alert rules: ok → pending → firing → ok, one webhook POST per firing and one per recovery
(a local aiohttp receiver on 127.0.0.1), retries on a failing webhook, drift-based rules."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web
from pydantic import ValidationError
from tests.unit.loop.loop_data import NOW, add_traces, minutes

from llmloop.core.alerts import AlertRuleCreate
from llmloop.core.drift import DriftTestResult
from llmloop.core.monitoring import DriftRunCreate, Window
from llmloop.errors import ConflictError, NotFoundError
from llmloop.services.actors import local_actor
from llmloop.services.container import Container

ME = local_actor("ops")


class Receiver:
    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []
        self.fail_first = 0
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        if self.fail_first > 0:
            self.fail_first -= 1
            return web.Response(status=503)
        self.payloads.append(await request.json())
        return web.Response(status=204)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    rec.url = f"http://127.0.0.1:{port}/hook"
    yield rec
    await runner.cleanup()


def _errors(c: Container, at_min: float, n: int, errors: int) -> None:
    add_traces(
        c,
        [
            {
                "at": NOW + minutes(at_min) + timedelta(seconds=i),
                "status": "error" if i < errors else "ok",
            }
            for i in range(n)
        ],
    )


async def test_fires_once_and_recovers_once(container: Container, receiver: Receiver) -> None:
    alerts = container.alerts
    alerts.retries, receiver.fail_first = 2, 1  # the first POST fails and is retried
    alerts.create(
        AlertRuleCreate(
            name="errors",
            metric="error_rate",
            threshold=0.2,
            window_s=300,
            for_s=120,
            deployment="dep",
            webhook_url=receiver.url,
        ),
        ME,
    )  # type: ignore[arg-type]
    _errors(container, 0, 20, 10)  # 50% errors from 12:00
    states = []
    for minute in (1, 2, 3, 4, 5):  # pending at 12:01, firing at 12:03, stays firing
        await alerts.evaluate(now=NOW + minutes(minute))
        states.append(alerts.get("errors").state)
    assert states == ["pending", "pending", "firing", "firing", "firing"]
    _errors(container, 5.5, 200, 0)  # healthy traffic: the window's error rate falls
    for minute in (6, 7, 8):
        await alerts.evaluate(now=NOW + minutes(minute))
    assert alerts.get("errors").state == "ok"
    assert [p["state"] for p in receiver.payloads] == ["firing", "resolved"]
    assert receiver.payloads[0]["value"] == pytest.approx(0.5)
    assert receiver.payloads[0]["rule"] == "errors" and receiver.payloads[1]["value"] < 0.2
    events = alerts.events("errors")
    assert [e.state for e in events] == ["resolved", "firing"] and all(e.delivered for e in events)


async def test_pending_that_clears_sends_nothing(container: Container, receiver: Receiver) -> None:
    alerts = container.alerts
    alerts.create(
        AlertRuleCreate(
            name="slow",
            metric="latency_p95",
            threshold=100,
            window_s=60,
            for_s=600,
            webhook_url=receiver.url,
        ),
        ME,
    )  # type: ignore[arg-type]
    add_traces(container, [{"at": NOW, "latency_ms": 500.0} for _ in range(5)])
    await alerts.evaluate(now=NOW + timedelta(seconds=30))
    assert alerts.get("slow").state == "pending"
    assert await alerts.evaluate(now=NOW + minutes(5)) == []  # no data: back to ok, silently
    assert alerts.get("slow").state == "ok" and receiver.payloads == []


async def test_undeliverable_webhook_is_recorded(container: Container) -> None:
    alerts = container.alerts
    alerts.retries = 1
    alerts.create(
        AlertRuleCreate(
            name="any",
            metric="requests",
            comparison=">=",
            threshold=1,
            webhook_url="http://127.0.0.1:9/none",
        ),
        ME,
    )  # type: ignore[arg-type]
    add_traces(container, [{"at": NOW}])
    (event,) = await alerts.evaluate(now=NOW + timedelta(seconds=10))
    assert event.state == "firing" and not event.delivered


async def test_drift_rule_and_rule_management(container: Container) -> None:
    alerts = container.alerts
    with pytest.raises(ValidationError):
        AlertRuleCreate(name="x", metric="nonsense", threshold=1)
    alerts.create(
        AlertRuleCreate(
            name="drift", metric="drift.input_embedding", threshold=0.5, comparison=">="
        ),
        ME,
    )
    with pytest.raises(ConflictError):
        alerts.create(AlertRuleCreate(name="drift", metric="error_rate", threshold=1), ME)
    result = DriftTestResult(
        metric="input_embedding",
        test="mmd",
        statistic=1.0,
        p_value=0.001,
        drifted=True,
        alpha=0.05,
        reference_n=50,
        current_n=50,
    )
    spec = DriftRunCreate(deployment="dep", reference=Window(since=NOW), current=Window(since=NOW))
    container.drift._store(spec, {}, {}, [result])
    (event,) = await alerts.evaluate()
    assert event.state == "firing" and event.value == 1.0 and event.delivered  # log only
    assert [r.name for r in alerts.list()] == ["drift"]
    alerts.delete("drift", ME)
    with pytest.raises(NotFoundError):
        alerts.get("drift")


async def test_deleting_a_firing_rule_resolves_it(container: Container, receiver: Receiver) -> None:
    """A firing rule that is deleted tells its webhook "resolved" once; a rule that is not
    firing goes silently."""
    alerts = container.alerts
    for name in ("gone", "quiet"):
        alerts.create(
            AlertRuleCreate(
                name=name,
                metric="requests",
                comparison=">=",
                threshold=1 if name == "gone" else 1e9,
                webhook_url=receiver.url,
            ),
            ME,
        )  # type: ignore[arg-type]
    add_traces(container, [{"at": NOW}])
    await alerts.evaluate(now=NOW + timedelta(seconds=10))
    assert [p["state"] for p in receiver.payloads] == ["firing"]
    # off the loop that serves the receiver, as the REST route and the CLI call it
    await asyncio.to_thread(alerts.delete, "quiet", ME)
    await asyncio.to_thread(alerts.delete, "gone", ME)
    assert [(p["rule"], p["state"]) for p in receiver.payloads] == [
        ("gone", "firing"),
        ("gone", "resolved"),
    ]
    assert "deleted" in receiver.payloads[1]["message"]
    assert receiver.payloads[1]["value"] == receiver.payloads[0]["value"]


def test_deleting_a_firing_rule_with_a_dead_webhook_does_not_hang(container: Container) -> None:
    alerts = container.alerts
    alerts.timeout_s = 1.0
    alerts.create(
        AlertRuleCreate(
            name="dead", metric="requests", comparison=">=", threshold=1,
            webhook_url="http://127.0.0.1:9/none",
        ),
        ME,
    )  # type: ignore[arg-type]  # fmt: skip
    add_traces(container, [{"at": NOW}])
    asyncio.run(alerts.evaluate(now=NOW + timedelta(seconds=10)))
    alerts.delete("dead", ME)  # one attempt, refused at once: returns
    with pytest.raises(NotFoundError):
        alerts.get("dead")
