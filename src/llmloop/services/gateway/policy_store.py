"""Limits per API key kept in the process, backed by the database: no database on the request path.

The accounting of a key lives in this process and is authoritative here: the key's settled
spend, its fixed-window request and token counters, and its in-flight reservations (with a
lease). Reserve, settle and release are plain in-memory updates on the event loop, so they are
atomic with respect to each other: concurrent requests of one key in this process are admitted
exactly (no lock, no await between the check and the count). Keys without limits never get here.

Durability: a key's spend and current windows are loaded from the store (``key_spend``,
``usage_windows``) the first time the key is seen, and changes are written behind, as deltas,
every ``flush_s`` seconds and on :meth:`aclose` (the gateway closes it on shutdown), in one
transaction. A clean restart therefore loses nothing; a crash loses at most the last
``flush_s`` of accounting. In-flight reservations are not written (they die with the process).

Several processes on one database: each adds its deltas to the shared rows and reads the totals
back at every flush, so a process sees the others' usage within ``flush_s``, but admission is
exact only *within* a process: N processes may together overshoot a limit by what the others
admitted since their last flush. Run the gateway with ``redis_url`` set (``policy_redis.py``)
when it runs as several workers and limits must be exact across them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from llmloop.services.actors import Actor
from llmloop.services.gateway.policy import (
    DEFAULT_LEASE_S,
    WINDOW_S,
    Reservation,
    check_amounts,
    refuse,
    start_reservation,
    window_start,
)
from llmloop.store import tables as t
from llmloop.store.registry import Store

log = logging.getLogger("llmloop.gateway.limits")

#: Spend comparisons tolerate float rounding of this size (USD).
_EPSILON = 1e-9
DEFAULT_FLUSH_S = 1.0


class _Amount:
    """A counter: the store's value at the last sync, the part being written, the unwritten part."""

    __slots__ = ("base", "new", "writing")

    def __init__(self, base: float = 0.0) -> None:
        self.base = base
        self.writing = 0.0
        self.new = 0.0

    @property
    def value(self) -> float:
        return self.base + self.writing + self.new


@dataclass
class _KeyState:
    spend: _Amount
    #: (window_start, kind) -> counter; kind is "requests" or "tokens".
    windows: dict[tuple[int, str], _Amount] = field(default_factory=dict)
    #: reservation id -> (lease expiry, estimated cost), oldest first.
    inflight: dict[str, tuple[float, float]] = field(default_factory=dict)
    reserved: float = 0.0

    def window(self, ws: int, kind: str) -> _Amount:
        amount = self.windows.get((ws, kind))
        if amount is None:
            amount = self.windows[(ws, kind)] = _Amount()
        return amount

    def sweep(self, now: float) -> None:
        """Drop reservations whose lease ended (their request's process or task is gone)."""
        inflight = self.inflight
        while inflight:
            rid = next(iter(inflight))
            expires, cost = inflight[rid]
            if expires > now:
                break
            del inflight[rid]
            self.reserved -= cost
        if not inflight:
            self.reserved = 0.0  # no float drift once nothing is held

    def prune(self, ws: int) -> None:
        """Forget windows older than the previous one (and not being written)."""
        for k in [k for k, a in self.windows.items() if k[0] < ws - WINDOW_S and not a.writing]:
            if not self.windows[k].new:
                del self.windows[k]


class StoreLimitBackend:
    """A :class:`~llmloop.services.gateway.policy.LimitBackend`: in-process, persisted behind."""

    def __init__(
        self,
        store: Store,
        clock: Callable[[], float] = time.time,
        lease_s: float = DEFAULT_LEASE_S,
        flush_s: float = DEFAULT_FLUSH_S,
    ) -> None:
        if lease_s <= 0:
            raise ValueError("lease_s must be > 0")
        if flush_s <= 0:
            raise ValueError("flush_s must be > 0")
        self.store = store
        self.clock = clock
        self.lease_s = lease_s
        self.flush_s = flush_s
        self._keys: dict[str, _KeyState] = {}
        self._loading: dict[str, asyncio.Task[_KeyState]] = {}
        self._dirty: set[str] = set()
        self._flusher: asyncio.Task[None] | None = None
        self._flush_lock: asyncio.Lock | None = None
        self._closed = False

    # --- the request path ----------------------------------------------------------------------

    async def reserve(
        self, actor: Actor, deployment: str, est_tokens: int, est_cost: float
    ) -> Reservation:
        now = self.clock()
        res = start_reservation(actor, deployment, est_tokens, est_cost, now)
        if not res.tracked:
            return res
        assert res.key_id is not None
        state = self._keys.get(res.key_id)
        if state is None:
            state = await self._load(res.key_id, now)
            now = self.clock()
        reason = self._admit(state, res, now)
        if reason is not None:
            raise refuse(reason, res.key_id, res.limits, now)
        self._touch(res.key_id)
        return res

    def _admit(self, state: _KeyState, res: Reservation, now: float) -> str | None:
        """Admit ``res`` (counting it) or return why not; synchronous, so atomic on the loop."""
        if state.inflight:
            state.sweep(now)
        lim, ws = res.limits, res.window_start
        if lim.budget_usd is not None and (
            state.spend.value + state.reserved + res.est_cost > lim.budget_usd + _EPSILON
        ):
            return "budget"
        if lim.max_concurrent is not None and len(state.inflight) >= lim.max_concurrent:
            return "concurrency"
        requests, tokens = state.window(ws, "requests"), state.window(ws, "tokens")
        if lim.rpm is not None and requests.value + 1 > lim.rpm:
            return "rpm"
        if lim.tpm is not None:
            if res.est_tokens > lim.tpm:
                return "tpm_never"
            if tokens.value + res.est_tokens > lim.tpm:
                return "tpm"
        requests.new += 1
        tokens.new += res.est_tokens
        state.inflight[res.id] = (now + self.lease_s, res.est_cost)
        state.reserved += res.est_cost
        return None

    async def settle(
        self, reservation: Reservation, actual_tokens: int, actual_cost: float
    ) -> None:
        check_amounts(actual_tokens, actual_cost)
        if reservation.tracked and not reservation.done:
            reservation.done = True
            self._finish(reservation, actual_tokens, float(actual_cost))

    async def release(self, reservation: Reservation) -> None:
        if reservation.tracked and not reservation.done:
            reservation.done = True
            self._finish(reservation, 0, 0.0)

    def _finish(self, res: Reservation, actual_tokens: int, actual_cost: float) -> None:
        """Drop the reservation, add the spend, swap the token estimate for the actual."""
        assert res.key_id is not None
        state = self._keys.get(res.key_id)
        if state is None:  # admitted by a backend that was closed since: nothing held here
            return
        held = state.inflight.pop(res.id, None)
        if held is not None:
            state.reserved = state.reserved - held[1] if state.inflight else 0.0
        if actual_cost:
            state.spend.new += actual_cost
        delta = actual_tokens - res.est_tokens
        if delta and held is not None:  # a lapsed lease: its window is done with
            tokens = state.windows.get((res.window_start, "tokens"))
            if tokens is not None:
                tokens.new += max(delta, -tokens.value)
        self._touch(res.key_id)

    async def spent(self, key_id: str) -> float:
        state = self._keys.get(key_id)
        if state is not None:
            return state.spend.value

        def read() -> float:
            with self.store.read() as tx:
                row = tx.get(t.key_spend, key_id=key_id)
            return float(row["spent_usd"]) if row else 0.0

        return await asyncio.to_thread(read)

    def _touch(self, key_id: str) -> None:
        self._dirty.add(key_id)
        if self._flusher is None and not self._closed:
            self._flusher = asyncio.get_running_loop().create_task(self._run())

    # --- loading -------------------------------------------------------------------------------

    async def _load(self, key_id: str, now: float) -> _KeyState:
        """The key's state, read from the store once (concurrent first requests share the read).

        The read is shielded: a cancelled request leaves it to finish for the others.
        """
        task = self._loading.get(key_id)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._read_key(key_id, now))
            self._loading[key_id] = task
        return await asyncio.shield(task)

    async def _read_key(self, key_id: str, now: float) -> _KeyState:
        try:
            spend, windows = await asyncio.to_thread(self._read_sync, key_id, window_start(now))
            state = self._keys.get(key_id)
            if state is None:
                state = self._keys[key_id] = _KeyState(spend=_Amount(spend))
                for (ws, kind), amount in windows.items():
                    state.windows[(ws, kind)] = _Amount(amount)
            return state
        finally:
            self._loading.pop(key_id, None)

    def _read_sync(self, key_id: str, ws: int) -> tuple[float, dict[tuple[int, str], float]]:
        w = t.usage_windows
        with self.store.read() as tx:
            conn = tx.conn
            spent = conn.execute(
                sa.select(t.key_spend.c.spent_usd).where(t.key_spend.c.key_id == key_id)
            ).scalar()
            rows = conn.execute(
                sa.select(w.c.window_start, w.c.kind, w.c.amount).where(
                    w.c.key_id == key_id, w.c.window_start >= ws - WINDOW_S
                )
            ).all()
        return float(spent or 0.0), {(int(r[0]), str(r[1])): float(r[2]) for r in rows}

    # --- writing behind ------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.flush_s)
            try:
                # Shielded: a write under way finishes its bookkeeping even if aclose cancels us.
                await asyncio.shield(self.flush())
            except Exception:
                log.exception("writing key limits to the store failed; will retry")

    async def flush(self) -> None:
        """Write the changes since the last flush and read the keys' totals back (all processes)."""
        if self._flush_lock is None:
            self._flush_lock = asyncio.Lock()
        async with self._flush_lock:
            if not self._dirty:
                return
            dirty, self._dirty = self._dirty, set()
            now = self.clock()
            ws = window_start(now)
            spend: dict[str, float] = {}
            windows: list[tuple[str, int, str, float]] = []
            moving: list[_Amount] = []
            for key_id in dirty:
                state = self._keys.get(key_id)
                if state is None:
                    continue
                state.prune(ws)
                for amount in (state.spend, *state.windows.values()):
                    amount.writing, amount.new = amount.new, 0.0
                    moving.append(amount)
                spend[key_id] = state.spend.writing
                windows.extend(
                    (key_id, w_start, kind, a.writing)
                    for (w_start, kind), a in state.windows.items()
                    if a.writing
                )
            try:
                totals = await asyncio.to_thread(self._write_sync, spend, windows, now, ws)
            except BaseException:
                for amount in moving:
                    amount.new += amount.writing
                    amount.writing = 0.0
                self._dirty |= dirty
                raise
            for key_id, (spent, counts) in totals.items():
                state = self._keys.get(key_id)
                if state is None:
                    continue
                state.spend.base, state.spend.writing = spent, 0.0
                for (w_start, kind), amount in state.windows.items():
                    amount.base = counts.get((w_start, kind), amount.base + amount.writing)
                    amount.writing = 0.0

    def _write_sync(
        self,
        spend: dict[str, float],
        windows: list[tuple[str, int, str, float]],
        now: float,
        ws: int,
    ) -> dict[str, tuple[float, dict[tuple[int, str], float]]]:
        s, w = t.key_spend, t.usage_windows
        with self.store.transaction() as tx:
            conn = tx.conn
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            ins_s = dialect.insert(s)
            conn.execute(
                ins_s.on_conflict_do_update(
                    index_elements=["key_id"],
                    set_={"spent_usd": s.c.spent_usd + ins_s.excluded.spent_usd,
                          "updated_at": ins_s.excluded.updated_at},
                ),
                [{"key_id": k, "spent_usd": v, "updated_at": now} for k, v in spend.items()],
            )  # fmt: skip
            if windows:
                ins_w = dialect.insert(w)
                conn.execute(
                    ins_w.on_conflict_do_update(
                        index_elements=["key_id", "kind", "window_start"],
                        set_={"amount": sa.case(
                            (w.c.amount + ins_w.excluded.amount < 0, 0),
                            else_=w.c.amount + ins_w.excluded.amount)},
                    ),
                    [{"key_id": k, "window_start": start, "kind": kind, "amount": round(amount)}
                     for k, start, kind, amount in windows],
                )  # fmt: skip
            keys = list(spend)
            conn.execute(w.delete().where(w.c.key_id.in_(keys), w.c.window_start < ws - WINDOW_S))
            totals: dict[str, tuple[float, dict[tuple[int, str], float]]] = {
                k: (0.0, {}) for k in keys
            }
            for key_id, spent in conn.execute(
                sa.select(s.c.key_id, s.c.spent_usd).where(s.c.key_id.in_(keys))
            ):
                totals[key_id] = (float(spent), totals[key_id][1])
            for key_id, start, kind, amount in conn.execute(
                sa.select(w.c.key_id, w.c.window_start, w.c.kind, w.c.amount).where(
                    w.c.key_id.in_(keys), w.c.window_start >= ws - WINDOW_S
                )
            ):
                totals[key_id][1][(int(start), str(kind))] = float(amount)
        return totals

    async def aclose(self) -> None:
        """Stop the flush task and write everything left (a clean shutdown loses nothing)."""
        self._closed = True
        flusher, self._flusher = self._flusher, None
        if flusher is not None:
            flusher.cancel()
            try:
                await flusher
            except (asyncio.CancelledError, Exception):
                pass
        for _ in range(3):
            try:
                await self.flush()
                break
            except Exception:
                log.exception("final write of key limits failed")
        self._keys.clear()
