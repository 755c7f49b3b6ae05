"""The analytics path over traces: percentiles and rates per group and time bucket, fast on
millions of rows.

On SQLite the traces are mirrored into an in-process DuckDB table and aggregated there (columnar,
vectorised ``quantile_cont``). DuckDB's sqlite scanner cannot be installed offline, so the mirror
is filled by this module: traces are append-only, so each query first copies the rows past the
mirror's high-water ``rowid`` (one indexed range scan, Arrow batches) and only those. Rows
deleted from the front (retention) are dropped from the mirror by ``min(rowid)``; a store whose
``max(rowid)`` fell below the mark is mirrored again from scratch. Deleting rows from the middle
is not seen (traces are append-only). On
PostgreSQL the same aggregates run as SQL with ``percentile_cont``. Feedback means are joined
per group from the (small) feedback table. It reads; it never writes the store.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from llmloop.core.monitoring import MetricsRow, MonitorQuery
from llmloop.services.trace_selection import normalized_feedback
from llmloop.store import tables as t
from llmloop.store.registry import Store

PROMPT_ATTR = "llmloop.prompt_version_id"
COLUMNS = {"deployment": "deployment", "model_version": "model_version_id",
           "prompt_version": "prompt_version", "key": "key_id"}  # fmt: skip
CHUNK = 200_000
# Exact epoch seconds of SQLAlchemy's 'YYYY-MM-DD HH:MM:SS.ffffff' text (julianday rounds, so
# a trace on a bucket boundary could land in the bucket before; unixepoch 'subsec' needs 3.42).
# strftime('%s') rounds the fraction to milliseconds too (':37.9996' is second 38), so it is
# given the whole seconds only; the microseconds are added as an integer and the sum divided
# once, as Python's datetime.timestamp() does: the same instant gives the same double both ways.
_EPOCH_SQLITE = ("((CAST(strftime('%s', substr(at, 1, 19)) AS INTEGER) * 1000000"
                 " + CAST(substr(at || '000000', 21, 6) AS INTEGER)) / 1000000.0)")  # fmt: skip
_BLOCKED_SQLITE = "instr(coalesce(guard_verdicts, ''), '\"action\": \"block\"') > 0"
_MIRROR_SQL = f"""SELECT rowid, id, {_EPOCH_SQLITE}, kind, deployment, model_version_id,
json_extract(attributes, '$."{PROMPT_ATTR}"'), key_id, status, latency_ms, ttft_ms,
input_tokens, output_tokens, cost, ({_BLOCKED_SQLITE})
FROM traces WHERE rowid > ? ORDER BY rowid LIMIT {CHUNK}"""
_MIRROR_COLS = ("rid", "id", "ts", "kind", "deployment", "model_version_id", "prompt_version",
                "key_id", "status", "latency_ms", "ttft_ms", "input_tokens", "output_tokens",
                "cost", "blocked")  # fmt: skip
_FEEDBACK_SQL = """SELECT rowid, trace_id, CASE WHEN scale_max > scale_min
THEN (value - scale_min) / (scale_max - scale_min) ELSE value END
FROM feedback WHERE rowid > ? AND value IS NOT NULL AND kind IN ('thumbs', 'score', 'label')
ORDER BY rowid LIMIT 200000"""


def _at(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


def _span(q: MonitorQuery, bucket: datetime | None) -> float:
    """Seconds of the window a row covers: the whole window, or the part of its bucket inside
    the window (the first and last buckets may start before ``since`` or end after ``until``;
    dividing by the whole bucket would show a dip in the rate at both edges)."""
    if q.bucket_s is None or bucket is None:
        return (q.until - q.since).total_seconds()
    to_until = (q.until - bucket).total_seconds()  # no timedelta of a huge bucket: it overflows
    end = q.until if to_until <= q.bucket_s else bucket + timedelta(seconds=q.bucket_s)
    inside = (end - max(bucket, q.since)).total_seconds()
    return inside if inside > 0 else q.bucket_s


def _num(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


class TraceAnalytics:
    """Aggregates of traces for one store; share one per process (it holds the mirror)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.uses_duckdb = store.dialect == "sqlite"
        self._lock = threading.Lock()
        self._duck: Any = None
        self._marks = {"tr": 0, "fb": 0, "low": 0}

    # --- the DuckDB mirror (SQLite stores) ---------------------------------------------------

    def _connect(self) -> Any:
        import duckdb

        con = duckdb.connect(":memory:")
        con.execute("""CREATE TABLE tr (rid BIGINT, id VARCHAR, ts DOUBLE, kind VARCHAR,
            deployment VARCHAR, model_version_id VARCHAR, prompt_version VARCHAR, key_id VARCHAR,
            status VARCHAR, latency_ms DOUBLE, ttft_ms DOUBLE, input_tokens BIGINT,
            output_tokens BIGINT, cost DOUBLE, blocked BOOLEAN)""")
        con.execute("CREATE TABLE fb (rid BIGINT, trace_id VARCHAR, score DOUBLE)")
        return con

    def sync(self) -> int:
        """Copy new traces and feedback into the mirror; returns how many traces were added."""
        with self._lock:
            return self._sync()

    def _sync(self) -> int:
        if self._duck is None:
            self._duck = self._connect()
        with self.store.engine.connect() as conn:
            # Two statements: SQLite answers a lone min() or max() of rowid from the b-tree's
            # ends, but scans the table for both in one SELECT.
            low = conn.exec_driver_sql("SELECT min(rowid) FROM traces").scalar()
            top = conn.exec_driver_sql("SELECT max(rowid) FROM traces").scalar()
            if (top or 0) < self._marks["tr"]:  # the newest rows were deleted: mirror again
                self._duck.close()
                self._duck, self._marks = self._connect(), {"tr": 0, "fb": 0, "low": 0}
            elif low is not None and low > self._marks["low"]:  # retention removed old rows
                self._duck.execute("DELETE FROM tr WHERE rid < ?", [int(low)])
            self._marks["low"] = int(low or 0)
            added = self._copy(conn, _MIRROR_SQL, "tr", _MIRROR_COLS)
            self._copy(conn, _FEEDBACK_SQL, "fb", ("rid", "trace_id", "score"))
        return added

    def _copy(self, conn: sa.Connection, sql: str, table: str, cols: Sequence[str]) -> int:
        import pyarrow as pa

        added = 0
        while True:
            rows = conn.exec_driver_sql(sql, (self._marks[table],)).fetchall()
            if not rows:
                return added
            batch = pa.table(
                {c: list(v) for c, v in zip(cols, zip(*rows, strict=True), strict=True)}
            )
            self._duck.register("batch_in", batch)
            self._duck.execute(f"INSERT INTO {table} SELECT * FROM batch_in")
            self._duck.unregister("batch_in")
            self._marks[table] = int(rows[-1][0])
            added += len(rows)

    def _duck_aggregate(
        self, q: MonitorQuery
    ) -> tuple[list[dict[str, Any]], list[tuple[Any, ...]]]:
        dims = [COLUMNS[d] for d in q.group_by]
        keys = [*dims, *(["floor(ts / $b) * $b"] if q.bucket_s else [])]
        where = ["kind = 'primary'", "ts >= $since", "ts < $until"]
        params: dict[str, Any] = {"since": q.since.timestamp(), "until": q.until.timestamp()}
        if q.bucket_s:
            params["b"] = q.bucket_s
        if q.deployment:
            where.append("deployment = $dep")
            params["dep"] = q.deployment
        if q.model_version_id:
            where.append("model_version_id = $mv")
            params["mv"] = q.model_version_id
        select_keys = ", ".join(
            [*dims, keys[-1] + " AS bucket" if q.bucket_s else "NULL AS bucket"]
        )
        group = f"GROUP BY {', '.join(keys)}" if keys else ""
        sql = f"""SELECT {select_keys}, count(*) AS requests,
            quantile_cont(latency_ms, [0.5, 0.95, 0.99]) AS lat,
            quantile_cont(ttft_ms, [0.5, 0.95]) AS ttft,
            sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
            sum(cost) AS cost, avg(CASE WHEN status = 'error' THEN 1.0 ELSE 0.0 END) AS err,
            avg(CASE WHEN blocked THEN 1.0 ELSE 0.0 END) AS blocked
            FROM tr WHERE {" AND ".join(where)} {group}"""
        cur = self._duck.execute(sql, params)
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        if self._marks["fb"] == 0:  # no feedback mirrored yet: skip the join
            return rows, []
        fsql = f"""SELECT {select_keys}, avg(fb.score) FROM fb JOIN tr ON tr.id = fb.trace_id
            WHERE {" AND ".join(where)} {group}"""
        return rows, self._duck.execute(fsql, params).fetchall()

    # --- SQL (PostgreSQL) --------------------------------------------------------------------

    def _sql_aggregate(self, q: MonitorQuery) -> tuple[list[dict[str, Any]], list[tuple[Any, ...]]]:
        tr = t.traces.c
        prompt = tr.attributes[PROMPT_ATTR].as_string()
        cols = {"deployment": tr.deployment, "model_version_id": tr.model_version_id,
                "prompt_version": prompt, "key_id": tr.key_id}  # fmt: skip
        keys: list[sa.ColumnElement[Any]] = [cols[COLUMNS[d]].label(COLUMNS[d]) for d in q.group_by]
        epoch = sa.extract("epoch", tr.at)
        bucket = (sa.func.floor(epoch / q.bucket_s) * q.bucket_s) if q.bucket_s else sa.null()
        keys.append(bucket.label("bucket"))
        blocked = sa.cast(tr.guard_verdicts, sa.Text).like('%"action": "block"%')
        conds = [tr.kind == "primary", tr.at >= q.since, tr.at < q.until]
        if q.deployment:
            conds.append(tr.deployment == q.deployment)
        if q.model_version_id:
            conds.append(tr.model_version_id == q.model_version_id)
        group = [k for k in keys if q.bucket_s or k.name != "bucket"]  # type: ignore[attr-defined]
        pct = sa.func.percentile_cont

        def share(cond: sa.ColumnElement[bool]) -> Any:
            return sa.func.avg(sa.case((cond, 1.0), else_=0.0))

        stmt = sa.select(
            *keys, sa.func.count().label("requests"),
            pct(0.5).within_group(tr.latency_ms).label("p50"),
            pct(0.95).within_group(tr.latency_ms).label("p95"),
            pct(0.99).within_group(tr.latency_ms).label("p99"),
            pct(0.5).within_group(tr.ttft_ms).label("t50"),
            pct(0.95).within_group(tr.ttft_ms).label("t95"),
            sa.func.sum(tr.input_tokens).label("input_tokens"),
            sa.func.sum(tr.output_tokens).label("output_tokens"),
            sa.func.sum(tr.cost).label("cost"),
            share(tr.status == "error").label("err"), share(blocked).label("blocked"),
        ).where(*conds).group_by(*group)  # fmt: skip
        fstmt = (
            sa.select(*keys, sa.func.avg(normalized_feedback()))
            .select_from(t.feedback.join(t.traces, t.traces.c.id == t.feedback.c.trace_id))
            .where(*conds, t.feedback.c.value.is_not(None),
                   t.feedback.c.kind.in_(("thumbs", "score", "label")))
            .group_by(*group)
        )  # fmt: skip
        with self.store.read() as tx:
            rows = [dict(r) for r in tx.conn.execute(stmt).mappings()]
            fb = [tuple(r) for r in tx.conn.execute(fstmt)]
        for r in rows:
            r["lat"] = [r.pop("p50"), r.pop("p95"), r.pop("p99")]
            r["ttft"] = [r.pop("t50"), r.pop("t95")]
        return rows, fb

    # --- the public query --------------------------------------------------------------------

    def aggregate(self, q: MonitorQuery) -> list[MetricsRow]:
        """One row per group (and bucket), ordered by bucket then group."""
        if self.uses_duckdb:
            with self._lock:
                self._sync()
                rows, fb = self._duck_aggregate(q)
        else:
            rows, fb = self._sql_aggregate(q)
        dims = [COLUMNS[d] for d in q.group_by]
        feedback = {tuple(r[:-1]): r[-1] for r in fb}
        out = []
        for r in rows:
            key = tuple([*(r[d] for d in dims), r["bucket"]])
            bucket = _at(_num(r["bucket"]))
            lat, ttft = r["lat"] or [None] * 3, r["ttft"] or [None] * 2
            # Built without re-validation: every field is computed here from typed columns.
            out.append(MetricsRow.model_construct(
                bucket=bucket,
                **{d: r[COLUMNS[d]] for d in q.group_by},
                requests=int(r["requests"]),
                request_rate=int(r["requests"]) / _span(q, bucket),
                latency_p50=_num(lat[0]), latency_p95=_num(lat[1]), latency_p99=_num(lat[2]),
                ttft_p50=_num(ttft[0]), ttft_p95=_num(ttft[1]),
                input_tokens=int(r["input_tokens"] or 0),
                output_tokens=int(r["output_tokens"] or 0),
                cost=float(r["cost"] or 0.0), error_rate=float(r["err"] or 0.0),
                guard_block_rate=float(r["blocked"] or 0.0), feedback_mean=_num(feedback.get(key)),
            ))  # fmt: skip
        out.sort(key=lambda m: (m.bucket or datetime.min.replace(tzinfo=UTC),
                                *(str(getattr(m, d) or "") for d in q.group_by)))  # fmt: skip
        return out

    def close(self) -> None:
        with self._lock:
            if self._duck is not None:
                self._duck.close()
                self._duck = None
