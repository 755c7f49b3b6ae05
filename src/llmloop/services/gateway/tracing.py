"""The trace writer: an asynchronous, batched, bounded writer of gateway trace records.

``submit`` is a non-blocking append from the request path. Records become rows of plain values
(``TraceTable.row``) a few dozen at a time: one record at a time, each conversion ran on cold
caches between requests and cost the server several times what the same code costs in a loop
(about 10 against 2 µs here); held longer, queued objects would cost every garbage collection.
A background task hands rows over every ``flush_ms`` or as soon as ``batch_size`` rows wait.

Where they go:

- To a :class:`TraceSink`, the writer process (``trace_process.py``, the server's default).
  Handing a batch over runs on the event loop's own thread and never waits: the batch is
  pickled into a pipe, and the child's acknowledgements are collected on later ticks. No
  worker thread takes part, because each hand-off between threads costs a wait for the GIL,
  up to the 5 ms switch interval when the loop is busy: under load, a thread-based hand-over
  fell behind.
- Otherwise (``trace_writer: thread``, or after the sink died three times) to the store, from a
  worker thread, in multi-row statements on SQLite.

The queue is bounded: when it is full the oldest unwritten row is dropped and counted, so a
slow database never slows requests. ``flush`` returns once what it handed over is stored;
``aclose`` flushes everything left, so a clean shutdown loses nothing. Spans are exported
through the OpenTelemetry SDK when an exporter is configured. Nothing here decides what a trace
holds.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from llmloop.core.traces import TraceRecord
from llmloop.services.gateway.trace_table import SpanExporter, TraceRow, TraceTable
from llmloop.store.registry import Store

log = logging.getLogger("llmloop.gateway.traces")

#: Times a sink may die (it is restarted for the next batch) before the writer stops using it.
_SINK_RETRIES = 3
#: How soon the writer tries again when the sink is busy (its pipe full) and rows wait.
_BUSY_RETRY_S = 0.01
#: How long ``flush`` waits for the sink to acknowledge what it was handed.
_DRAIN_TIMEOUT_S = 120.0
#: Records that wait as they are before they become rows, together (see the module's doc).
_ROW_BATCH = 32

Batch = list[TraceRow]


@dataclass
class Acks:
    """What a sink has answered since it was last asked: batches it ``stored``, batches it
    ``failed`` to store (the writer retries them), and batches ``lost`` when it died (they may
    or may not be stored; ``gone`` says why, once per death)."""

    stored: list[Batch] = field(default_factory=list)
    failed: list[Batch] = field(default_factory=list)
    lost: list[Batch] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)

    def add(self, other: Acks) -> None:
        self.stored += other.stored
        self.failed += other.failed
        self.lost += other.lost
        self.gone += other.gone


class TraceSink(Protocol):
    """Somewhere else that stores batches (the writer process).

    ``send`` and ``collect`` are called on the event loop's thread and never block; ``open``,
    ``drain`` and ``close`` block and are called from a worker thread.
    """

    @property
    def ready(self) -> bool:
        """Whether ``send`` can be used (``open`` succeeded and the sink has not died since)."""

    def open(self) -> None:
        """Get ready (again, after a death); raise :class:`SinkGone` when it cannot."""

    def send(self, batch: Batch) -> bool:
        """Take ``batch`` without waiting, or answer False (busy: the caller keeps it)."""

    def collect(self) -> Acks:
        """The answers that arrived since the last call, without waiting."""

    def drain(self, timeout_s: float) -> Acks:
        """Wait until every batch sent is answered (or the sink is declared dead); then
        ``send`` takes the next batch."""

    def close(self) -> None:
        """Finish: everything acknowledged is stored; stop the sink."""


class SinkGone(Exception):
    """The sink is gone (its process died or stopped answering); write in this process now."""


def _take(queue: deque[TraceRow], size: int) -> Batch:
    """The first ``size`` rows of ``queue``, taken off it (usually all of it: one copy)."""
    if size == len(queue):
        batch = list(queue)
        queue.clear()
        return batch
    return [queue.popleft() for _ in range(size)]


class TraceWriter:
    def __init__(
        self,
        store: Store,
        flush_ms: int = 200,
        batch_size: int = 500,
        max_queue: int = 100_000,
        max_text: int = 4000,
        exporter: SpanExporter | None = None,
        on_flush: Callable[[int], None] | None = None,
        sink: TraceSink | None = None,
    ) -> None:
        self.store = store
        self.flush_s = flush_ms / 1000.0
        self.batch_size = batch_size
        self.max_queue = max_queue
        self.max_text = max_text
        self.exporter = exporter
        self.on_flush = on_flush
        self.sink = sink
        self.table = TraceTable(store, max_text)
        self.queue: deque[TraceRow] = deque()
        self._fresh: list[TraceRecord] = []  # submitted, not yet rows
        self.dropped = 0
        self.written = 0
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._lock = threading.Lock()  # one in-process insert at a time, whichever loop flushes
        self._sink_failures = 0

    def submit(self, record: TraceRecord) -> None:
        """Queue one record; never blocks and never raises."""
        fresh = self._fresh
        fresh.append(record)
        if self._task is None and not self._closing:
            self.start()
        if len(fresh) >= _ROW_BATCH or len(fresh) + len(self.queue) > self.max_queue:
            self._make_rows()
            if len(self.queue) >= self.batch_size and self._wake is not None:
                self._wake.set()

    @property
    def depth(self) -> int:
        """Records queued and not yet handed over."""
        return len(self.queue) + len(self._fresh)

    def _make_rows(self) -> None:
        """The records submitted since the last call join the queue as rows; beyond
        ``max_queue`` the oldest rows are dropped (and counted)."""
        fresh, self._fresh = self._fresh, []
        if not fresh:
            return
        row = self.table.row
        try:
            rows = [row(record) for record in fresh]
        except Exception:  # a record the table cannot hold must not lose the others
            rows = []
            for record in fresh:
                try:
                    rows.append(row(record))
                except Exception:
                    log.exception("trace %s cannot be stored; it is dropped", record.id)
                    self.dropped += 1
        queue = self.queue
        queue.extend(rows)
        excess = len(queue) - self.max_queue
        if excess > 0:
            for _ in range(excess):
                queue.popleft()
            self.dropped += excess

    def start(self) -> None:
        """Start the flush task on the running loop (done lazily by the first submit)."""
        if self._task is None:
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        """Hand a batch over as soon as ``batch_size`` rows wait, and the rest every ``flush_s``.

        Rows that arrive while a batch is being written wait for the next full batch or the
        next tick: writing them at once would chain small batches back to back under load
        (each a pipe write or a thread hand-off, and a commit), which cost requests more than
        the rows themselves.
        """
        assert self._wake is not None
        if self.sink is not None:  # start the writer process ahead of the first batch
            await asyncio.to_thread(self._open_sink)
        loop = asyncio.get_running_loop()
        due = loop.time() + self.flush_s
        busy = False
        while not self._closing:
            wait_s = min(due - loop.time(), _BUSY_RETRY_S if busy else self.flush_s)
            if wait_s > 0 and (busy or len(self.queue) < self.batch_size):
                try:
                    await asyncio.wait_for(self._wake.wait(), wait_s)
                except TimeoutError:
                    pass
            self._wake.clear()
            tick = loop.time() >= due
            busy = await self._hand_over(full_only=not tick) > 0
            if tick:
                due = loop.time() + self.flush_s

    async def flush(self, full_only: bool = False) -> int:
        """Write the rows queued now (only full batches with ``full_only``) and return once they
        are stored, with what was handed over before; rows that arrive meanwhile wait for the
        next call, and so do rows whose write failed. Returns how many rows were stored."""
        before = self.written
        self._make_rows()
        if self.sink is not None:  # first what the background task handed over
            await self._settle(await asyncio.to_thread(self._drain))
        pending = len(self.queue)
        threshold = self.batch_size if full_only else 1
        while min(pending, len(self.queue)) >= threshold:
            mark = self.written
            await self._hand_over(full_only, limit=pending)
            if self.sink is not None:
                await self._settle(await asyncio.to_thread(self._drain))
            if self.written == mark:
                break  # nothing could be stored: the rows wait for the next call
            pending -= self.written - mark
        if self.sink is not None:  # what the background task handed over while this waited
            await self._settle(await asyncio.to_thread(self._drain))
        return self.written - before

    async def _hand_over(self, full_only: bool, limit: int | None = None) -> int:
        """Hand the queued rows over in batches (only full ones with ``full_only``; at most
        ``limit`` rows); returns how many rows stay queued because the sink is busy or an
        in-process write failed."""
        if limit is None:
            self._make_rows()
        pending = len(self.queue) if limit is None else limit
        threshold = self.batch_size if full_only else 1
        kept = 0
        while min(pending, len(self.queue)) >= threshold:
            if self.sink is not None and not self.sink.ready:
                await self._settle(self.sink.collect())  # what died with the last one
                if self.sink is not None:
                    await asyncio.to_thread(self._open_sink)
            size = min(self.batch_size, pending, len(self.queue))
            batch = _take(self.queue, size)
            pending -= size
            if self.sink is not None:
                if self.sink.send(batch):
                    continue
                self.queue.extendleft(reversed(batch))  # busy: it waits at the front
                kept = len(batch)
                break
            if not await self._insert(batch):
                kept = len(batch)
                break
        if self.sink is not None:
            await self._settle(self.sink.collect())
        return kept

    async def _settle(self, acks: Acks) -> None:
        """Count what the sink stored; queue again what it failed; store what died with it."""
        for batch in acks.stored:
            self._written(len(batch))
        if acks.failed:
            log.warning("the trace writer process could not store %d batches; they wait for "
                        "the next flush", len(acks.failed))  # fmt: skip
            for batch in reversed(acks.failed):
                self.queue.extendleft(reversed(batch))
        if acks.gone:
            self._sink_failures += len(acks.gone)
            if self._sink_failures >= _SINK_RETRIES:
                self.sink = None
            log.warning(
                "trace writer process gone (%s); its unacknowledged batches are written in "
                "this process%s", "; ".join(acks.gone),
                ", and all that follow" if self.sink is None else "",
            )  # fmt: skip
        for batch in acks.lost:  # it may have stored them before it died: skip those
            await self._insert(batch, skip_existing=True)

    async def _insert(self, batch: Batch, skip_existing: bool = False) -> bool:
        """One batch into the store from a worker thread; when that fails (logged), the batch
        waits at the front of the queue and the answer is False."""
        try:
            await asyncio.to_thread(self._insert_now, batch, skip_existing)
        except Exception:
            log.exception("writing %d traces failed; will retry", len(batch))
            self.queue.extendleft(reversed(batch))
            await asyncio.sleep(min(1.0, self.flush_s * 5))
            return False
        return True

    def _insert_now(self, batch: Batch, skip_existing: bool) -> None:
        with self._lock:
            self.table.insert(batch, skip_existing=skip_existing)
            self._written(len(batch))
            if self.exporter is not None:
                self.exporter.export(batch)

    def _drain(self) -> Acks:
        sink = self.sink
        return sink.drain(_DRAIN_TIMEOUT_S) if sink is not None else Acks()

    def _open_sink(self) -> None:
        sink = self.sink
        if sink is not None and not sink.ready:
            try:
                sink.open()
            except SinkGone as exc:
                log.warning("trace writer process failed (%s); writing in this process", exc)
                self.sink = None

    def _written(self, n: int) -> None:
        self.written += n
        if self.on_flush is not None:
            self.on_flush(n)

    async def aclose(self) -> None:
        """Stop the task and write every queued record (a clean shutdown loses nothing)."""
        self._closing = True
        if self._task is not None:
            if self._wake is not None:
                self._wake.set()
            try:
                await self._task
            except Exception:
                pass
            self._task = None
        for _ in range(3):
            try:
                await self.flush()
                if not self.depth:
                    break
            except Exception:
                log.exception("final trace flush failed")
        if self.sink is not None:
            await asyncio.to_thread(self.sink.close)
        if self.exporter is not None:
            self.exporter.shutdown()
        if self.depth or self.dropped:
            log.warning("trace writer: %d unwritten, %d dropped", self.depth, self.dropped)
