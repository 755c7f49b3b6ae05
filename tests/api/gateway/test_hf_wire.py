"""The hf engine behind the gateway with the ecosystem's clients: a JSON schema answer through
the official client and LangChain's ``with_structured_output``, and lm-eval style token-id
prompts scored with echo and logprobs (ids out of the vocabulary are a 400)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import httpx
import jsonschema
import pytest
from gw_harness import Gateway
from pydantic import BaseModel, Field

from llmloop.engines.structured import structured_available

pytest.importorskip("torch")

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"type": "string", "enum": ["Paris", "Rome"]},
                   "days": {"type": "integer", "minimum": 1, "maximum": 9}},
    "required": ["city", "days"], "additionalProperties": False,
}  # fmt: skip


class Trip(BaseModel):
    city: Literal["Paris", "Rome"]
    days: int = Field(ge=1, le=9)


async def deploy_hf(gw: Gateway, model_dir: Path) -> None:
    engine = {"kind": "hf", "model": str(model_dir),
              "options": {"num_threads": 1, "max_batch_size": 8}}  # fmt: skip
    await gw.deploy({"name": "tiny", "targets": [{"engine": engine}]})


@pytest.mark.skipif(not structured_available(), reason="xgrammar not installed")
async def test_json_schema_answers_from_the_hf_engine(gw: Gateway, tiny_model_dir: Path) -> None:
    await deploy_hf(gw, tiny_model_dir)
    fmt = {"type": "json_schema", "json_schema": {"name": "trip", "schema": SCHEMA}}
    for seed in (1, 2, 3):
        resp = await gw.client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "plan a trip"}],
            response_format=fmt, temperature=1.0, seed=seed, max_tokens=64,  # type: ignore[arg-type]
        )  # fmt: skip
        jsonschema.validate(json.loads(resp.choices[0].message.content or ""), SCHEMA)
    langchain_openai = pytest.importorskip("langchain_openai")
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=gw.app), timeout=60)
    llm = langchain_openai.ChatOpenAI(model="tiny", base_url="http://gw/v1", api_key=gw.key,
                                      http_async_client=http, max_retries=0,
                                      max_completion_tokens=64)  # fmt: skip
    trip = await llm.with_structured_output(Trip, method="json_schema").ainvoke("plan a trip")
    assert isinstance(trip, Trip)
    await http.aclose()


async def test_n_choices_from_the_hf_engine(gw: Gateway, tiny_model_dir: Path) -> None:
    await deploy_hf(gw, tiny_model_dir)
    messages: Any = [{"role": "user", "content": "plan a trip"}]
    sampled = await gw.client.chat.completions.create(
        model="tiny", messages=messages, n=4, temperature=1.0, seed=5, max_tokens=12
    )
    texts = [c.message.content for c in sampled.choices]
    assert [c.index for c in sampled.choices] == [0, 1, 2, 3] and len(set(texts)) > 1
    single = await gw.client.chat.completions.create(
        model="tiny", messages=messages, temperature=1.0, seed=5, max_tokens=12
    )
    assert single.choices[0].message.content == texts[0]  # choice 0 is the n=1 answer
    assert sampled.usage is not None and single.usage is not None
    assert sampled.usage.prompt_tokens == single.usage.prompt_tokens
    assert single.usage.completion_tokens < sampled.usage.completion_tokens <= 4 * 12
    stream = await gw.client.chat.completions.create(
        model="tiny", messages=messages, n=4, temperature=1.0, seed=5, max_tokens=12,
        stream=True,
    )  # fmt: skip
    streamed = ["", "", "", ""]
    async for chunk in stream:
        for choice in chunk.choices:
            streamed[choice.index] += choice.delta.content or ""
    assert streamed == texts


async def test_token_id_prompts_on_the_hf_engine(gw: Gateway, tiny_model_dir: Path) -> None:
    await deploy_hf(gw, tiny_model_dir)
    resp = await gw.client.completions.create(
        model="tiny", prompt=[[5, 6, 7, 8], [9, 10]], echo=True, logprobs=1, max_tokens=1,
        temperature=0,
    )  # fmt: skip
    first, second = resp.choices
    assert first.logprobs is not None and first.logprobs.token_logprobs is not None
    assert len(first.logprobs.token_logprobs) == 5 and first.logprobs.token_logprobs[0] is None
    assert all(v is not None and v <= 0 for v in first.logprobs.token_logprobs[1:])
    assert second.logprobs is not None and len(second.logprobs.token_logprobs or []) == 3
    assert resp.usage is not None and resp.usage.prompt_tokens == 6
    bad = await gw.http.post("/v1/completions", json={"model": "tiny", "prompt": [10**9]})
    assert bad.status_code == 400 and "vocabulary" in bad.json()["error"]["message"]


@pytest.mark.skipif(not structured_available(), reason="xgrammar not installed")
async def test_forced_tool_calls_from_the_hf_engine(gw: Gateway, tools_model_dir: Path) -> None:
    await deploy_hf(gw, tools_model_dir)
    tool = {"type": "function", "function": {"name": "plan_trip", "parameters": SCHEMA}}
    choice = {"type": "function", "function": {"name": "plan_trip"}}
    messages = [{"role": "user", "content": "plan a trip"}]
    resp = await gw.client.chat.completions.create(
        model="tiny", messages=messages, tools=[tool], tool_choice=choice,  # type: ignore[arg-type, list-item]
        max_tokens=80, temperature=0, parallel_tool_calls=False,
    )  # fmt: skip
    assert resp.choices[0].finish_reason == "tool_calls"
    [call] = resp.choices[0].message.tool_calls or []
    # Parallel calls allowed: this greedy model keeps calling until max_tokens cuts it.
    cut = await gw.client.chat.completions.create(
        model="tiny", messages=messages, tools=[tool], tool_choice=choice,  # type: ignore[arg-type, list-item]
        max_tokens=80, temperature=0,
    )  # fmt: skip
    assert cut.usage is not None and cut.usage.completion_tokens == 80
    assert cut.choices[0].finish_reason == "length"
    assert [c.function.arguments for c in cut.choices[0].message.tool_calls or []][:1] == [
        call.function.arguments
    ]
    assert call.function.name == "plan_trip"
    jsonschema.validate(json.loads(call.function.arguments), SCHEMA)
    stream = await gw.client.chat.completions.create(
        model="tiny", messages=messages, tools=[tool], tool_choice=choice,  # type: ignore[arg-type, list-item]
        max_tokens=80, temperature=0, stream=True, parallel_tool_calls=False,
    )  # fmt: skip
    deltas = [d async for c in stream if c.choices for d in c.choices[0].delta.tool_calls or []]
    assert (
        "".join(d.function.arguments or "" for d in deltas if d.function) == call.function.arguments
    )
    langchain_openai = pytest.importorskip("langchain_openai")
    from langchain_core.tools import tool as as_tool

    @as_tool(args_schema=Trip)
    def plan_trip(city: str, days: int) -> str:
        """Plan a trip."""
        return f"{days} days in {city}"

    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=gw.app), timeout=60)
    llm = langchain_openai.ChatOpenAI(model="tiny", base_url="http://gw/v1", api_key=gw.key,
                                      http_async_client=http, max_retries=0,
                                      max_completion_tokens=80)  # fmt: skip
    ai = await llm.bind_tools([plan_trip], tool_choice="plan_trip").ainvoke("plan a trip")
    assert [c["name"] for c in ai.tool_calls] == ["plan_trip"]
    Trip.model_validate(ai.tool_calls[0]["args"])
    await http.aclose()
