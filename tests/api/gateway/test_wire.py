"""The OpenAI wire protocol through the official client: chat, streams, completions with
logprobs and echo, embeddings, models, and OpenAI-shaped errors with the right status codes."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import orjson
import pytest
from gw_harness import Gateway


async def test_chat_returns_answer_usage_and_trace_id(gw: Gateway) -> None:
    raw = await gw.client.chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": "hello there"}]
    )
    resp = raw.parse()
    assert resp.choices[0].message.content == "hello there"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.id.startswith("chatcmpl-")
    assert resp.usage is not None and resp.usage.completion_tokens == 2
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + 2
    trace_id = raw.headers["x-llmloop-trace-id"]
    assert resp.model_extra is not None and resp.model_extra["trace_id"] == trace_id
    traces = await gw.traces()
    assert [t["id"] for t in traces] == [trace_id]
    attrs = traces[0]["attributes"]
    assert attrs["gen_ai.request.model"] == "chat"
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.usage.output_tokens"] == 2
    assert traces[0]["response_text"] == "hello there"


async def test_stream_with_include_usage(gw: Gateway) -> None:
    stream = await gw.client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "one two three"}],
        stream=True, stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3
    assert all(c.usage is None for c in chunks[:-1])
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and finishes.count("stop") == 1
    [trace] = await gw.traces()
    assert trace["stream"] and trace["ttft_ms"] is not None and trace["output_tokens"] == 3


async def test_stream_without_usage_has_no_usage_chunk(gw: Gateway) -> None:
    stream = await gw.client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "a b"}], stream=True
    )
    chunks = [c async for c in stream]
    assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks)


async def test_completions_with_logprobs_and_echo(gw: Gateway) -> None:
    resp = await gw.client.completions.create(
        model="chat", prompt="say this", logprobs=2, echo=True, max_tokens=5
    )
    choice = resp.choices[0]
    assert resp.id.startswith("cmpl-")
    assert choice.text == "say thissay this"
    lp = choice.logprobs
    assert lp is not None and lp.tokens == ["say", " this", "say", " this"]
    assert lp.token_logprobs is not None and lp.token_logprobs[0] is None
    assert lp.token_logprobs[1:] == [-1.0, -1.0, -1.0]
    assert lp.text_offset == [0, 3, 8, 11]
    assert resp.usage is not None and resp.usage.completion_tokens == 2


async def test_completion_stream(gw: Gateway) -> None:
    stream = await gw.client.completions.create(model="chat", prompt="x y z", stream=True)
    text = "".join([c.choices[0].text async for c in stream])
    assert text == "x y z"


async def test_embeddings(gw: Gateway) -> None:
    resp = await gw.client.embeddings.create(model="chat", input=["a", "b", "a"])
    assert [d.index for d in resp.data] == [0, 1, 2]
    assert resp.data[0].embedding == resp.data[2].embedding != resp.data[1].embedding
    assert len(resp.data[0].embedding) == 16 and resp.usage.prompt_tokens == 3
    floats = await gw.client.embeddings.create(model="chat", input="a", encoding_format="float")
    assert floats.data[0].embedding == pytest.approx(resp.data[0].embedding, abs=1e-6)


async def test_embeddings_dimensions_and_token_ids(gw: Gateway) -> None:
    same = await gw.client.embeddings.create(model="chat", input="a", dimensions=16)
    assert len(same.data[0].embedding) == 16
    with pytest.raises(openai.BadRequestError) as err:  # not silently the full 16
        await gw.client.embeddings.create(model="chat", input="a", dimensions=8)
    assert err.value.body["param"] == "dimensions"  # type: ignore[index]
    assert "16-dimensional" in err.value.message
    for ids in ([5, 6, 7], [[5, 6], [7]]):
        with pytest.raises(openai.BadRequestError) as err:
            await gw.client.embeddings.create(model="chat", input=ids)
        assert "check_embedding_ctx_length=False" in err.value.message
    for dims in (0, -3, "8", True):
        body = {"model": "chat", "input": "a", "dimensions": dims}
        resp = await gw.http.post("/v1/embeddings", json=body)
        assert resp.status_code == 400 and resp.json()["error"]["param"] == "dimensions"


async def test_models_lists_deployments(gw: Gateway) -> None:
    await gw.deploy({"name": "other", "targets": [{"engine": {"kind": "echo"}}]})
    models = [m.id async for m in gw.client.models.list()]
    assert sorted(models) == ["chat", "other"]
    assert (await gw.client.models.retrieve("other")).id == "other"


async def test_unknown_model_is_404(gw: Gateway) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        await gw.client.chat.completions.create(
            model="nope", messages=[{"role": "user", "content": "x"}]
        )
    assert err.value.status_code == 404
    assert err.value.body["type"] == "invalid_request_error"  # type: ignore[index]
    assert (err.value.code, err.value.param) == ("model_not_found", "model")


@pytest.mark.parametrize(
    ("extra", "param"),
    [({"temperature": 5}, "temperature"), ({"max_tokens": 0}, "max_tokens"), ({"n": 0}, "n"),
     ({"top_logprobs": 50, "logprobs": True}, "top_logprobs"), ({"stream": "yes"}, "stream"),
     ({"stop": 7}, "stop"), ({"stream_options": {"include_usage": True}}, "stream_options"),
     ({"top_logprobs": 2}, "top_logprobs")],
)  # fmt: skip
async def test_bad_params_are_400(gw: Gateway, extra: dict[str, object], param: str) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        await gw.client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "x"}], extra_body=extra
        )
    assert err.value.status_code == 400
    assert err.value.body["param"].startswith(param)  # type: ignore[index]


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[1, 2]", b'{"messages": [{"role": "user", "content": "x"}]}',
     b'{"model": "chat", "messages": []}', b'{"model": "chat", "messages": [{"role": "x"}]}',
     b'{"model": "chat", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}',
     b'{"model": "chat", "messages": [{"role": "user"}]}',
     b'{"model": "chat", "messages": [{"role": "system", "content": null}]}'],
)  # fmt: skip
async def test_malformed_bodies_are_400(gw: Gateway, body: bytes) -> None:
    resp = await gw.http.post("/v1/chat/completions", content=body)
    assert resp.status_code == 400
    assert set(resp.json()["error"]) == {"message", "type", "param", "code"}


async def test_missing_and_wrong_key_are_401(gw: Gateway) -> None:
    body = {"model": "chat", "messages": [{"role": "user", "content": "x"}]}
    resp = await gw.http.post("/v1/chat/completions", json=body, headers={"Authorization": ""})
    assert resp.status_code == 401
    error = resp.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_api_key")
    bad = openai.AsyncOpenAI(api_key="llk_nope_nope", base_url="http://gw/v1",
                             http_client=gw.http, max_retries=0)  # fmt: skip
    with pytest.raises(openai.AuthenticationError):
        await bad.chat.completions.create(model="chat", messages=body["messages"])  # type: ignore[arg-type]


async def test_oversized_body_is_413_on_v1(gw: Gateway) -> None:
    limit = gw.container.settings.max_body_bytes
    body = b'{"model": "chat", "prompt": "' + b"x" * limit + b'"}'
    resp = await gw.http.post("/v1/completions", content=body)
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "payload_too_large"


async def test_completion_prompt_list_of_one_and_bad_prompt(gw: Gateway) -> None:
    ok = await gw.http.post("/v1/completions", json={"model": "chat", "prompt": ["hi"]})
    assert ok.status_code == 200 and orjson.loads(ok.content)["choices"][0]["text"] == "hi"
    bad = (3, None, [], [1.5], [-1], [True], ["a", 1], [["a"]], [[]], {"p": 1}, [[1], "a", 2])
    for prompt in bad:
        resp = await gw.http.post("/v1/completions", json={"model": "chat", "prompt": prompt})
        assert resp.status_code == 400 and resp.json()["error"]["param"] == "prompt"


async def test_answers_carry_openais_request_id(gw: Gateway) -> None:
    raw = await gw.client.chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": "x"}])  # fmt: skip
    assert raw.request_id == raw.headers["x-llmloop-trace-id"]
    completion = raw.parse()
    assert completion._request_id == completion.id.removeprefix("chatcmpl-")
    stream = await gw.client.chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": "x"}], stream=True)  # fmt: skip
    assert stream.request_id and stream.request_id == stream.headers["x-llmloop-trace-id"]


async def test_an_assistant_refusal_part_is_history(gw: Gateway) -> None:
    resp = await gw.client.chat.completions.create(model="chat", messages=[
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "I can't."}]},
        {"role": "assistant", "content": None, "tool_calls": []},
        {"role": "user", "content": "b"},
    ])  # fmt: skip
    assert resp.choices[0].message.content == "b"


async def test_streams_carry_logprobs_when_asked(gw: Gateway) -> None:
    msgs = [{"role": "user", "content": "a bb c"}]
    stream = await gw.client.chat.completions.create(
        model="chat", messages=msgs, stream=True, logprobs=True, top_logprobs=1)  # type: ignore[arg-type]  # fmt: skip
    tokens = [lp.token async for c in stream if c.choices and c.choices[0].logprobs
              for lp in c.choices[0].logprobs.content or []]  # fmt: skip
    assert tokens == ["a", " bb", " c"]
    plain = await gw.client.chat.completions.create(model="chat", messages=msgs, stream=True)  # type: ignore[arg-type]
    assert [c.choices[0].logprobs async for c in plain if c.choices] == [None] * 5
    legacy = await gw.client.completions.create(model="chat", prompt="a bb c", stream=True,
                                                logprobs=0, max_tokens=8)  # fmt: skip
    pieces = [c.choices[0].logprobs async for c in legacy if c.choices[0].logprobs]
    assert [p.text_offset for p in pieces] == [[0], [1], [4]]  # into the whole text, not per chunk
    assert [p.tokens for p in pieces] == [["a"], [" bb"], [" c"]]


async def test_an_upstreams_streamed_logprobs_pass_through(gw: Gateway) -> None:
    from llmloop.core.chat import EngineSpec
    from llmloop.engines.echo import EchoEngine
    from llmloop.testing.mock_upstream import MockUpstream

    async with MockUpstream(EchoEngine(EngineSpec(kind="echo", model="up"))) as mock:
        engine = {"kind": "openai", "model": "up", "options": {"base_url": mock.base_url}}
        await gw.deploy({"name": "up", "targets": [{"engine": engine}]})
        msgs = [{"role": "user", "content": "x y"}]
        stream = await gw.client.chat.completions.create(
            model="up", messages=msgs, stream=True, logprobs=True)  # type: ignore[arg-type]  # fmt: skip
        tokens = [lp.token async for c in stream if c.choices and c.choices[0].logprobs
                  for lp in c.choices[0].logprobs.content or []]  # fmt: skip
    assert tokens == ["x", " y"]


async def test_the_fast_path_serves_under_a_root_path(
    gw: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Behind a proxy that serves llmloop under /llmloop (llmloop serve --root-path /llmloop),
    the hot routes still skip FastAPI's routing and middleware."""
    from fastapi import FastAPI

    routed: list[str] = []
    original = FastAPI.__call__

    async def spy(self: Any, scope: Any, receive: Any, send: Any) -> None:
        routed.append(scope["path"])
        await original(self, scope, receive, send)

    monkeypatch.setattr(FastAPI, "__call__", spy)
    transport = httpx.ASGITransport(app=gw.app, root_path="/llmloop")
    auth = {"Authorization": f"Bearer {gw.key}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://gw", headers=auth) as http:
        body = {"model": "chat", "messages": [{"role": "user", "content": "x"}]}
        resp = await http.post("/llmloop/v1/chat/completions", json=body)
        assert resp.status_code == 200 and routed == []
        models = await http.get("/llmloop/v1/models")
        assert models.status_code == 200 and routed == ["/llmloop/v1/models"]


async def test_metadata_is_on_the_trace(gw: Gateway) -> None:
    msgs: Any = [{"role": "user", "content": "x"}]
    tags = {"feature": "search", "ticket": "42"}
    await gw.client.chat.completions.create(model="chat", messages=msgs, metadata=tags)
    stream = await gw.client.chat.completions.create(model="chat", messages=msgs, stream=True,
                                                     metadata={"feature": "stream"})  # fmt: skip
    _ = [c async for c in stream]
    await gw.client.completions.create(model="chat", prompt=["a", "b"], max_tokens=2,
                                       extra_body={"metadata": {"feature": "batch"}})  # fmt: skip
    await gw.client.responses.create(model="chat", input="x", metadata={"feature": "responses"})
    features = sorted(t["attributes"].get("llmloop.metadata.feature") for t in await gw.traces())
    assert features == ["batch", "batch", "responses", "search", "stream"]
    for bad in ({"k": 1}, {str(i): "v" for i in range(17)}, {"k" * 65: "v"}, ["x"]):
        body = {"model": "chat", "messages": msgs, "metadata": bad}
        resp = await gw.http.post("/v1/chat/completions", json=body)
        assert resp.status_code == 400 and resp.json()["error"]["param"] == "metadata"
