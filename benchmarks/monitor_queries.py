"""Monitoring aggregates over many traces: llmloop's analytics path against the naive one.

Question: how long does the dashboard query (per deployment and 5-minute bucket: count,
p50/p95/p99 latency, tokens, cost, error rate) take on a SQLite store of 1,000,000 traces?

- llmloop: ``TraceAnalytics.aggregate`` (DuckDB mirror of the traces table, synced incrementally
  before every query; the first, cold query builds the mirror and is reported on its own).
- peer ("naive"): plain SQLAlchemy ``select`` of the rows in the range, grouped in Python, with
  numpy percentiles per group.

Both run alternately in one process on the same store; before every round 200 new traces are
appended, so each llmloop query also pays for syncing fresh rows. The results of the two paths
are cross-checked. ``--quick`` uses 100,000 traces. Last line: ``RESULT ratio=… p95_ms=…``
(ratio = naive p95 / llmloop p95; bigger is better; target ≥ 10).
"""

from __future__ import annotations

import argparse
import gc
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from llmloop.core.ids import new_id
from llmloop.core.monitoring import MonitorQuery
from llmloop.services.trace_analytics import TraceAnalytics
from llmloop.store import tables as t
from llmloop.store.registry import Store

START = datetime(2026, 1, 1, tzinfo=UTC)
DEPLOYMENTS = ["chat", "search", "support", "code", "batch"]
BUCKET_S = 300.0
INSERT_SQL = """INSERT INTO traces (id, at, kind, operation, deployment, request_model,
response_model, target, status, http_status, stream, latency_ms, ttft_ms, input_tokens,
output_tokens, cost, cache_hit, attributes, request_text, response_text)
VALUES (?, ?, 'primary', 'chat', ?, 'm', 'm', 'echo', ?, ?, 0, ?, ?, ?, ?, ?, 0, '{}', '', '')"""


def synthetic(n: int, span_s: float, seed: int, offset_s: float = 0.0) -> list[tuple[Any, ...]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        at = START + timedelta(seconds=offset_s + span_s * i / n)
        error = rng.random() < 0.02
        latency = rng.lognormvariate(5.0, 0.6)
        rows.append((new_id("trace"), at.strftime("%Y-%m-%d %H:%M:%S.%f"),
                     rng.choice(DEPLOYMENTS), "error" if error else "ok", 500 if error else 200,
                     latency, latency / 5, rng.randint(10, 2000), rng.randint(5, 800),
                     rng.random() / 1000))  # fmt: skip
    return rows


def bulk_insert(path: Path, rows: list[tuple[Any, ...]]) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous=OFF")
    with conn:
        conn.executemany(INSERT_SQL, rows)
    conn.close()


def naive(store: Store, since: datetime, until: datetime) -> dict[tuple[str, float], Any]:
    """Select the rows with SQLAlchemy, group and aggregate in Python."""
    tr = t.traces.c
    stmt = sa.select(tr.at, tr.deployment, tr.latency_ms, tr.status, tr.input_tokens,
                     tr.output_tokens, tr.cost).where(tr.kind == "primary", tr.at >= since,
                                                      tr.at < until)  # fmt: skip
    groups: dict[tuple[str, float], list[Any]] = defaultdict(list)
    with store.read() as tx:
        for at, dep, lat, status, tin, tout, cost in tx.conn.execute(stmt):
            ts = at.replace(tzinfo=UTC).timestamp()
            groups[(dep, (ts // BUCKET_S) * BUCKET_S)].append((lat, status, tin, tout, cost))
    out = {}
    for key, items in groups.items():
        lat = np.array([x[0] for x in items])
        p50, p95, p99 = np.percentile(lat, [50, 95, 99])
        out[key] = {"requests": len(items), "p50": p50, "p95": p95, "p99": p99,
                    "input_tokens": sum(x[2] for x in items),
                    "output_tokens": sum(x[3] for x in items), "cost": sum(x[4] for x in items),
                    "error_rate": sum(x[1] == "error" for x in items) / len(items)}  # fmt: skip
    return out


def llmloop(
    analytics: TraceAnalytics, since: datetime, until: datetime
) -> dict[tuple[str, float], Any]:
    q = MonitorQuery(since=since, until=until, bucket_s=BUCKET_S, group_by=["deployment"])
    return {(r.deployment or "", r.bucket.timestamp() if r.bucket else 0.0): {
        "requests": r.requests, "p95": r.latency_p95, "error_rate": r.error_rate}
        for r in analytics.aggregate(q)}  # fmt: skip


def check(a: dict[tuple[str, float], Any], b: dict[tuple[str, float], Any]) -> None:
    assert a.keys() == b.keys(), f"groups differ: {len(a)} vs {len(b)}"
    for key in a:
        assert a[key]["requests"] == b[key]["requests"], key
        assert abs(a[key]["p95"] - b[key]["p95"]) < 1e-6 * max(1.0, a[key]["p95"]), key
        assert abs(a[key]["error_rate"] - b[key]["error_rate"]) < 1e-9, key


def p95(xs: list[float]) -> float:
    return float(np.percentile(xs, 95))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100,000 traces instead of 1,000,000.")
    parser.add_argument("--traces", type=int, default=None, help="How many traces.")
    parser.add_argument("--rounds", type=int, default=None, help="Alternating rounds.")
    args = parser.parse_args()
    n = args.traces or (100_000 if args.quick else 1_000_000)
    rounds = args.rounds or 5
    span_s = 86_400.0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        store = Store(f"sqlite:///{path}")
        began = time.perf_counter()
        for start in range(0, n, 200_000):
            count = min(200_000, n - start)
            bulk_insert(path, synthetic(count, span_s * count / n, seed=start,
                                        offset_s=span_s * start / n))  # fmt: skip
        print(f"inserted {n:,} traces in {time.perf_counter() - began:.1f}s", flush=True)
        analytics = TraceAnalytics(store)
        since, until = START, START + timedelta(seconds=span_s + 3600)
        began = time.perf_counter()
        llmloop(analytics, since, until)
        cold_ms = (time.perf_counter() - began) * 1000
        print(f"llmloop cold query (builds the DuckDB mirror): {cold_ms:.0f} ms", flush=True)
        ours: list[float] = []
        theirs: list[float] = []
        for r in range(rounds):
            bulk_insert(path, synthetic(200, 60.0, seed=10_000 + r, offset_s=span_s + 60 * r))
            gc.collect()  # neither path pays for the other's garbage
            began = time.perf_counter()
            a = llmloop(analytics, since, until)
            ours.append((time.perf_counter() - began) * 1000)
            gc.collect()
            began = time.perf_counter()
            b = naive(store, since, until)
            theirs.append((time.perf_counter() - began) * 1000)
            check(a, b)
            print(f"round {r + 1}: llmloop {ours[-1]:.0f} ms, naive {theirs[-1]:.0f} ms, "
                  f"{len(a)} groups", flush=True)  # fmt: skip
        analytics.close()
        store.dispose()
    ratio = p95(theirs) / p95(ours)
    ours_med, theirs_med = statistics.median(ours), statistics.median(theirs)
    print(f"median: llmloop {ours_med:.0f} ms, naive {theirs_med:.0f} ms")
    print(f"RESULT ratio={ratio:.1f} p95_ms={p95(ours):.1f} naive_p95_ms={p95(theirs):.1f} "
          f"cold_ms={cold_ms:.0f} traces={n} rounds={rounds} target=10")  # fmt: skip


if __name__ == "__main__":
    main()
