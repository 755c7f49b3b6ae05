"""Drift over trace windows with a cheap deterministic embedder: a shifted window is detected,
a same-distribution one is not (false-positive rate over 20 seeds printed), results are stored
as a time series, dataset windows work, the scheduler runs."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from datetime import timedelta

import numpy as np
from tests.unit.loop.loop_data import NOW, add_traces

from llmloop.core.datasets import DatasetVersionCreate
from llmloop.core.monitoring import DriftRunCreate, Window
from llmloop.services.actors import local_actor
from llmloop.services.container import Container
from llmloop.services.drift import DriftScheduler, DriftService, is_refusal, last_user_turn

ME = local_actor("ops")
TOPIC_A = [
    "invoice",
    "payment",
    "refund",
    "order",
    "shipping",
    "delivery",
    "account",
    "billing",
    "card",
    "receipt",
]
TOPIC_B = [
    "python",
    "error",
    "stack",
    "trace",
    "compile",
    "docker",
    "kubernetes",
    "deploy",
    "server",
    "latency",
]


def hash_embedder(texts: Sequence[str]) -> np.ndarray:
    """Bag of hashed words in 64 dimensions, L2-normalised (deterministic, no model)."""
    out = np.zeros((len(texts), 64))
    for i, text in enumerate(texts):
        for word in text.lower().split():
            out[i, zlib.crc32(word.encode()) % 64] += 1.0
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms == 0, 1.0, norms)


def _window(c: Container, dep: str, start_h: float, n: int, seed: int, shifted: bool) -> None:
    rng = np.random.default_rng(seed)
    words = TOPIC_B if shifted else TOPIC_A
    rows = []
    for i in range(n):
        k = int(rng.integers(12, 25) if shifted else rng.integers(4, 12))
        prompt = " ".join(rng.choice(words, size=k))
        refuse = rng.random() < (0.3 if shifted else 0.02)
        answer = "I'm sorry, but I can't help with that." if refuse else "Sure: " + prompt
        rows.append(
            {
                "deployment": dep,
                "at": NOW + timedelta(hours=start_h, seconds=i),
                "request_text": f"system: be brief\nuser: {prompt}",
                "response_text": answer,
                "status": "error" if rng.random() < (0.3 if shifted else 0.02) else "ok",
            }
        )
    add_traces(c, rows)


def _spec(dep: str, seed: int = 0) -> DriftRunCreate:
    return DriftRunCreate(
        deployment=dep,
        seed=seed,
        reference=Window(since=NOW, until=NOW + timedelta(hours=1)),
        current=Window(since=NOW + timedelta(hours=1), until=NOW + timedelta(hours=2)),
    )


def test_helpers() -> None:
    assert last_user_turn("system: s\nuser: first\nassistant: a\nuser: last\nline two") == (
        "last\nline two"
    )
    assert last_user_turn("plain prompt") == "plain prompt"
    assert is_refusal("I'm sorry, but no") and not is_refusal("Sure thing")


def test_shift_detected_and_stored(container: Container) -> None:
    _window(container, "dep", 0, 80, seed=1, shifted=False)
    _window(container, "dep", 1, 80, seed=2, shifted=True)
    service = DriftService(container.store, container.datasets, embedder=hash_embedder)
    report = service.run(_spec("dep"), ME)
    drifted = set(report.drifted)
    assert {"input_embedding", "prompt_length", "error_rate", "refusal_rate"} <= drifted
    assert report.skipped["feedback_score"].startswith("feedback_score: need at least")
    history = service.history("dep")
    assert {r.metric for r in history} == {r.metric for r in report.results}
    assert history[0].reference["n"] == 80 and "since" in history[0].current
    assert service.history("dep", metric="prompt_length")[0].drifted


def test_same_distribution_false_positive_rate(container: Container) -> None:
    service = DriftService(container.store, container.datasets, embedder=hash_embedder)
    seeds = range(20)
    for s in seeds:
        _window(container, f"d{s}", 0, 60, seed=100 + s, shifted=False)
        _window(container, f"d{s}", 1, 60, seed=200 + s, shifted=False)
    hits: dict[str, int] = {}
    for s in seeds:
        for r in service.run(_spec(f"d{s}", seed=s), ME).results:
            hits[r.metric] = hits.get(r.metric, 0) + int(r.drifted)
    rates = {m: n / len(seeds) for m, n in sorted(hits.items())}
    print(f"\nsame-distribution false-positive rate over {len(seeds)} seeds (alpha 0.05): {rates}")
    assert rates["input_embedding"] <= 0.2 and rates["prompt_length"] <= 0.2
    assert rates["output_length"] <= 0.2


def test_dataset_reference_and_scheduler(container: Container) -> None:
    rng = np.random.default_rng(5)
    rows = [{"prompt": " ".join(rng.choice(TOPIC_A, size=6)), "response": "ok"} for _ in range(40)]
    container.datasets.create_version("evalset", DatasetVersionCreate(rows=rows), ME)
    _window(container, "dep", 1, 60, seed=3, shifted=True)
    service = DriftService(container.store, container.datasets, embedder=hash_embedder)
    spec = _spec("dep").model_copy(update={"reference": Window(dataset="evalset")})
    report = service.run(spec, ME)
    assert "input_embedding" in report.drifted
    assert report.skipped["error_rate"] == "needs trace windows on both sides"
    assert report.results[0].reference["dataset"] == "evalset"
    scheduler = DriftScheduler(service, ME, interval_s=60, window_s=1800)
    reports = scheduler.run_once(now=NOW + timedelta(hours=1, minutes=30))
    assert [r.deployment for r in reports] == ["dep"] and scheduler.runs == 1
