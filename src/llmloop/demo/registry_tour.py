"""``llmloop demo --registry``: the registry walkthrough, once through the in-process SDK and
once over HTTP against a real server on 127.0.0.1, on the embedded default store.

It registers a dataset version, a prompt with two versions and a ``production`` label, a run with
metric series, a model version with an alias; protects the alias, requests and approves a move;
then prints the lineage graph and the audit log. The full lifecycle demo replaces it later.
"""

from __future__ import annotations

import time
from typing import Any

from llmloop.client import Client
from llmloop.config import Settings, load_settings
from llmloop.demo.server import Server

TICKETS = [
    {"prompt": "My order #1042 has not arrived.", "response": "Sorry! I have re-sent order #1042."},
    {"prompt": "How do I reset my password?", "response": "Open Settings > Security > Reset."},
    {"prompt": "Can I change my delivery address?", "response": "Yes, under Orders > Address."},
]


def _say(text: str) -> None:
    print(text, flush=True)


def walkthrough(client: Client, approver: Client, tag: str) -> dict[str, Any]:
    """The registry tour; ``approver`` acts as a second person for the approval."""
    suffix = f"-{tag}-{int(time.time() * 1000) % 10_000_000}"
    dv = client.create_dataset_version(f"support-tickets{suffix}", TICKETS, description="seed")
    _say(
        f"  dataset   {dv.dataset_name} v{dv.version}  rows={dv.row_count}  "
        f"sha256={dv.content_hash[:12]}…  shape={dv.shape}"
    )
    name = f"support-answer{suffix}"
    client.create_prompt_version(name, "Answer the customer: {{ question }}")
    pv2 = client.create_prompt_version(
        name,
        "You are a kind support agent.\nCustomer: {{ question }}\nAnswer:",
        params={"temperature": 0.2, "max_tokens": 128},
        message="friendlier, lower temperature",
    )
    client.set_prompt_label(name, "production", pv2.version)
    rendered = client.render_prompt(name, {"question": "Where is my order?"})
    _say(f"  prompt    {name} v1, v2; production -> v{rendered.version}")
    run = client.create_run(
        name=f"finetune{suffix}",
        kind="finetune",
        params={"lr": 2e-4, "lora_r": 8},
        inputs=[dv.id, pv2.id],
    )
    for step, loss in enumerate([2.31, 1.74, 1.42, 1.30], start=1):
        client.log_metrics(run.id, {"train_loss": loss, "eval_perplexity": 2.7**loss}, step=step)
    client.finish_run(run.id)
    _say(f"  run       {run.id}  train_loss: 2.31 -> 1.30 over 4 steps")
    model = f"support-bot{suffix}"
    mv1 = client.create_model_version(
        model,
        base_model="tiny-llama",
        format="echo",
        run_id=run.id,
        inputs=[dv.id, pv2.id],
        metrics={"rougeL": 0.41},
    )
    mv2 = client.create_model_version(
        model, base_model=mv1.id, format="echo", run_id=run.id, metrics={"rougeL": 0.47}
    )
    client.set_model_alias(model, "champion", mv1.version)
    client.protect("model_alias", model, "champion")
    request = client.request_approval(
        "model_alias", model, "champion", mv2.version, comment="v2 beats v1 on ROUGE-L"
    )
    decided = approver.approve(request.id, comment="looks good")
    champion = client.get_model(model).aliases["champion"]
    _say(
        f"  model     {model} v1, v2; champion protected; approval {decided.status} "
        f"by {decided.decided_by}; champion -> v{champion}"
    )
    graph = client.lineage(mv2.id)
    _say("  lineage of the champion:")
    for edge in graph.edges:
        labels = {n.id: f"{n.type}:{n.label}" for n in graph.nodes}
        _say(f"    {labels[edge.source]} --{edge.relation}--> {labels[edge.target]}")
    entries = [
        e
        for e in client.audit(limit=1000)
        if suffix in str(e.after)
        or e.entity_id in {dv.id, pv2.id, run.id, mv1.id, mv2.id, request.id}
    ]
    _say(f"  audit log ({len(entries)} entries for this walkthrough, last 5):")
    for e in entries[-5:]:
        _say(f"    #{e.id} {e.at:%H:%M:%S} {e.actor:<8} {e.action:<24} {e.entity_id}")
    return {"dataset_version": dv.id, "model_version": mv2.id, "champion": champion}


def main(settings: Settings | None = None) -> int:
    settings = settings or load_settings()
    _say(f"llmloop demo — store: {settings.database_url}")
    _say("1) Registry walkthrough through the in-process SDK")
    with Client(settings=settings) as me, Client(settings=settings, actor="reviewer") as reviewer:
        walkthrough(me, reviewer, "sdk")
        admin = me.create_key("demo-admin", role="admin").secret
        second = me.create_key("demo-reviewer", role="admin").secret
    with Server(settings) as server:
        _say(f"2) The same walkthrough over HTTP (llmloop serve on {server.url})")
        url = server.url
        with Client(url=url, api_key=admin) as me, Client(url=url, api_key=second) as reviewer:
            result = walkthrough(me, reviewer, "http")
    _say(f"done: champion of the HTTP walkthrough is v{result['champion']}")
    return 0
