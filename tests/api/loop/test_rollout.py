"""The closed loop's decision: a challenger on a canary slice is judged on live feedback; a
worse one is rolled back, a better one promoted (through an approval, the alias being
protected), and each decision is a recorded run with lineage to both versions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import openai
import pytest

from llmloop.api.app import create_app
from llmloop.config import load_settings
from llmloop.core.feedback import FeedbackCreate
from llmloop.core.governance import ApiKeyCreate
from llmloop.core.models import ModelVersionCreate
from llmloop.services.actors import Actor, local_actor
from llmloop.services.container import Container

ME, REVIEWER = local_actor("ops"), Actor("reviewer", "admin")


@pytest.fixture
async def loop(tmp_path: Path) -> AsyncIterator[tuple[Container, openai.AsyncOpenAI]]:
    settings = load_settings(
        {"home": str(tmp_path), "gateway_reload_s": 0, "trace_flush_ms": 20}, env={}
    )
    c = Container(settings)
    app = create_app(settings, c)
    key = c.keys.create(ApiKeyCreate(name="k", role="admin"), ME).secret
    client = openai.AsyncOpenAI(
        api_key=key,
        base_url="http://gw/v1",
        max_retries=0,
        http_client=httpx.AsyncClient(transport=httpx.ASGITransport(app=app), timeout=30),
    )
    for reply in ("good answer", "bad answer", "good answer, even better"):
        c.models.create_version(
            "bot", ModelVersionCreate(format="echo", params={"reply": reply}), ME
        )
    c.models.set_alias("bot", "champion", 1, ME)
    c.governance.protect("model_alias", "bot", "champion", True, ME)
    yield c, client
    await client.close()
    await c.gateway.aclose()
    c.close()


async def traffic(c: Container, client: openai.AsyncOpenAI, n: int) -> None:
    """Simulated users: thumbs up when the answer is good, down otherwise."""
    for i in range(n):
        raw = await client.chat.completions.with_raw_response.create(
            model="support",
            messages=[{"role": "user", "content": f"question {i}"}],
            user=f"user-{i}",
        )
        trace_id = raw.headers["x-llmloop-trace-id"]
        answer = raw.parse().choices[0].message.content or ""
        await c.gateway.writer.flush()
        c.feedback.add(
            trace_id, FeedbackCreate(kind="thumbs", value=1.0 if "good" in answer else 0.0), ME
        )


async def test_worse_rolls_back_better_promotes(loop: tuple[Container, openai.AsyncOpenAI]) -> None:
    c, client = loop
    since = datetime.now(UTC) - timedelta(seconds=1)
    c.rollout.start_canary("support", "bot", 2, ME, weight=0.5)
    await c.gateway.manager.reload("support")
    await traffic(c, client, 60)
    decision = c.rollout.evaluate("support", "bot", since, min_requests=10)
    assert decision.decision == "rollback", decision
    applied = c.rollout.apply(decision, ME, approver=REVIEWER)
    assert c.models.get("bot").aliases["champion"] == 1
    assert [t.name for t in c.deployments.get("support").spec.targets] == ["champion"]
    assert applied.run_id and c.runs.get(applied.run_id).tags["decision"] == "rollback"

    since = datetime.now(UTC)
    c.rollout.start_canary("support", "bot", 3, ME, weight=0.5)
    await c.gateway.manager.reload("support")
    too_early = c.rollout.evaluate("support", "bot", since, min_requests=10)
    assert too_early.decision == "wait"
    await traffic(c, client, 60)
    decision = c.rollout.evaluate("support", "bot", since, min_requests=10)
    assert decision.decision == "promote", decision
    c.rollout.apply(decision, ME, approver=REVIEWER)
    assert c.models.get("bot").aliases["champion"] == 3
    approvals = c.governance.list_approvals("approved")
    assert approvals and approvals[0].decided_by == "reviewer"
    graph = c.governance.lineage(c.models.get_version("bot", 3).id, "down")
    assert any(n.type == "run" for n in graph.nodes)


async def test_a_wait_says_what_is_missing(loop: tuple[Container, openai.AsyncOpenAI]) -> None:
    """Enough requests but no feedback: the decision waits, and says it is feedback it lacks
    (it once called its request counts "rated traffic")."""
    c, client = loop
    since = datetime.now(UTC) - timedelta(seconds=1)
    c.rollout.start_canary("support", "bot", 2, ME, weight=0.5)
    await c.gateway.manager.reload("support")
    for i in range(40):
        await client.chat.completions.create(
            model="support", messages=[{"role": "user", "content": f"q {i}"}], user=f"u-{i}"
        )
    await c.gateway.writer.flush()
    decision = c.rollout.evaluate("support", "bot", since, min_requests=5)
    assert decision.decision == "wait"
    assert min(decision.champion_requests, decision.challenger_requests) >= 5
    assert "and feedback on the champion and the challenger" in decision.reason
