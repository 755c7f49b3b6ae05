"""Tool calling and response formats on the wire: the official client and LangChain see OpenAI's
shapes (JSON and streamed deltas), an OpenAI-compatible upstream gets tools, tool turns and
response_format forwarded, guards judge call arguments, the cache keys on tools, and bad tool
specs or unsupported features are 400s naming the parameter."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from gw_harness import Gateway, echo

from llmloop.core.chat import EngineSpec
from llmloop.engines.echo import EchoEngine
from llmloop.testing.mock_upstream import MockUpstream

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]},
    },
}  # fmt: skip
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
ARGS = {"get_weather": {"city": "Paris"}, "get_time": {}}


def tool_echo(**options: Any) -> dict[str, Any]:
    return echo("", tool_arguments=ARGS, **options)


@pytest.fixture
async def upstream() -> AsyncIterator[MockUpstream]:
    engine = EchoEngine(EngineSpec(kind="echo", model="up", options={"tool_arguments": ARGS}))
    async with MockUpstream(engine) as mock:
        yield mock


def openai_target(mock: MockUpstream, **options: Any) -> dict[str, Any]:
    return {"engine": {"kind": "openai", "model": "up",
                       "options": {"base_url": mock.base_url, **options}}}  # fmt: skip


async def test_forced_tool_call_in_openai_shape(gw: Gateway) -> None:
    await gw.deploy({"name": "tools", "targets": [tool_echo()]})
    resp = await gw.client.chat.completions.create(
        model="tools", messages=[{"role": "user", "content": "weather please"}],
        tools=[WEATHER, TIME],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )  # fmt: skip
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls or []
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    [trace] = await gw.traces(deployment="tools")
    assert trace["finish_reason"] == "tool_calls"
    assert trace["attributes"]["llmloop.tool_calls"] == [
        {"id": call.id, "name": "get_weather", "arguments": call.function.arguments}
    ]


async def test_tool_result_turn_gets_the_final_answer(gw: Gateway) -> None:
    await gw.deploy({"name": "tools", "targets": [tool_echo()]})
    messages: list[Any] = [
        {"role": "user", "content": "what is the weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18 C and sunny"},
    ]  # fmt: skip
    resp = await gw.client.chat.completions.create(model="tools", messages=messages,
                                                   tools=[WEATHER])  # fmt: skip
    assert resp.choices[0].finish_reason == "stop"
    assert resp.choices[0].message.content == "18 C and sunny"
    assert not resp.choices[0].message.tool_calls


async def test_auto_answers_in_text_when_no_tool_is_named(gw: Gateway) -> None:
    await gw.deploy({"name": "tools", "targets": [tool_echo()]})
    resp = await gw.client.chat.completions.create(
        model="tools", messages=[{"role": "user", "content": "hello"}], tools=[WEATHER]
    )
    assert resp.choices[0].message.content == "hello" and resp.choices[0].finish_reason == "stop"
    none = await gw.client.chat.completions.create(
        model="tools", messages=[{"role": "user", "content": "get_weather"}], tools=[WEATHER],
        tool_choice="none",
    )  # fmt: skip
    assert none.choices[0].message.content == "get_weather"


async def test_streamed_tool_call_deltas(gw: Gateway) -> None:
    await gw.deploy({"name": "tools", "targets": [tool_echo()], "log_text": False})
    stream = await gw.client.chat.completions.create(
        model="tools", messages=[{"role": "user", "content": "use get_weather"}],
        tools=[WEATHER], stream=True, stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = [c async for c in stream]
    deltas = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or []]
    assert deltas[0].id and deltas[0].type == "function"
    assert deltas[0].function is not None and deltas[0].function.name == "get_weather"
    assert all(d.id is None and d.index == 0 for d in deltas[1:])
    args = "".join(d.function.arguments or "" for d in deltas if d.function)
    assert json.loads(args) == {"city": "Paris"}
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "tool_calls"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    [trace] = await gw.traces(deployment="tools")
    assert trace["finish_reason"] == "tool_calls"
    assert trace["attributes"]["llmloop.tool_calls"] == ["get_weather"]  # no text logged


@pytest.mark.parametrize("stream", [False, True])
async def test_upstream_gets_tools_and_tool_turns(
    gw: Gateway, upstream: MockUpstream, stream: bool
) -> None:
    await gw.deploy({"name": "up", "targets": [openai_target(upstream)]})
    messages: list[Any] = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "tool_calls": [{"id": "call_9", "type": "function",
         "function": {"name": "get_time", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_9", "content": "noon"},
        {"role": "user", "content": "and the weather?"},
    ]  # fmt: skip
    choice = {"type": "function", "function": {"name": "get_weather"}}
    if stream:
        chunks = await gw.client.chat.completions.create(
            model="up", messages=messages, tools=[WEATHER, TIME], tool_choice=choice,
            parallel_tool_calls=False, stream=True,
        )  # fmt: skip
        deltas = [d async for c in chunks for d in (c.choices[0].delta.tool_calls or [])]
        name = deltas[0].function.name if deltas[0].function else None
        args = "".join(d.function.arguments or "" for d in deltas if d.function)
    else:
        resp = await gw.client.chat.completions.create(
            model="up", messages=messages, tools=[WEATHER, TIME], tool_choice=choice,
            parallel_tool_calls=False,
        )  # fmt: skip
        [call] = resp.choices[0].message.tool_calls or []
        name, args = call.function.name, call.function.arguments
        assert resp.choices[0].finish_reason == "tool_calls"
    assert name == "get_weather" and json.loads(args) == {"city": "Paris"}
    sent = upstream.requests[-1]
    assert sent["tools"] == [WEATHER, TIME]
    assert sent["tool_choice"] == choice and sent["parallel_tool_calls"] is False
    assert sent["messages"][1] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_9", "type": "function", "function": {"name": "get_time",
                                                          "arguments": "{}"}}]}  # fmt: skip
    assert sent["messages"][2] == {"role": "tool", "content": "noon", "tool_call_id": "call_9"}
    [trace] = await gw.traces(deployment="up")
    assert trace["attributes"]["llmloop.tool_calls"][0]["name"] == "get_weather"


async def test_response_format_goes_upstream_and_is_refused_where_unsupported(
    gw: Gateway, upstream: MockUpstream
) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "answer", "strict": True,
           "schema": {"type": "object", "properties": {"a": {"type": "string"}}}}}  # fmt: skip
    await gw.deploy({"name": "up", "targets": [openai_target(upstream)]})
    await gw.client.chat.completions.create(
        model="up",
        messages=[{"role": "user", "content": "x"}],
        response_format=fmt,  # type: ignore[arg-type]
    )
    assert upstream.requests[-1]["response_format"] == fmt
    body = {"model": "chat", "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_object"}}  # fmt: skip
    refused = await gw.http.post("/v1/chat/completions", json=body)
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "response_format"
    assert "does not support response_format" in refused.json()["error"]["message"]
    text = await gw.http.post("/v1/chat/completions", json={
        **body, "response_format": {"type": "text"}})  # fmt: skip
    assert text.status_code == 200


async def test_engine_without_tools_refuses_them(gw: Gateway, upstream: MockUpstream) -> None:
    await gw.deploy({"name": "plain", "targets": [openai_target(upstream, tools=False)]})
    body = {"model": "plain", "messages": [{"role": "user", "content": "x"}], "tools": [WEATHER]}
    for stream in (False, True):
        resp = await gw.http.post("/v1/chat/completions", json={**body, "stream": stream})
        assert resp.status_code == 400, resp.text
        assert resp.json()["error"]["param"] == "tools"
    calls = len(upstream.requests)
    ok = await gw.http.post("/v1/chat/completions", json={**body, "tool_choice": "none"})
    assert ok.status_code == 200 and len(upstream.requests) == calls + 1


@pytest.mark.parametrize("action", ["block", "redact"])
@pytest.mark.parametrize("stream", [False, True])
async def test_guards_judge_tool_arguments(gw: Gateway, action: str, stream: bool) -> None:
    guard = {"kind": "deny_list", "config": {"terms": ["Paris"], "action": action,
                                             "check_input": False}}  # fmt: skip
    await gw.deploy({"name": "g", "targets": [tool_echo()], "guards": [guard]})
    body = {"model": "g", "messages": [{"role": "user", "content": "x"}], "tools": [WEATHER],
            "tool_choice": "required", "stream": stream}  # fmt: skip
    resp = await gw.http.post("/v1/chat/completions", json=body)
    if action == "block":
        assert "Paris" not in resp.text
        assert "content_filter" in resp.text
        return
    assert resp.status_code == 200
    if stream:
        events = [json.loads(line[6:]) for line in resp.text.splitlines()
                  if line.startswith("data: {")]  # fmt: skip
        calls = [d for e in events for d in e["choices"][0]["delta"].get("tool_calls", [])]
        args = "".join(d["function"]["arguments"] for d in calls)
    else:
        args = resp.json()["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
    assert json.loads(args) == {"city": "[REDACTED]"}


async def test_cache_keys_on_tools(gw: Gateway) -> None:
    await gw.deploy({"name": "c", "targets": [tool_echo()], "cache": {"ttl_s": 60}})
    base = {"model": "c", "temperature": 0, "messages": [{"role": "user", "content": "q"}]}
    with_weather = {**base, "tools": [WEATHER], "tool_choice": "required"}
    with_time = {**base, "tools": [TIME], "tool_choice": "required"}
    answers = []
    for body in (with_weather, with_time, with_weather, base):
        resp = await gw.http.post("/v1/chat/completions", json=body)
        answers.append(resp.json()["choices"][0]["message"])
    assert answers[0]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert answers[1]["tool_calls"][0]["function"]["name"] == "get_time"
    assert answers[2] == answers[0]  # a hit: the same call id too
    assert answers[3] == {"role": "assistant", "content": "q"}
    hits = [t["cache_hit"] for t in await gw.traces(deployment="c")]
    assert sorted(hits) == [False, False, False, True]


BAD: list[tuple[dict[str, Any], str]] = [
    ({"tools": {}}, "tools"),
    ({"tools": []}, "tools"),
    ({"tools": [{"type": "function"}]}, "tools.[0]"),
    ({"tools": [{"type": "retrieval", "function": {"name": "x"}}]}, "tools.[0]"),
    ({"tools": [{"type": "function", "function": {"name": "bad name"}}]},
     "tools.[0].function.name"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": []}}]},
     "tools.[0].function.parameters"),
    ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
     "tool_choice"),
    ({"tool_choice": "auto"}, "tool_choice"),
    ({"tools": [WEATHER], "parallel_tool_calls": "yes"}, "parallel_tool_calls"),
    ({"functions": [WEATHER["function"]]}, "functions"),
    ({"response_format": {"type": "xml"}}, "response_format"),
    ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": 1}}},
     "response_format.json_schema.schema"),
    ({"messages": [{"role": "tool", "content": "r"}]}, "messages.[0].tool_call_id"),
    ({"messages": [{"role": "assistant", "tool_calls": {}}]}, "messages.[0].tool_calls"),
    ({"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "function": {}}]}]},
     "messages.[0].tool_calls.[0]"),
    ({"messages": [{"role": "assistant", "tool_calls": [
        {"id": "c", "function": {"name": "f", "arguments": {"a": 1}}}]}]},
     "messages.[0].tool_calls.[0].function.arguments"),
    ({"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f"}}]}]},
     "messages.[0].tool_calls.[0].id"),
]  # fmt: skip


@pytest.mark.parametrize(("extra", "param"), BAD)
async def test_bad_tool_requests_are_400(gw: Gateway, extra: dict[str, Any], param: str) -> None:
    body = {"model": "chat", "messages": [{"role": "user", "content": "x"}], **extra}
    resp = await gw.http.post("/v1/chat/completions", json=body)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param


async def test_langchain_binds_tools_and_runs_the_loop(gw: Gateway) -> None:
    langchain_openai = pytest.importorskip("langchain_openai")
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool

    @tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"18 C in {city}"

    await gw.deploy({"name": "tools", "targets": [tool_echo()]})
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=gw.app), timeout=30)
    llm = langchain_openai.ChatOpenAI(model="tools", base_url="http://gw/v1", api_key=gw.key,
                                      http_async_client=http, max_retries=0)  # fmt: skip
    bound = llm.bind_tools([get_weather], tool_choice="get_weather")
    history: list[Any] = [HumanMessage("How warm is it in Paris?")]
    ai = await bound.ainvoke(history)
    assert ai.tool_calls and ai.tool_calls[0]["name"] == "get_weather"
    assert ai.tool_calls[0]["args"] == {"city": "Paris"}
    streamed = None
    async for part in bound.astream(history):
        streamed = part if streamed is None else streamed + part
    assert streamed is not None and streamed.tool_calls[0]["args"] == {"city": "Paris"}
    result = get_weather.invoke(ai.tool_calls[0]["args"])
    history += [ai, ToolMessage(result, tool_call_id=ai.tool_calls[0]["id"])]
    final = await llm.bind_tools([get_weather]).ainvoke(history)
    assert final.content == "18 C in Paris" and not final.tool_calls
    await http.aclose()
