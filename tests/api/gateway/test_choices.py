"""OpenAI's ``n`` through the official client: n choices (indexed 0..n-1, per prompt on batched
completions), usage with the prompt once, interleaved streams with one usage chunk, one trace and
one limits reservation per request, guards on every choice, no cached single answer served for
n > 1, and 400s naming ``n`` for values out of range."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from typing import Any

import gw_probe
import openai
import pytest
from gw_harness import Gateway, probe

from llmloop.core.chat import ChatMessage, GenerationRequest, SamplingParams
from llmloop.services.gateway.choices import choice_requests

MSG: Any = [{"role": "user", "content": "hello there"}]


def sse_events(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]


async def test_chat_answers_n_choices_with_the_prompt_counted_once(gw: Gateway) -> None:
    raw = await gw.client.chat.completions.with_raw_response.create(model="chat", messages=MSG, n=3)
    resp = raw.parse()
    assert [c.index for c in resp.choices] == [0, 1, 2]
    assert [c.message.content for c in resp.choices] == ["hello there"] * 3
    assert [c.finish_reason for c in resp.choices] == ["stop"] * 3
    assert resp.usage is not None and resp.usage.completion_tokens == 6
    one = await gw.client.chat.completions.create(model="chat", messages=MSG)
    assert one.usage is not None and resp.usage.prompt_tokens == one.usage.prompt_tokens
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + 6
    trace_id = raw.headers["x-llmloop-trace-id"]
    [trace] = [t for t in await gw.traces() if t["id"] == trace_id]
    assert (trace["input_tokens"], trace["output_tokens"]) == (resp.usage.prompt_tokens, 6)
    attrs = trace["attributes"]
    assert attrs["gen_ai.request.choice.count"] == 3
    assert attrs["gen_ai.response.finish_reasons"] == ["stop"] * 3
    assert attrs["llmloop.choices"] == ["hello there"] * 3
    assert trace["response_text"] == "hello there"


async def test_each_choice_is_its_own_engine_request_and_seeds_differ(gw: Gateway) -> None:
    await gw.deploy({"name": "p", "targets": [probe("p")]})
    await gw.client.chat.completions.create(model="p", messages=MSG, n=3, seed=7, temperature=1)
    assert sorted(r.sampling.seed for r in gw_probe.SEEN["p"]) == [7, 8, 9]  # type: ignore[type-var]
    await gw.client.chat.completions.create(model="p", messages=MSG, n=2, temperature=0)
    assert [r.sampling.seed for r in gw_probe.SEEN["p"][3:]] == [None, None]


def test_choice_requests_keep_the_first_seed_and_what_the_client_set() -> None:
    sampling = SamplingParams(temperature=0.5, seed=41)
    req = GenerationRequest(
        model="m", messages=[ChatMessage(role="user", content="x")], sampling=sampling
    )
    reqs = choice_requests(req, 3)
    assert reqs[0] is req and [r.sampling.seed for r in reqs] == [41, 42, 43]
    assert all(r.sampling.model_fields_set == {"temperature", "seed"} for r in reqs)
    assert choice_requests(req, 1) == [req]
    top = req.model_copy(update={"sampling": SamplingParams(seed=2**63 - 2)})
    assert [r.sampling.seed for r in choice_requests(top, 3)] == [2**63 - 2, 2**63 - 1, -(2**63)]


@pytest.mark.parametrize("seed", [2**63, -(2**63) - 1, 2**70])
async def test_a_seed_outside_int64_is_a_bad_request(gw: Gateway, seed: int) -> None:
    body = {"model": "chat", "messages": MSG, "seed": seed}
    resp = await gw.http.post("/v1/chat/completions", json=body)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["param"] == "seed"


async def test_streamed_choices_interleave_with_their_index_and_one_usage_chunk(
    gw: Gateway,
) -> None:
    stream = await gw.client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "one two three"}], n=3,
        stream=True, stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = [c async for c in stream]
    texts: dict[int, str] = defaultdict(str)
    finishes: dict[int, list[str]] = defaultdict(list)
    roles: dict[int, int] = defaultdict(int)
    for chunk in chunks[:-1]:
        assert chunk.usage is None and len(chunk.choices) == 1
        choice = chunk.choices[0]
        texts[choice.index] += choice.delta.content or ""
        roles[choice.index] += choice.delta.role == "assistant"
        if choice.finish_reason:
            finishes[choice.index].append(choice.finish_reason)
    assert dict(texts) == {0: "one two three", 1: "one two three", 2: "one two three"}
    assert dict(finishes) == {0: ["stop"], 1: ["stop"], 2: ["stop"]}
    assert dict(roles) == {0: 1, 1: 1, 2: 1}
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens == 9 and last.usage.prompt_tokens == 3
    [trace] = await gw.traces()
    assert trace["stream"] and trace["output_tokens"] == 9 and trace["input_tokens"] == 3
    assert trace["attributes"]["gen_ai.request.choice.count"] == 3


async def test_streamed_choices_without_usage_have_no_usage_chunk(gw: Gateway) -> None:
    stream = await gw.client.chat.completions.create(model="chat", messages=MSG, n=2, stream=True)
    chunks = [c async for c in stream]
    assert all(c.choices and c.usage is None for c in chunks)
    assert {c.choices[0].index for c in chunks} == {0, 1}


async def test_batched_completions_number_choices_per_prompt(gw: Gateway) -> None:
    resp = await gw.client.completions.create(model="chat", prompt=["one", "two words"], n=2)
    assert [c.index for c in resp.choices] == [0, 1, 2, 3]
    assert [c.text for c in resp.choices] == ["one", "one", "two words", "two words"]
    assert resp.usage is not None
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (3, 6)
    ids = (resp.model_extra or {})["trace_ids"]
    traces = await gw.traces(deployment="chat")
    assert sorted(t["id"] for t in traces) == sorted(ids) and len(ids) == 2
    assert sorted(t["output_tokens"] for t in traces) == [2, 4]


async def test_completion_choices_with_echo_and_logprobs(gw: Gateway) -> None:
    resp = await gw.client.completions.create(
        model="chat", prompt="say this", logprobs=1, echo=True, max_tokens=5, n=2
    )
    assert [c.text for c in resp.choices] == ["say thissay this"] * 2
    for choice in resp.choices:
        assert choice.logprobs is not None and choice.logprobs.tokens == [
            "say",
            " this",
            "say",
            " this",
        ]
    assert resp.usage is not None and resp.usage.completion_tokens == 4


async def test_completion_stream_of_choices(gw: Gateway) -> None:
    stream = await gw.client.completions.create(
        model="chat", prompt="a b", n=2, stream=True, stream_options={"include_usage": True}
    )
    chunks = [c async for c in stream]
    texts: dict[int, str] = defaultdict(str)
    for chunk in chunks[:-1]:
        texts[chunk.choices[0].index] += chunk.choices[0].text
    assert dict(texts) == {0: "a b", 1: "a b"}
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4


async def test_forced_tool_calls_in_every_choice(gw: Gateway) -> None:
    tool = {"type": "function", "function": {"name": "get_time", "parameters": {}}}
    resp = await gw.client.chat.completions.create(
        model="chat",
        messages=MSG,
        tools=[tool],
        tool_choice="required",
        n=2,  # type: ignore[list-item]
    )
    calls = [c.message.tool_calls for c in resp.choices]
    assert all(c is not None and c[0].function.name == "get_time" for c in calls)
    assert [c.finish_reason for c in resp.choices] == ["tool_calls"] * 2
    [trace] = await gw.traces()
    assert [c["name"] for c in trace["attributes"]["llmloop.tool_calls"]] == ["get_time"] * 2


async def test_a_cached_single_answer_is_never_served_for_n(gw: Gateway) -> None:
    await gw.deploy({"name": "c", "targets": [probe("c")], "cache": {"ttl_s": 60}})
    body = {"model": "c", "temperature": 0, "messages": MSG}
    first = await gw.http.post("/v1/chat/completions", json=body)
    assert len(first.json()["choices"]) == 1
    three = await gw.http.post("/v1/chat/completions", json={**body, "n": 3})
    assert [c["index"] for c in three.json()["choices"]] == [0, 1, 2]
    again = await gw.http.post("/v1/chat/completions", json=body)
    assert again.json()["choices"] == first.json()["choices"]
    assert gw_probe.CALLS["c"] == 1 + 3  # n=3 ran on the engine; the last one was a hit
    traces = sorted(await gw.traces(deployment="c"), key=lambda t: t["at"])
    assert [t["cache_hit"] for t in traces] == [False, False, True]


@pytest.mark.parametrize("stream", [False, True])
async def test_guards_judge_every_choice(gw: Gateway, stream: bool) -> None:
    redact = {"kind": "deny_list", "config": {"terms": ["secret"], "action": "redact",
                                              "check_input": False}}  # fmt: skip
    await gw.deploy({"name": "g", "targets": [probe("g")], "guards": [redact]})
    body = {"model": "g", "n": 3, "stream": stream,
            "messages": [{"role": "user", "content": "the secret word"}]}  # fmt: skip
    resp = await gw.http.post("/v1/chat/completions", json=body)
    assert resp.status_code == 200 and "secret" not in resp.text
    if stream:
        texts: dict[int, str] = defaultdict(str)
        for event in sse_events(resp.text):
            for choice in event["choices"]:
                texts[choice["index"]] += choice["delta"].get("content") or ""
        assert sorted(texts) == [0, 1, 2] and len(set(texts.values())) == 1
        assert "[REDACTED]" in texts[0]
    else:
        contents = [c["message"]["content"] for c in resp.json()["choices"]]
        assert len(contents) == 3 and all("[REDACTED]" in c for c in contents)
    [trace] = await gw.traces(deployment="g")
    redactions = [v for v in trace["guard_verdicts"] if v["action"] == "redact"]
    assert len(redactions) >= 3  # each choice judged


@pytest.mark.parametrize("stream", [False, True])
async def test_a_block_in_any_choice_fails_the_answer(gw: Gateway, stream: bool) -> None:
    block = {"kind": "deny_list", "config": {"terms": ["secret"], "check_input": False}}
    await gw.deploy({"name": "b", "targets": [probe("b")], "guards": [block]})
    body = {"model": "b", "n": 2, "stream": stream,
            "messages": [{"role": "user", "content": "the secret word"}]}  # fmt: skip
    resp = await gw.http.post("/v1/chat/completions", json=body)
    assert "secret" not in resp.text and "content_filter" in resp.text
    assert gw.container.gateway.manager.runtimes["b"].admission.in_flight == 0


async def test_one_limits_reservation_sized_for_every_choice(gw: Gateway) -> None:
    def client_for(limits: dict[str, Any]) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(api_key=gw.new_key("viewer", limits), base_url="http://gw/v1",
                                  max_retries=0, http_client=gw.client._client)  # fmt: skip

    per_minute = client_for({"rpm": 2})
    for _ in range(2):  # one request each, though three answers
        ok = await per_minute.chat.completions.create(model="chat", messages=MSG, n=3)
        assert len(ok.choices) == 3
    with pytest.raises(openai.RateLimitError):
        await per_minute.chat.completions.create(model="chat", messages=MSG, n=3)
    tokens = client_for({"tpm": 100})
    with pytest.raises(openai.APIStatusError) as err:  # 3 x 40 tokens cannot fit in 100
        await tokens.chat.completions.create(model="chat", messages=MSG, n=3, max_tokens=40)
    assert "tokens per minute" in err.value.message
    one = await tokens.chat.completions.create(model="chat", messages=MSG, max_tokens=40)
    assert len(one.choices) == 1


async def test_a_failing_choice_fails_the_request_and_gives_every_engine_back(
    gw: Gateway,
) -> None:
    await gw.deploy({"name": "bad", "targets": [probe("bad", fatal=True)]})
    for stream in (False, True):
        body = {"model": "bad", "messages": MSG, "n": 3, "stream": stream}
        resp = await gw.http.post("/v1/chat/completions", json=body)
        assert resp.status_code >= 500 and "error" in resp.json()
    runtime = gw.container.gateway.manager.runtimes["bad"]
    assert runtime.admission.in_flight == 0
    assert all(slot.pooled.in_flight == 0 for slot in runtime.slots())
    traces = await gw.traces(deployment="bad")
    assert len(traces) == 2 and {t["status"] for t in traces} == {"error"}


async def test_retried_choices_recover(gw: Gateway) -> None:
    await gw.deploy({"name": "flaky", "retry": {"max_retries": 2, "backoff_s": 0},
                     "targets": [probe("flaky", fail_first=2)]})  # fmt: skip
    resp = await gw.client.chat.completions.create(model="flaky", messages=MSG, n=3)
    assert [c.message.content for c in resp.choices] == ["hello there"] * 3


async def test_disconnect_cancels_every_choice(gw: Gateway) -> None:
    await gw.deploy({"name": "slow", "targets": [probe("slow", delay_s=0.05)]})
    words = " ".join(f"w{i}" for i in range(200))
    body = {"model": "slow", "stream": True, "n": 3,
            "messages": [{"role": "user", "content": words}]}  # fmt: skip
    await gw.raw_stream(body, chunks_before_leaving=6)  # 10 s if the choices ran to the end
    for _ in range(100):  # the cancels land as the tasks unwind
        if gw_probe.ACTIVE["slow"] == 0:
            break
        await asyncio.sleep(0.01)
    assert gw_probe.CANCELLED["slow"] == 3 and gw_probe.ACTIVE["slow"] == 0
    [trace] = await gw.traces(deployment="slow")
    assert trace["status"] == "cancelled"
    assert trace["input_tokens"] > 200 and trace["output_tokens"] >= 3  # estimated: no usage came
    runtime = gw.container.gateway.manager.runtimes["slow"]
    assert runtime.admission.in_flight == 0 and runtime.primaries[0].pooled.in_flight == 0


BAD_N: list[Any] = [0, -1, 129, 1.5, "2", True, [2], {}]


@pytest.mark.parametrize("n", BAD_N)
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
async def test_n_out_of_range_is_400_naming_n(gw: Gateway, n: Any, path: str) -> None:
    body: dict[str, Any] = {"model": "chat", "n": n}
    body.update({"messages": MSG} if "chat" in path else {"prompt": "x"})
    resp = await gw.http.post(path, json=body)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == "n" and error["type"] == "invalid_request_error"
    assert "1 to 128" in error["message"]


async def test_n_through_the_client_is_a_bad_request(gw: Gateway) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        await gw.client.chat.completions.create(model="chat", messages=MSG, n=200)
    assert err.value.status_code == 400 and err.value.body["param"] == "n"  # type: ignore[index]


async def test_batched_prompts_times_n_is_capped(gw: Gateway) -> None:
    body = {"model": "chat", "prompt": ["x"] * 17, "n": 128}
    resp = await gw.http.post("/v1/completions", json=body)
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == "n" and "2048 choices" in resp.text
    ok = await gw.http.post("/v1/completions", json={**body, "prompt": ["x"] * 2, "n": 3})
    assert ok.status_code == 200 and len(ok.json()["choices"]) == 6


async def test_null_n_is_one_choice(gw: Gateway) -> None:
    resp = await gw.http.post("/v1/chat/completions",
                              json={"model": "chat", "messages": MSG, "n": None})  # fmt: skip
    assert resp.status_code == 200 and len(resp.json()["choices"]) == 1
