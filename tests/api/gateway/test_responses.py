"""The OpenAI Responses API (``/v1/responses``) on the wire: the official client's
``responses.create``/``stream``/``retrieve``/``delete`` and LangChain's ``use_responses_api`` see
OpenAI's shapes; a request reaches the engine as the chat turns it means (instructions, input
items, function calls and their outputs, stored history); answers are traced and limited as chat
answers are; and bad requests are 400s or 404s naming the parameter."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import gw_probe
import httpx
import openai
import pytest
from gw_harness import Gateway, echo, probe

from llmloop.core.chat import EngineSpec
from llmloop.engines.echo import EchoEngine
from llmloop.testing.mock_upstream import MockUpstream

ARGS = {"get_weather": {"city": "Paris"}}
WEATHER = {"type": "function", "name": "get_weather", "description": "The weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                          "required": ["city"]}}  # fmt: skip


def turns(model: str, call: int = -1) -> list[tuple[str, str]]:
    """(role, content) of the messages the probe engine ``model`` was sent, by call."""
    req = gw_probe.SEEN[model][call]
    return [(m.role, m.content) for m in req.messages or []]


async def test_text_answer_in_openai_shape(gw: Gateway) -> None:
    resp = await gw.client.responses.create(model="chat", input="Hello there")
    assert resp.object == "response" and resp.id.startswith("resp_")
    assert resp.status == "completed" and resp.error is None
    assert resp.output_text == "Hello there"
    [item] = resp.output
    assert item.type == "message" and item.role == "assistant" and item.status == "completed"
    assert item.content[0].type == "output_text" and item.content[0].annotations == []
    assert resp.usage is not None
    assert resp.usage.output_tokens == 2
    assert resp.usage.total_tokens == resp.usage.input_tokens + resp.usage.output_tokens
    assert resp.model == "chat" and resp.tools == [] and resp.tool_choice == "auto"
    assert resp.parallel_tool_calls is True
    [trace] = await gw.traces()
    assert resp.id == f"resp_{trace['id']}"
    assert trace["operation"] == "chat" and trace["status"] == "ok"
    assert trace["output_tokens"] == 2


async def test_input_items_reach_the_engine_as_chat_turns(gw: Gateway) -> None:
    await gw.deploy({"name": "p", "targets": [probe("p")]})
    resp = await gw.client.responses.create(
        model="p", instructions="Be brief.", temperature=0.5, top_p=0.9, max_output_tokens=40,
        input=[
            {"role": "developer", "content": "Answer in French."},
            {"role": "user", "content": [{"type": "input_text", "text": "Bon"},
                                         {"type": "input_text", "text": "jour"}]},
            {"type": "message", "role": "assistant",
             "content": [{"type": "output_text", "text": "Salut", "annotations": []}]},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"role": "user", "content": "Encore"},
        ],
    )  # fmt: skip
    assert resp.output_text == "Encore"
    assert turns("p") == [
        ("system", "Be brief."),
        ("developer", "Answer in French."),
        ("user", "Bonjour"),
        ("assistant", "Salut"),
        ("user", "Encore"),
    ]
    sampling = gw_probe.SEEN["p"][-1].sampling
    assert (sampling.temperature, sampling.top_p, sampling.max_tokens) == (0.5, 0.9, 40)
    assert resp.instructions == "Be brief." and resp.max_output_tokens == 40


async def test_previous_response_id_continues_without_instructions(gw: Gateway) -> None:
    await gw.deploy({"name": "p", "targets": [probe("p")]})
    first = await gw.client.responses.create(model="p", input="one", instructions="Rules.")
    second = await gw.client.responses.create(model="p", input="two",
                                              previous_response_id=first.id)  # fmt: skip
    assert second.previous_response_id == first.id
    assert turns("p") == [("user", "one"), ("assistant", "one"), ("user", "two")]
    await gw.client.responses.create(model="p", input="three", previous_response_id=second.id,
                                     instructions="New rules.")  # fmt: skip
    assert turns("p") == [("system", "New rules."), ("user", "one"), ("assistant", "one"),
                          ("user", "two"), ("assistant", "two"), ("user", "three")]  # fmt: skip


async def test_retrieve_delete_and_store_false(gw: Gateway) -> None:
    resp = await gw.client.responses.create(model="chat", input="keep me",
                                            metadata={"ticket": "42"})  # fmt: skip
    got = await gw.client.responses.retrieve(resp.id)
    assert got.model_dump() == resp.model_dump() and got.metadata == {"ticket": "42"}
    await gw.client.responses.delete(resp.id)
    with pytest.raises(openai.NotFoundError):
        await gw.client.responses.retrieve(resp.id)
    with pytest.raises(openai.NotFoundError) as err:
        await gw.client.responses.create(model="chat", input="x", previous_response_id=resp.id)
    assert err.value.body["param"] == "previous_response_id"  # type: ignore[index]
    unstored = await gw.client.responses.create(model="chat", input="forget me", store=False)
    assert unstored.output_text == "forget me"
    with pytest.raises(openai.NotFoundError):
        await gw.client.responses.retrieve(unstored.id)


async def test_another_key_cannot_see_or_continue_a_response(gw: Gateway) -> None:
    resp = await gw.client.responses.create(model="chat", input="mine")
    other = gw.client.with_options(api_key=gw.new_key("editor"))
    with pytest.raises(openai.NotFoundError):
        await other.responses.retrieve(resp.id)
    with pytest.raises(openai.NotFoundError):
        await other.responses.create(model="chat", input="x", previous_response_id=resp.id)
    with pytest.raises(openai.NotFoundError):
        await other.responses.delete(resp.id)
    assert (await gw.client.responses.retrieve(resp.id)).id == resp.id


async def test_the_store_forgets_the_least_recently_used(gw: Gateway) -> None:
    store = gw.container.gateway.responses
    store.max_items = 2
    a = await gw.client.responses.create(model="chat", input="a")
    b = await gw.client.responses.create(model="chat", input="b")
    await gw.client.responses.retrieve(a.id)  # a is now the most recently used
    await gw.client.responses.create(model="chat", input="c")
    assert len(store) == 2
    await gw.client.responses.retrieve(a.id)
    with pytest.raises(openai.NotFoundError):
        await gw.client.responses.retrieve(b.id)


async def test_stream_events_in_order_and_final_response(gw: Gateway) -> None:
    stream = await gw.client.responses.create(model="chat", input="stream me please", stream=True)
    events = [event async for event in stream]
    kinds = [e.type for e in events]
    assert kinds == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.content_part.added", *["response.output_text.delta"] * 3,
                     "response.output_text.done", "response.content_part.done",
                     "response.output_item.done", "response.completed"]  # fmt: skip
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    final = events[-1].response  # type: ignore[union-attr]
    assert deltas == final.output_text == "stream me please"
    assert final.status == "completed" and final.usage is not None
    assert final.usage.output_tokens == 3
    assert events[0].response.status == "in_progress"  # type: ignore[union-attr]
    [trace] = await gw.traces()
    assert trace["stream"] and trace["ttft_ms"] is not None
    assert (await gw.client.responses.retrieve(final.id)).output_text == "stream me please"


async def test_stream_helper_rebuilds_the_response(gw: Gateway) -> None:
    async with gw.client.responses.stream(model="chat", input="helper stream") as stream:
        text = [e.delta async for e in stream if e.type == "response.output_text.delta"]
        final = await stream.get_final_response()
    assert "".join(text) == final.output_text == "helper stream"


async def test_raw_stream_names_each_event_and_sends_no_done(gw: Gateway) -> None:
    async with gw.http.stream(
        "POST", "/v1/responses", json={"model": "chat", "input": "hi", "stream": True}
    ) as resp:
        body = (await resp.aread()).decode()
    assert resp.headers["content-type"].startswith("text/event-stream")
    assert resp.headers["x-llmloop-trace-id"]
    blocks = [b for b in body.split("\n\n") if b]
    assert "[DONE]" not in body
    for block in blocks:
        event, data = block.split("\n")
        assert event.removeprefix("event: ") == json.loads(data.removeprefix("data: "))["type"]


async def test_function_calls_round_trip(gw: Gateway) -> None:
    await gw.deploy({"name": "tools", "targets": [echo("", tool_arguments=ARGS)]})
    resp = await gw.client.responses.create(
        model="tools", input="weather?", tools=[WEATHER],
        tool_choice={"type": "function", "name": "get_weather"})  # fmt: skip
    [call] = resp.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris"} and call.call_id.startswith("call_")
    assert resp.tools[0].name == "get_weather"  # type: ignore[union-attr]
    answer = await gw.client.responses.create(
        model="tools",
        previous_response_id=resp.id,
        tools=[WEATHER],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
    )
    assert answer.output_text == "sunny"


async def test_function_call_history_sent_in_full(gw: Gateway) -> None:
    await gw.deploy({"name": "p", "targets": [probe("p")]})
    await gw.client.responses.create(model="p", tools=[WEATHER], input=[
        {"role": "user", "content": "weather?"},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather",
         "arguments": '{"city": "Oslo"}'},
        {"type": "function_call", "call_id": "call_2", "name": "get_weather",
         "arguments": '{"city": "Rome"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "snow"},
        {"type": "function_call_output", "call_id": "call_2",
         "output": [{"type": "input_text", "text": "sun"}]},
    ])  # fmt: skip
    req = gw_probe.SEEN["p"][-1]
    assert req.messages is not None
    _, assistant, tool1, tool2 = req.messages
    assert [c.id for c in assistant.tool_calls or []] == ["call_1", "call_2"]
    assert (tool1.role, tool1.tool_call_id, tool1.content) == ("tool", "call_1", "snow")
    assert (tool2.tool_call_id, tool2.content) == ("call_2", "sun")
    assert req.tools == [{"type": "function", "function": {
        k: WEATHER[k] for k in ("name", "description", "parameters")}}]  # fmt: skip


async def test_streamed_function_calls(gw: Gateway) -> None:
    await gw.deploy({"name": "p", "targets": [probe("p", every_tool=True, after="done")]})
    time_tool = {"type": "function", "name": "get_time", "parameters": {"type": "object"}}
    async with gw.client.responses.stream(model="p", input="go", tools=[WEATHER, time_tool]) as s:
        kinds = [e.type async for e in s]
        final = await s.get_final_response()
    assert [o.type for o in final.output] == ["function_call", "function_call", "message"]
    assert [o.name for o in final.output[:2]] == ["get_weather", "get_time"]  # type: ignore[union-attr]
    assert final.output_text == "done"
    assert kinds.count("response.function_call_arguments.done") == 2
    assert kinds.count("response.output_item.done") == 3 and kinds[-1] == "response.completed"


async def test_cut_answers_are_incomplete(gw: Gateway) -> None:
    resp = await gw.client.responses.create(model="chat", input="one two three four",
                                            max_output_tokens=2)  # fmt: skip
    assert resp.status == "incomplete"
    assert resp.incomplete_details is not None
    assert resp.incomplete_details.reason == "max_output_tokens"
    assert resp.output_text == "one two"
    stream = await gw.client.responses.create(model="chat", input="one two three four",
                                              max_output_tokens=2, stream=True)  # fmt: skip
    events = [e async for e in stream]
    assert events[-1].type == "response.incomplete"


@pytest.fixture
async def upstream() -> AsyncIterator[MockUpstream]:
    engine = EchoEngine(EngineSpec(kind="echo", model="up", options={"tool_arguments": ARGS}))
    async with MockUpstream(engine) as mock:
        yield mock


async def test_text_format_goes_to_an_upstream_as_response_format(
    gw: Gateway, upstream: MockUpstream
) -> None:
    await gw.deploy(
        {
            "name": "up",
            "targets": [
                {
                    "engine": {
                        "kind": "openai",
                        "model": "up",
                        "options": {"base_url": upstream.base_url},
                    }
                }
            ],
        }
    )
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    resp = await gw.client.responses.create(model="up", input="Paris", text={"format": {
        "type": "json_schema", "name": "city", "schema": schema, "strict": True}})  # fmt: skip
    assert resp.output_text == "Paris"
    sent = upstream.requests[-1]
    assert sent["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "city", "schema": schema, "strict": True}}  # fmt: skip
    assert sent["messages"] == [{"role": "user", "content": "Paris"}]
    assert resp.text is not None and resp.text.format is not None
    assert resp.text.format.type == "json_schema"


async def test_limits_and_auth_apply(gw: Gateway) -> None:
    anonymous = gw.client.with_options(api_key="llk_wrong")
    with pytest.raises(openai.AuthenticationError):
        await anonymous.responses.create(model="chat", input="hi")
    limited = gw.client.with_options(api_key=gw.new_key("editor", {"rpm": 1}))
    await limited.responses.create(model="chat", input="hi")
    with pytest.raises(openai.RateLimitError):
        await limited.responses.create(model="chat", input="hi")
    with pytest.raises(openai.NotFoundError):
        await gw.client.responses.create(model="nope", input="hi")


BAD = [
    ({"input": "x"}, "model"),
    ({"model": "chat"}, "input"),
    ({"model": "chat", "input": []}, "input"),
    ({"model": "chat", "input": 5}, "input"),
    ({"model": "chat", "input": ["x"]}, "input[0]"),
    ({"model": "chat", "input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
    ({"model": "chat", "input": [{"role": "user", "content": 3}]}, "input[0].content"),
    ({"model": "chat", "input": [{"role": "user", "content": [{"type": "input_image",
                                                                "file_id": "f"}]}]},
     "input[0].content[0]"),
    ({"model": "chat", "input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
    ({"model": "chat", "input": [{"type": "web_search_call"}]}, "input[0].type"),
    ({"model": "chat", "input": [{"type": "function_call_output", "output": "x"}]},
     "input[0].call_id"),
    ({"model": "chat", "input": [{"type": "function_call", "call_id": "c", "name": "f",
                                  "arguments": {}}]}, "input[0].arguments"),
    ({"model": "chat", "input": [{"type": "reasoning", "summary": []}]}, "input"),
    ({"model": "chat", "input": "x", "tools": [{"type": "web_search"}]}, "tools[0]"),
    ({"model": "chat", "input": "x", "tools": [{"type": "function", "name": "a b"}]},
     "tools[0].name"),
    ({"model": "chat", "input": "x", "tool_choice": "required"}, "tool_choice"),
    ({"model": "chat", "input": "x", "tools": [WEATHER],
      "tool_choice": {"type": "function", "name": "other"}}, "tool_choice"),
    ({"model": "chat", "input": "x", "text": {"format": {"type": "yaml"}}}, "text.format"),
    ({"model": "chat", "input": "x", "text": {"format": {"type": "json_schema"}}},
     "text.format"),
    ({"model": "chat", "input": "x", "max_output_tokens": 0}, "max_output_tokens"),
    ({"model": "chat", "input": "x", "temperature": 3}, "temperature"),
    ({"model": "chat", "input": "x", "top_logprobs": 21}, "top_logprobs"),
    ({"model": "chat", "input": "x", "metadata": {"a": 1}}, "metadata"),
    ({"model": "chat", "input": "x", "stream": "yes"}, "stream"),
    ({"model": "chat", "input": "x", "background": True}, "background"),
    ({"model": "chat", "input": "x", "conversation": "conv_1"}, "conversation"),
    ({"model": "chat", "input": "x", "previous_response_id": 7}, "previous_response_id"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "param"), BAD)
async def test_bad_requests_name_the_parameter(
    gw: Gateway, body: dict[str, Any], param: str
) -> None:
    resp = await gw.http.post("/v1/responses", json=body)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert error["message"]


async def test_malformed_bodies(gw: Gateway) -> None:
    for raw in (b"{", b"[]", b""):
        resp = await gw.http.post("/v1/responses", content=raw,
                                  headers={"content-type": "application/json"})  # fmt: skip
        assert resp.status_code == 400 and resp.json()["error"]["code"] == "bad_request"
    missing = await gw.http.get("/v1/responses/resp_nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


async def test_logprobs_when_included(gw: Gateway) -> None:
    resp = await gw.client.responses.create(model="chat", input="a b", top_logprobs=2,
                                            include=["message.output_text.logprobs"])  # fmt: skip
    part = resp.output[0].content[0]  # type: ignore[union-attr]
    assert [lp.token for lp in part.logprobs] == ["a", " b"]
    assert all(len(lp.top_logprobs) <= 2 for lp in part.logprobs)
    plain = await gw.client.responses.create(model="chat", input="a b")
    assert plain.output[0].content[0].logprobs is None  # type: ignore[union-attr]


async def test_langchain_responses_api(gw: Gateway) -> None:
    langchain_openai = pytest.importorskip("langchain_openai")
    from langchain_core.tools import tool as as_tool

    llm = langchain_openai.ChatOpenAI(
        model="chat", base_url="http://gw/v1", api_key=gw.key, use_responses_api=True,
        max_retries=0, http_async_client=httpx.AsyncClient(
            transport=httpx.ASGITransport(app=gw.app)))  # fmt: skip
    message = await llm.ainvoke("hello langchain")
    assert message.text == "hello langchain"
    assert message.usage_metadata is not None and message.usage_metadata["output_tokens"] == 2
    chunks = [c async for c in llm.astream("stream langchain")]
    assert "".join(c.text for c in chunks) == "stream langchain"
    await gw.deploy({"name": "tools", "targets": [echo("", tool_arguments=ARGS)]})

    @as_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return "sunny"

    tools_llm = llm.model_copy(update={"model_name": "tools"})
    called = await tools_llm.bind_tools([get_weather], tool_choice="get_weather").ainvoke("?")
    assert called.tool_calls[0]["name"] == "get_weather"
    assert called.tool_calls[0]["args"] == {"city": "Paris"}


def _prompt(gw: Gateway, template: str, params: dict[str, Any] | None = None) -> str:
    from llmloop.core.prompts import PromptVersionCreate
    from llmloop.services.actors import local_actor

    version = gw.container.prompts.create_version(
        "support", PromptVersionCreate(template=template, params=params or {}), local_actor()
    )
    return version.id  # fmt: skip


async def test_registry_prompt_by_label_renders_and_is_traced(gw: Gateway) -> None:
    from llmloop.services.actors import local_actor

    await gw.deploy({"name": "p", "targets": [probe("p")]})
    first = _prompt(gw, "Answer {{ product }} questions.", {"temperature": 0.2, "max_tokens": 7})
    _prompt(gw, "Version two for {{ product }}.")
    gw.container.prompts.set_label("support", "production", 1, local_actor())
    resp = await gw.client.responses.create(
        model="p",
        input="hi",
        prompt={
            "id": "support",
            "variables": {"product": {"type": "input_text", "text": "llmloop"}},
        },
    )
    assert turns("p") == [("system", "Answer llmloop questions."), ("user", "hi")]
    sampling = gw_probe.SEEN["p"][-1].sampling
    assert (sampling.temperature, sampling.max_tokens) == (0.2, 7)
    assert resp.prompt is not None and resp.prompt.version == "1"
    [trace] = await gw.traces()
    assert trace["attributes"]["llmloop.prompt_version_id"] == first
    assert trace["attributes"]["llmloop.prompt"] == "support@1"
    await gw.client.responses.create(model="p", input="hi", temperature=0.9, prompt={
        "id": "support", "version": "2", "variables": {"product": "x"}})  # fmt: skip
    assert turns("p")[0] == ("system", "Version two for x.")
    assert gw_probe.SEEN["p"][-1].sampling.temperature == 0.9  # the request's own wins
    since = datetime.now(UTC) - timedelta(hours=1)
    report = gw.container.monitoring.summary(since=since, group_by=["prompt_version"])
    assert {row.prompt_version: row.requests for row in report}[first] == 1


async def test_registry_prompt_errors(gw: Gateway) -> None:
    _prompt(gw, "Hello {{ name }}")
    for prompt, status, param in [
        ({"id": "missing"}, 404, "prompt"),
        ({"id": "support", "version": "9"}, 404, "prompt"),
        ({"id": "support", "version": "staging"}, 404, "prompt"),
        ({"id": "support", "version": "1"}, 400, "prompt.variables"),
        ({"id": "support", "version": 1, "variables": {"name": 3}}, 400, "prompt.variables.name"),
        ({"version": "1"}, 400, "prompt.id"),
    ]:
        resp = await gw.http.post("/v1/responses", json={"model": "chat", "prompt": prompt})
        assert resp.status_code == status, (prompt, resp.text)
        assert resp.json()["error"]["param"] == param


async def test_guards_judge_responses_whole_and_streamed(gw: Gateway) -> None:
    deny = {"kind": "deny_list", "config": {"terms": ["secret"]}}
    await gw.deploy({"name": "guarded", "targets": [echo()], "guards": [deny]})
    blocked = await gw.http.post("/v1/responses", json={"model": "guarded", "input": "secret?"})
    assert blocked.status_code == 400 and blocked.json()["error"]["code"] == "content_filter"
    out_only = {"kind": "deny_list", "config": {"terms": ["secret"], "check_input": False}}
    await gw.deploy({"name": "outg", "targets": [echo("the secret is ")], "guards": [out_only]})
    whole = await gw.http.post("/v1/responses", json={"model": "outg", "input": "x"})
    assert whole.status_code == 400 and whole.json()["error"]["code"] == "content_filter"
    stream = await gw.client.responses.create(model="outg", input="x", stream=True)
    events = [e async for e in stream]
    assert [e.type for e in events][-2:] == ["error", "response.failed"]
    released = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert "secret" not in released
    failed = events[-1].response  # type: ignore[union-attr]
    assert failed.status == "failed" and failed.error is not None
    with pytest.raises(openai.NotFoundError):  # a failed answer is not kept
        await gw.client.responses.retrieve(failed.id)
    traces = await gw.traces(deployment="outg")
    assert {t["status"] for t in traces} == {"error"}


async def test_input_items_of_a_kept_response(gw: Gateway) -> None:
    first = await gw.client.responses.create(model="chat", input="earlier")
    resp = await gw.client.responses.create(model="chat", previous_response_id=first.id, input=[
        {"role": "user", "content": "weather?"},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
    ])  # fmt: skip
    page = await gw.client.responses.input_items.list(resp.id, order="asc")
    assert [i.type for i in page.data] == ["message", "function_call", "function_call_output"]
    assert page.data[0].content[0].text == "weather?"  # type: ignore[union-attr]
    assert page.data[2].output == "sunny"  # type: ignore[union-attr]
    newest = await gw.http.get(f"/v1/responses/{resp.id}/input_items", params={"limit": 1})
    body = newest.json()
    assert [i["type"] for i in body["data"]] == ["function_call_output"] and body["has_more"]
    rest = await gw.http.get(f"/v1/responses/{resp.id}/input_items",
                             params={"after": body["last_id"]})  # fmt: skip
    assert [i["type"] for i in rest.json()["data"]] == ["function_call", "message"]
    for params, status in (({"limit": 0}, 422), ({"order": "up"}, 422), ({"after": "x"}, 404)):
        bad = await gw.http.get(f"/v1/responses/{resp.id}/input_items", params=params)
        assert bad.status_code == status and "error" in bad.json()


async def test_streamed_logprobs_when_included(gw: Gateway) -> None:
    include: Any = ["message.output_text.logprobs"]
    async with gw.client.responses.stream(model="chat", input="a b", include=include) as stream:
        deltas = [e async for e in stream if e.type == "response.output_text.delta"]
        final = await stream.get_final_response()
    assert [lp.token for d in deltas for lp in d.logprobs] == ["a", " b"]
    part = final.output[0].content[0]  # type: ignore[union-attr]
    assert [lp.token for lp in part.logprobs or []] == ["a", " b"]


REDIS_URL = "redis://127.0.0.1:6379/0"


def _redis_up() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


async def test_with_redis_every_gateway_process_sees_a_response(tmp_path: Path) -> None:
    """Two gateways on one store and one Redis (llmloop serve --workers 2): a conversation goes
    on through either, as the OS hands each request to whichever process accepts it."""
    if not _redis_up():
        if os.environ.get("CI"):
            pytest.fail(f"Redis is not reachable at {REDIS_URL}")
        pytest.skip(f"Redis is not reachable at {REDIS_URL}")
    from llmloop.api.app import create_app
    from llmloop.config import load_settings
    from llmloop.core.deployments import DeploymentSpec
    from llmloop.core.governance import ApiKeyCreate
    from llmloop.services.actors import local_actor
    from llmloop.services.container import Container

    settings = load_settings({"home": str(tmp_path), "gateway_reload_s": 0,
                              "redis_url": REDIS_URL}, env={})  # fmt: skip
    first, second = Container(settings), Container(settings)
    first.deployments.apply(DeploymentSpec.model_validate(
        {"name": "chat", "targets": [echo("")]}), local_actor())  # fmt: skip
    keys = [first.keys.create(ApiKeyCreate(name=f"k{i}", role="editor"), local_actor()).secret
            for i in range(2)]  # fmt: skip

    def client(container: Container, key: str) -> openai.AsyncOpenAI:
        transport = httpx.ASGITransport(app=create_app(settings, container))
        return openai.AsyncOpenAI(api_key=key, base_url="http://gw/v1", max_retries=0,
                                  http_client=httpx.AsyncClient(transport=transport))  # fmt: skip

    a, b, stranger = client(first, keys[0]), client(second, keys[0]), client(second, keys[1])
    try:
        started = await a.responses.create(model="chat", input="on the first")
        went_on = await b.responses.create(model="chat", input="on the second",
                                           previous_response_id=started.id)  # fmt: skip
        assert went_on.output_text == "on the second"
        kept = await a.responses.retrieve(went_on.id)
        assert kept.previous_response_id == started.id
        items = await a.responses.input_items.list(went_on.id)
        assert [i.content[0].text for i in items.data] == ["on the second"]  # type: ignore[union-attr]
        with pytest.raises(openai.NotFoundError):
            await stranger.responses.retrieve(started.id)
        await b.responses.delete(started.id)
        with pytest.raises(openai.NotFoundError):
            await a.responses.retrieve(started.id)
    finally:
        for c in (a, b, stranger):
            await c.close()
        for container in (first, second):
            await container.gateway.aclose()
            container.close()


async def test_the_chat_paths_400s_name_the_responses_fields(gw: Gateway) -> None:
    """What the engine cannot honour is refused naming the Responses field, not chat's."""
    image = {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}
    for body, param, says in [
        ({"input": "x", "text": {"format": {"type": "json_object"}}}, "text.format",
         "does not support text.format"),
        ({"input": [{"role": "user", "content": [image]}]}, "input", "text only"),
        ({"input": "x", "max_output_tokens": 10**9}, "max_output_tokens", "'max_output_tokens'"),
    ]:  # fmt: skip
        resp = await gw.http.post("/v1/responses", json={"model": "chat", **body})
        error = resp.json()["error"]
        assert resp.status_code == 400 and error["param"] == param, error
        assert says in error["message"]
