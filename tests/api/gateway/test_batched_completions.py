"""/v1/completions with OpenAI's batched and token-id prompts, as evaluation harnesses send them
(lm-evaluation-harness's ``local-completions`` posts token-id arrays with ``echo`` and
``logprobs`` to score likelihoods): one choice per prompt in order, usage summed, one trace per
prompt, and clear 400s where a prompt form cannot be served."""

from __future__ import annotations

import gw_probe
import pytest
from gw_harness import Gateway, probe


async def test_batched_text_prompts_answer_in_order(gw: Gateway) -> None:
    resp = await gw.client.completions.create(model="chat", prompt=["one", "two words", "3"])
    assert [c.index for c in resp.choices] == [0, 1, 2]
    assert [c.text for c in resp.choices] == ["one", "two words", "3"]
    assert resp.usage is not None and resp.usage.completion_tokens == 4
    assert resp.usage.prompt_tokens == 4
    ids = (resp.model_extra or {})["trace_ids"]
    traces = await gw.traces(deployment="chat")
    assert sorted(t["id"] for t in traces) == sorted(ids) and len(ids) == 3
    assert resp.id == f"cmpl-{ids[0]}"


async def test_token_id_prompts_are_scored_with_echo(gw: Gateway) -> None:
    # The lm-eval loglikelihood request: the context and continuation as ids, echo, 1 new token.
    resp = await gw.client.completions.create(
        model="chat", prompt=[[11, 12, 13], [21, 22]], echo=True, logprobs=1, max_tokens=1
    )
    first, second = resp.choices
    assert first.logprobs is not None and first.logprobs.tokens is not None
    assert first.logprobs.tokens[:3] == ["11", " 12", " 13"]
    assert first.logprobs.token_logprobs is not None
    assert first.logprobs.token_logprobs[0] is None and len(first.logprobs.token_logprobs) == 4
    assert second.text.startswith("21 22")
    single = await gw.client.completions.create(model="chat", prompt=[5, 6], max_tokens=8)
    assert single.choices[0].text == "5 6"


async def test_one_failing_prompt_fails_the_batch(gw: Gateway) -> None:
    await gw.deploy({"name": "bad", "targets": [probe("bad", fatal=True)]})
    resp = await gw.http.post("/v1/completions", json={"model": "bad", "prompt": ["a", "b"]})
    assert resp.status_code >= 400 and "error" in resp.json()


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"prompt": ["a", "b"], "stream": True}, "streaming takes one prompt"),
        ({"prompt": ["x"] * 2049}, "at most 2048 prompts"),
        ({"model": "textonly", "prompt": [1, 2]}, "not token ids"),
        ({"model": "guarded", "prompt": [1, 2]}, "guards read text"),
    ],
)
async def test_prompt_forms_that_cannot_be_served_are_400(
    gw: Gateway, body: dict[str, object], why: str
) -> None:
    await gw.deploy({"name": "textonly", "targets": [probe("textonly", text_only=True)]})
    guard = {"kind": "deny_list", "config": {"terms": ["secret"]}}
    await gw.deploy({"name": "guarded", "targets": [probe("guarded")], "guards": [guard]})
    resp = await gw.http.post("/v1/completions", json={"model": "chat", **body})
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["param"] == "prompt" and why in error["message"]
    assert gw_probe.CALLS["textonly"] == gw_probe.CALLS["guarded"] == 0
