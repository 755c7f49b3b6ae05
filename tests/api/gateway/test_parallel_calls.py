"""``parallel_tool_calls: false`` under ``tool_choice`` "auto" holds any engine to one call: a
probe engine that calls every tool it is given (as a local model left to "auto" may) answers
with its first call only, whole or streamed, through the official client; with parallel calls
allowed every call comes back; an upstream that honours the field is left as it answers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from gw_harness import Gateway, probe

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {}}}
MSG: Any = [{"role": "user", "content": "weather and time please"}]


async def deploy(gw: Gateway, **options: Any) -> None:
    await gw.deploy({"name": "many", "targets": [probe("many", every_tool=True, **options)]})


async def ask(gw: Gateway, **fields: Any) -> Any:
    return await gw.client.chat.completions.create(
        model="many",
        messages=MSG,
        tools=[WEATHER, TIME],
        **fields,  # type: ignore[list-item]
    )


async def streamed(gw: Gateway, **fields: Any) -> tuple[dict[int, list[Any]], list[Any], str]:
    """(tool-call deltas by call index, finish reasons, content) of a streamed answer."""
    stream = await ask(gw, stream=True, **fields)
    deltas: dict[int, list[Any]] = {}
    finishes, content = [], ""
    async for chunk in stream:
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or []:
                deltas.setdefault(delta.index, []).append(delta)
            content += choice.delta.content or ""
            if choice.finish_reason:
                finishes.append(choice.finish_reason)
    return deltas, finishes, content


@pytest.mark.parametrize("choice", ["auto", None])
async def test_without_parallel_calls_only_the_first_comes_back(
    gw: Gateway, choice: str | None
) -> None:
    await deploy(gw)
    extra = {} if choice is None else {"tool_choice": choice}
    resp = await ask(gw, parallel_tool_calls=False, **extra)
    [call] = resp.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather"
    assert resp.choices[0].finish_reason == "tool_calls"
    [trace] = await gw.traces(deployment="many")
    assert [c["name"] for c in trace["attributes"]["llmloop.tool_calls"]] == ["get_weather"]


async def test_with_parallel_calls_every_call_comes_back(gw: Gateway) -> None:
    await deploy(gw)
    for fields in ({}, {"parallel_tool_calls": True}):
        resp = await ask(gw, **fields)
        names = [c.function.name for c in resp.choices[0].message.tool_calls or []]
        assert names == ["get_weather", "get_time"]


async def test_a_stream_stops_at_the_second_call(gw: Gateway) -> None:
    await deploy(gw, after="and more text")
    deltas, finishes, content = await streamed(gw, parallel_tool_calls=False)
    assert list(deltas) == [0]
    assert deltas[0][0].function.name == "get_weather" and deltas[0][0].id
    assert "".join(d.function.arguments for d in deltas[0]) == "{}"
    assert finishes == ["tool_calls"] and content == ""
    [trace] = await gw.traces(deployment="many")
    assert [c["name"] for c in trace["attributes"]["llmloop.tool_calls"]] == ["get_weather"]
    assert trace["output_tokens"] == 9  # every generated token still counts
    deltas, finishes, content = await streamed(gw)
    assert list(deltas) == [0, 1] and content == "and more text"


async def test_a_cut_answer_ended_at_its_first_call(gw: Gateway) -> None:
    # The engine ran into max_tokens after its calls; what the client gets ended at the first.
    await deploy(gw, finish="length")
    resp = await ask(gw, parallel_tool_calls=False)
    assert resp.choices[0].finish_reason == "tool_calls"
    assert len(resp.choices[0].message.tool_calls or []) == 1
    _, finishes, _ = await streamed(gw, parallel_tool_calls=False)
    assert finishes == ["tool_calls"]
    allowed = await ask(gw)
    assert allowed.choices[0].finish_reason == "length"


async def test_every_choice_holds_to_one_call(gw: Gateway) -> None:
    await deploy(gw)
    resp = await ask(gw, parallel_tool_calls=False, n=2)
    assert [len(c.message.tool_calls or []) for c in resp.choices] == [1, 1]


async def test_tool_choice_none_and_plain_answers_are_untouched(gw: Gateway) -> None:
    await deploy(gw)
    resp = await ask(gw, parallel_tool_calls=False, tool_choice="none")
    assert resp.choices[0].message.tool_calls is None
    assert resp.choices[0].message.content == "weather and time please"


async def test_the_field_goes_to_an_upstream_as_sent(gw: Gateway) -> None:
    from llmloop.core.chat import EngineSpec
    from llmloop.engines.echo import EchoEngine
    from llmloop.testing.mock_upstream import MockUpstream

    engine = EchoEngine(EngineSpec(kind="echo", model="up"))
    async with MockUpstream(engine) as mock:
        target = {"engine": {"kind": "openai", "model": "up",
                             "options": {"base_url": mock.base_url}}}  # fmt: skip
        await gw.deploy({"name": "up", "targets": [target]})
        body = {"model": "up", "messages": MSG, "tools": [WEATHER], "tool_choice": "required",
                "parallel_tool_calls": False}  # fmt: skip
        resp = await gw.http.post("/v1/chat/completions", json=body)
        assert resp.status_code == 200
        [call] = resp.json()["choices"][0]["message"]["tool_calls"]
        assert call["function"]["name"] == "get_weather"
        assert json.loads(call["function"]["arguments"]) == {}
        assert mock.requests[-1]["parallel_tool_calls"] is False
