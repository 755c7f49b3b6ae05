"""What an OpenAI-compatible upstream receives: the sampling fields the client chose and no
invented defaults (no max_tokens cap the client did not ask for), max_completion_tokens as sent
(reasoning models refuse max_tokens), and every field llmloop does not read (logit_bias,
reasoning_effort, vLLM's extra sampling through the SDK's extra_body) as it came."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from gw_harness import Gateway

from llmloop.core.chat import EngineSpec
from llmloop.engines.echo import EchoEngine
from llmloop.testing.mock_upstream import MockUpstream


@pytest.fixture
async def upstream(gw: Gateway) -> AsyncIterator[MockUpstream]:
    async with MockUpstream(EchoEngine(EngineSpec(kind="echo", model="up"))) as mock:
        target = {"engine": {"kind": "openai", "model": "up",
                             "options": {"base_url": mock.base_url}}}  # fmt: skip
        await gw.deploy({"name": "up", "targets": [target]})
        yield mock


async def test_only_chosen_sampling_fields_go_upstream(gw: Gateway, upstream: MockUpstream) -> None:
    await gw.client.chat.completions.create(model="up", messages=[{"role": "user", "content": "x"}])
    sent = upstream.requests[-1]
    assert not {"max_tokens", "temperature", "top_p"} & set(sent)
    await gw.client.chat.completions.create(
        model="up", messages=[{"role": "user", "content": "x"}], max_tokens=7, temperature=0.2
    )
    sent = upstream.requests[-1]
    assert sent["max_tokens"] == 7 and sent["temperature"] == 0.2 and "top_p" not in sent


async def test_unread_fields_pass_through(gw: Gateway, upstream: MockUpstream) -> None:
    resp = await gw.client.chat.completions.create(
        model="up", messages=[{"role": "user", "content": "a b c"}], max_completion_tokens=2,
        logit_bias={"50256": -100}, reasoning_effort="low", extra_body={"min_p": 0.05},
    )  # fmt: skip
    sent = upstream.requests[-1]
    assert sent["max_completion_tokens"] == 2 and "max_tokens" not in sent
    assert sent["logit_bias"] == {"50256": -100} and sent["reasoning_effort"] == "low"
    assert sent["min_p"] == 0.05
    assert resp.choices[0].message.content == "a b"  # the local cap follows it too
    await gw.client.completions.create(model="up", prompt="p", extra_body={"best_of": 2})
    assert upstream.requests[-1]["best_of"] == 2


async def test_passthrough_is_part_of_the_cache_key(gw: Gateway, upstream: MockUpstream) -> None:
    target = {"engine": {"kind": "openai", "model": "up",
                         "options": {"base_url": upstream.base_url}}}  # fmt: skip
    await gw.deploy({"name": "cached", "targets": [target], "cache": {"ttl_s": 60}})
    body = {"model": "cached", "temperature": 0, "messages": [{"role": "user", "content": "q"}]}
    for extra in ({"logit_bias": {"1": 5}}, {"logit_bias": {"1": -5}}, {"logit_bias": {"1": 5}}):
        assert (
            await gw.http.post("/v1/chat/completions", json={**body, **extra})
        ).status_code == 200
    assert len(upstream.requests) == 2
