"""The whole loop on one machine, on embedded defaults: raw data -> profile -> clean -> split ->
a foundation model -> a LoRA fine-tune -> evaluation and a gate -> a protected champion served by
the gateway -> live traffic with feedback -> monitoring and drift -> feedback curated into data
-> a second fine-tune -> a gated canary -> promotion through an approval (or a rollback).

Everything goes through the same services the CLI and the server use; traffic goes over HTTP
with the official ``openai`` client against a real server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from llmloop.config import Settings
from llmloop.demo import support_data as data
from llmloop.demo.server import Server
from llmloop.services.actors import Actor, local_actor

MODEL, DEPLOYMENT = "support-bot", "support"
TRAIN_SFT = {
    "max_steps": 40,
    "learning_rate": 1e-2,
    "batch_size": 8,
    "lora": {"r": 16, "alpha": 32, "target_modules": "all-linear"},
}
RETRAIN_SFT = {**TRAIN_SFT, "max_steps": 120, "learning_rate": 5e-3}
SPLITS = {"train": 0.7, "validation": 0.1, "test": 0.2}
# Not significantly worse than the champion on the held-out split (paired bootstrap over samples).
NO_REGRESSION = "rougeL >= baseline - 0.02 (paired_bootstrap, 0.95)"
BASE = {"steps": 120, "hidden_size": 64, "layers": 2, "heads": 4, "vocab_size": 600}


def say(text: str) -> None:
    print(text, flush=True)


async def traffic(url: str, key: str, tickets: list[dict[str, Any]], tag: str) -> dict[str, float]:
    """Users ask; each rates the answer (thumbs) and corrects a wrong one, over HTTP."""
    import httpx
    import openai

    client: Any = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=2)
    api = httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    gate = asyncio.Semaphore(8)
    scores: list[float] = []

    async def one(i: int, ticket: dict[str, Any]) -> None:
        async with gate:
            stream = i % 4 == 0
            messages = [{"role": "user", "content": ticket["prompt"]}]
            raw: Any
            if stream:
                raw = await client.chat.completions.with_raw_response.create(
                    model=DEPLOYMENT,
                    messages=messages,
                    max_tokens=40,
                    temperature=0,
                    user=f"{tag}-user-{i}",
                    stream=True,
                )
                answer = "".join(
                    [c.choices[0].delta.content or "" async for c in raw.parse() if c.choices]
                )
            else:
                raw = await client.chat.completions.with_raw_response.create(
                    model=DEPLOYMENT,
                    messages=messages,
                    max_tokens=40,
                    temperature=0,
                    user=f"{tag}-user-{i}",
                )
                answer = raw.parse().choices[0].message.content or ""
            trace_id = raw.headers["x-llmloop-trace-id"]
            good = data.satisfied(ticket, answer)
            scores.append(1.0 if good else 0.0)
            body: dict[str, Any] = {"kind": "thumbs", "value": 1.0 if good else 0.0}
            await _post_feedback(api, trace_id, body)
            if not good:
                await _post_feedback(
                    api, trace_id, {"kind": "correction", "correction": ticket["response"]}
                )

    await asyncio.gather(*(one(i, t) for i, t in enumerate(tickets)))
    await client.close()
    await api.aclose()
    return {"requests": len(scores), "thumbs_up_rate": sum(scores) / max(1, len(scores))}


async def _post_feedback(api: Any, trace_id: str, body: dict[str, Any]) -> None:
    for _ in range(20):  # the trace is written asynchronously: retry until it has landed
        response = await api.post(f"/api/traces/{trace_id}/feedback", json=body)
        if response.status_code != 404:
            response.raise_for_status()
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"trace {trace_id} never appeared")


def _quiet_progress_bars() -> None:
    """Dataset preparation bars drown the story; the tracker records progress instead."""
    try:
        from datasets.utils.logging import disable_progress_bar
        from transformers.utils.logging import disable_progress_bar as disable_hf_bars
    except ImportError:
        return
    disable_progress_bar()
    disable_hf_bars()


def run(settings: Settings, workdir: Path) -> dict[str, Any]:
    """The lifecycle; returns the ids a caller (or test) can check."""
    from llmloop.core.deployments import DeploymentSpec
    from llmloop.core.feedback import CurateCreate, QueueFilter
    from llmloop.core.governance import ApiKeyCreate
    from llmloop.core.monitoring import DriftRunCreate, Window
    from llmloop.services.container import Container

    _quiet_progress_bars()
    me, reviewer = local_actor("ml-engineer"), Actor("reviewer", "admin")
    c = Container(settings)
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()

    def step(title: str) -> None:
        say(f"\n[{time.monotonic() - started:6.1f}s] {title}")

    step("1. Data: ingest a raw ticket export, profile it, clean it, split it")
    raw_path = workdir / "tickets-export.jsonl"
    raw_path.write_text("".join(json.dumps(r) + "\n" for r in data.raw_tickets()))
    raw, _ = c.data.ingest(str(raw_path), "support-tickets", me)
    profile, html = c.data.profile("support-tickets", me)
    (workdir / "profile.html").write_text(html)
    found = {k: f.count for k, f in profile.findings.items() if f.count}
    say(f"   raw v{raw.version}: {raw.row_count} rows; profile found {found}")
    say(f"   HTML report: {workdir / 'profile.html'}")
    (workdir / "recipe.yaml").write_text(data.RECIPE)
    clean, report = c.data.clean("support-tickets", workdir / "recipe.yaml", me)
    say(
        f"   clean v{clean.version}: {report.rows_in} -> {report.rows_out} rows "
        f"({', '.join(f'{s.step} -{s.rows_removed}' for s in report.steps if s.rows_removed)})"
    )
    _, split_report = c.data.split("support-tickets", me, config={"seed": 1, "ratios": SPLITS})
    say(f"   splits {split_report['counts']}; leakage {split_report['leakage']['exact']} exact")

    step("2. Training: a small foundation model, then a LoRA fine-tune")
    base = c.training.init_base("support-tickets-train", "support-base", me, config=BASE)
    c.models.set_alias("support-base", "champion", base.version, me)
    say(f"   support-base v{base.version} pre-trained (run {base.run_id})")
    v1 = c.training.finetune(
        "support-base",
        "support-tickets-train",
        MODEL,
        me,
        eval_dataset="support-tickets-validation",
        config=TRAIN_SFT,
    )
    say(
        f"   {MODEL} v{v1.version}: eval perplexity "
        f"{v1.metrics.get('eval_perplexity', float('nan')):.2f}, "
        f"{v1.metrics['train_tokens']:.0f} tokens in {v1.metrics['wall_time_s']:.0f}s"
    )

    step("3. Evaluation: base vs fine-tune on the held-out test split, then a gate")
    suite = workdir / "suite.yaml"
    suite.write_text(data.SUITE)
    base_eval = c.evaluation.evaluate(suite, "support-base", "support-tickets-test", me, ref=1)
    v1_eval = c.evaluation.evaluate(suite, MODEL, "support-tickets-test", me, ref=v1.version)
    say(f"   ROUGE-L base {base_eval.metrics['rougeL']:.3f} -> v1 {v1_eval.metrics['rougeL']:.3f}")
    gate = c.evaluation.gate(["rougeL >= baseline + 0.05"], v1_eval.run_id, base_eval.run_id, me)
    say(f"   gate 'rougeL >= baseline + 0.05': {'passed' if gate.passed else 'FAILED'}")
    if not gate.passed:
        raise RuntimeError("the first fine-tune did not beat its base; the demo cannot go on")
    c.models.set_alias(MODEL, "champion", v1.version, me)
    c.governance.protect("model_alias", MODEL, "champion", True, me)
    say(f"   {MODEL}@champion -> v{v1.version}, and the alias is now protected")

    step("4. Serving: the gateway serves the champion; live traffic with user feedback")
    c.deployments.apply(
        DeploymentSpec.model_validate(
            {"name": DEPLOYMENT, "targets": [{"model": MODEL, "alias": "champion"}]}
        ),
        me,
    )
    key = c.keys.create(
        ApiKeyCreate(name="support-app", role="editor", limits={"rpm": 10_000}), me
    ).secret
    phase1_start = datetime.now(UTC)
    with Server(settings, c) as server:
        say(f"   llmloop serve on {server.url}; the support app uses the openai SDK")
        live1 = asyncio.run(traffic(server.url, key, data.live_tickets(60, seed=11), "p1"))
        say(
            f"   phase 1: {live1['requests']} requests, thumbs-up rate "
            f"{live1['thumbs_up_rate']:.0%} (warranty questions are new to the model)"
        )
        asyncio.run(c.gateway.writer.flush())

        step("5. Monitoring, drift and curation: feedback becomes training data")
        for row in c.monitoring.summary(phase1_start, deployment=DEPLOYMENT):
            say(
                f"   {row.requests} requests, p50 {row.latency_p50 or 0:.0f} ms, p95 "
                f"{row.latency_p95 or 0:.0f} ms, tokens {row.input_tokens}/{row.output_tokens}, "
                f"feedback {row.feedback_mean or 0:.2f}"
            )
        drift = c.drift.run(
            DriftRunCreate(
                deployment=DEPLOYMENT,
                reference=Window(dataset="support-tickets-validation"),
                current=Window(since=phase1_start),
            ),
            me,
        )
        flagged = [r.metric for r in drift.results if r.drifted]
        say(f"   drift vs the validation set: {flagged or 'none detected'}")
        curated = c.curation.curate(
            CurateCreate(
                dataset="support-feedback",
                format="sft",
                sft_style="prompt_response",
                filter=QueueFilter(deployment=DEPLOYMENT, since=phase1_start),
                corrected_only=True,
                description="corrections from phase-1 traffic",
            ),
            me,
        )
        say(
            f"   curated {curated.rows} corrected answers into support-feedback "
            f"v{curated.version} (PII redacted, lineage to {curated.rows} traces)"
        )
        mixed = c.data.combine(
            [
                ("support-tickets-train", "latest"),
                # Corrections are few and precious: the mix weighs them twice.
                ("support-feedback", "latest"),
                ("support-feedback", "latest"),
            ],
            "support-train-plus-feedback",
            me,
        )

        step("6. Retraining: a second fine-tune on training data plus feedback, gated")
        v2 = c.training.finetune(
            "support-base",
            mixed.dataset_name,
            MODEL,
            me,
            eval_dataset="support-tickets-validation",
            config=RETRAIN_SFT,
        )
        v2_eval = c.evaluation.evaluate(suite, MODEL, "support-tickets-test", me, ref=v2.version)
        gate2 = c.evaluation.gate([NO_REGRESSION], v2_eval.run_id, v1_eval.run_id, me)
        say(
            f"   v{v2.version}: ROUGE-L {v2_eval.metrics['rougeL']:.3f} (v1 "
            f"{v1_eval.metrics['rougeL']:.3f}); no-regression gate "
            f"{'passed' if gate2.passed else 'FAILED'}"
        )

        step("7. Canary: v2 takes half the traffic (sticky per user); live feedback decides")
        phase2_start = datetime.now(UTC)
        decision = None
        if gate2.passed:
            c.rollout.start_canary(DEPLOYMENT, MODEL, v2.version, me, weight=0.5)
            asyncio.run(c.gateway.manager.reload(DEPLOYMENT))
            live2 = asyncio.run(traffic(server.url, key, data.live_tickets(100, seed=12), "p2"))
            asyncio.run(c.gateway.writer.flush())
            decision = c.rollout.evaluate(DEPLOYMENT, MODEL, phase2_start, min_requests=10)
            say(
                f"   phase 2: {live2['requests']} requests; champion feedback "
                f"{decision.champion_score or 0:.2f} ({decision.champion_requests} req), "
                f"challenger {decision.challenger_score or 0:.2f} "
                f"({decision.challenger_requests} req)"
            )
            decision = c.rollout.apply(decision, me, approver=reviewer)
            say(f"   decision: {decision.decision} — {decision.reason}")
        else:
            say("   the gate failed: v2 never reaches traffic")
        asyncio.run(c.gateway.manager.reload(DEPLOYMENT))

    step("8. Lineage of the final champion")
    champion = c.models.get_version(MODEL, "champion")
    graph = c.governance.lineage(champion.id, "up")
    kinds: dict[str, int] = {}
    for node in graph.nodes:
        kinds[node.type] = kinds.get(node.type, 0) + 1
    say(f"   {MODEL}@champion = v{champion.version}; upstream: {kinds}")
    reaches_raw = raw.id in {n.id for n in graph.nodes}
    reaches_traces = any(n.type == "trace" for n in graph.nodes)
    say(f"   reaches the raw export: {reaches_raw}; reaches live traces: {reaches_traces}")
    c.close()
    say(f"\ndone in {time.monotonic() - started:.0f}s. Look around:")
    say(
        "   llmloop models list --json | llmloop runs list | llmloop lineage "
        f"{champion.id} | llmloop monitor --since 1h | llmloop audit"
    )
    say(
        "   in a browser: llmloop keys create me --role admin, then llmloop serve and open "
        f"http://127.0.0.1:{c.settings.port}/ui with that key"
    )
    return {
        "champion": champion.id,
        "raw": raw.id,
        "decision": decision.decision if decision else "gate_failed",
        "reaches_raw": reaches_raw,
        "reaches_traces": reaches_traces,
        "seconds": time.monotonic() - started,
    }
