"""Limits per API key kept in the database: durable across restarts, exact across processes.

Each reserve, settle and release is one transaction in a worker thread. The transaction first
takes the key's lock row in ``key_spend`` (an ``UPDATE`` of the row: a row lock on PostgreSQL,
the single write lock on SQLite), so concurrent requests of one key, from this process or
another, are admitted one after the other and cannot overshoot. Inside one process an asyncio
lock per key keeps the threads from queueing on the database lock.

In-flight requests are rows of ``limit_reservations`` with a lease: a process that dies
mid-request frees its concurrency slots and reserved budget when the lease ends.
Use ``policy_redis.py`` when many gateway processes share a key and the database is the
bottleneck; this module does not cache anything between calls.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from llmloop.services.actors import Actor
from llmloop.services.gateway.policy import (
    DEFAULT_LEASE_S,
    WINDOW_S,
    Reservation,
    admit_shielded,
    check_amounts,
    refuse,
    start_reservation,
)
from llmloop.store import tables as t
from llmloop.store.registry import Store

#: Spend comparisons tolerate float rounding of this size (USD).
_EPSILON = 1e-9


class StoreLimitBackend:
    """A :class:`~llmloop.services.gateway.policy.LimitBackend` over the registry database."""

    def __init__(
        self,
        store: Store,
        clock: Callable[[], float] = time.time,
        lease_s: float = DEFAULT_LEASE_S,
    ) -> None:
        if lease_s <= 0:
            raise ValueError("lease_s must be > 0")
        self.store = store
        self.clock = clock
        self.lease_s = lease_s
        self._locks: dict[str, asyncio.Lock] = {}
        self._background: set[asyncio.Task[None]] = set()

    def _lock(self, key_id: str) -> asyncio.Lock:
        lock = self._locks.get(key_id)
        if lock is None:
            lock = self._locks[key_id] = asyncio.Lock()
        return lock

    async def reserve(
        self, actor: Actor, deployment: str, est_tokens: int, est_cost: float
    ) -> Reservation:
        now = self.clock()
        res = start_reservation(actor, deployment, est_tokens, est_cost, now)
        if not res.tracked:
            return res
        assert res.key_id is not None
        reason = await admit_shielded(
            self._admit(res, now), lambda: self.release(res), self._background
        )
        if reason is not None:
            raise refuse(reason, res.key_id, res.limits, now)
        return res

    async def _admit(self, res: Reservation, now: float) -> str | None:
        assert res.key_id is not None
        async with self._lock(res.key_id):
            return await asyncio.to_thread(self._reserve_sync, res, now)

    async def settle(
        self, reservation: Reservation, actual_tokens: int, actual_cost: float
    ) -> None:
        check_amounts(actual_tokens, actual_cost)
        if not reservation.tracked or reservation.done:
            return
        reservation.done = True
        assert reservation.key_id is not None
        async with self._lock(reservation.key_id):
            await asyncio.to_thread(self._finish_sync, reservation, actual_tokens, actual_cost)

    async def release(self, reservation: Reservation) -> None:
        if not reservation.tracked or reservation.done:
            return
        reservation.done = True
        assert reservation.key_id is not None
        async with self._lock(reservation.key_id):
            await asyncio.to_thread(self._finish_sync, reservation, 0, 0.0)

    async def spent(self, key_id: str) -> float:
        def read() -> float:
            with self.store.read() as tx:
                row = tx.get(t.key_spend, key_id=key_id)
            return float(row["spent_usd"]) if row else 0.0

        return await asyncio.to_thread(read)

    async def aclose(self) -> None:
        self._locks.clear()

    # --- the transactions (worker threads) ---------------------------------------------------

    def _lock_key(self, conn: sa.Connection, key_id: str, now: float) -> float:
        """Take the key's lock row (creating it once) and return its settled spend."""
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        conn.execute(
            dialect.insert(t.key_spend)
            .values(key_id=key_id, spent_usd=0.0, updated_at=now)
            .on_conflict_do_nothing(index_elements=["key_id"])
        )
        conn.execute(
            t.key_spend.update().where(t.key_spend.c.key_id == key_id).values(updated_at=now)
        )
        spent = conn.execute(
            sa.select(t.key_spend.c.spent_usd).where(t.key_spend.c.key_id == key_id)
        ).scalar_one()
        return float(spent)

    def _reserve_sync(self, res: Reservation, now: float) -> str | None:
        """Admit ``res`` or return the reason it is refused."""
        assert res.key_id is not None
        r, w = t.limit_reservations, t.usage_windows
        with self.store.transaction() as tx:
            conn = tx.conn
            spent = self._lock_key(conn, res.key_id, now)
            conn.execute(r.delete().where(r.c.key_id == res.key_id, r.c.expires_at <= now))
            count, reserved = conn.execute(
                sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(r.c.est_cost), 0.0)).where(
                    r.c.key_id == res.key_id
                )
            ).one()
            used = dict(
                conn.execute(
                    sa.select(w.c.kind, w.c.amount).where(
                        w.c.key_id == res.key_id, w.c.window_start == res.window_start
                    )
                ).all()
            )
            reason = _refusal(res, spent, float(reserved), int(count), used)
            if reason is not None:
                return reason
            for kind, amount in (("requests", 1), ("tokens", res.est_tokens)):
                if kind in used:
                    conn.execute(
                        w.update()
                        .where(w.c.key_id == res.key_id, w.c.kind == kind)
                        .where(w.c.window_start == res.window_start)
                        .values(amount=w.c.amount + amount)
                    )
                else:
                    conn.execute(w.insert().values(key_id=res.key_id, kind=kind,
                                 window_start=res.window_start, amount=amount))  # fmt: skip
            conn.execute(
                w.delete().where(
                    w.c.key_id == res.key_id, w.c.window_start < res.window_start - WINDOW_S
                )
            )
            conn.execute(r.insert().values(id=res.id, key_id=res.key_id,
                         deployment=res.deployment[:128], window_start=res.window_start,
                         est_tokens=res.est_tokens, est_cost=res.est_cost,
                         expires_at=now + self.lease_s))  # fmt: skip
        return None

    def _finish_sync(self, res: Reservation, actual_tokens: int, actual_cost: float) -> None:
        """Drop the reservation, add the actual spend, swap the token estimate for the actual."""
        assert res.key_id is not None
        r, w, s = t.limit_reservations, t.usage_windows, t.key_spend
        with self.store.transaction() as tx:
            conn = tx.conn
            self._lock_key(conn, res.key_id, self.clock())
            held = conn.execute(r.delete().where(r.c.id == res.id)).rowcount
            if actual_cost:
                conn.execute(
                    s.update()
                    .where(s.c.key_id == res.key_id)
                    .values(spent_usd=s.c.spent_usd + actual_cost)
                )
            delta = actual_tokens - res.est_tokens
            if delta and held:  # a lapsed lease: its window is gone, nothing to correct
                conn.execute(
                    w.update()
                    .where(w.c.key_id == res.key_id, w.c.kind == "tokens")
                    .where(w.c.window_start == res.window_start)
                    .values(amount=sa.case((w.c.amount + delta < 0, 0), else_=w.c.amount + delta))
                )


def _refusal(
    res: Reservation, spent: float, reserved: float, in_flight: int, used: dict[str, int]
) -> str | None:
    lim = res.limits
    if lim.budget_usd is not None and spent + reserved + res.est_cost > lim.budget_usd + _EPSILON:
        return "budget"
    if lim.max_concurrent is not None and in_flight >= lim.max_concurrent:
        return "concurrency"
    if lim.rpm is not None and used.get("requests", 0) + 1 > lim.rpm:
        return "rpm"
    if lim.tpm is not None:
        if res.est_tokens > lim.tpm:
            return "tpm_never"
        if used.get("tokens", 0) + res.est_tokens > lim.tpm:
            return "tpm"
    return None
