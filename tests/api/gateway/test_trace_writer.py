"""The batched trace writer: batches, bounded queue, retry after a failed write, flush on close,
and OpenTelemetry span export with GenAI attribute names."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import itertools
import os
import pickle
import signal
import struct
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from llmloop.core.traces import TraceRecord, new_trace_id
from llmloop.services.gateway.trace_process import ProcessSink, _encode, _serve
from llmloop.services.gateway.trace_query import TraceQuery
from llmloop.services.gateway.trace_table import (
    SpanExporter,
    TraceRow,
    TraceTable,
    _chunks,
    epoch_us,
    from_epoch_us,
    sqlite_times,
)
from llmloop.services.gateway.tracing import Acks, Batch, SinkGone, TraceWriter
from llmloop.store import tables as t
from llmloop.store.registry import Store, utcnow


def _record(i: int = 0) -> TraceRecord:
    return TraceRecord(
        id=new_trace_id(),
        at=utcnow(),
        operation="chat",
        deployment="d",
        request_model="d",
        input_tokens=i,
        output_tokens=2,
        request_text="q" * 50,
        response_text="a",
    )


class _Name(str):
    """A value ``marshal`` cannot write (only exact ``str``), ``pickle`` can."""


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'db.sqlite'}")


async def test_batches_and_flushes_everything_on_close(store: Store) -> None:
    sizes: list[int] = []
    writer = TraceWriter(store, flush_ms=10_000, batch_size=40, max_text=10, on_flush=sizes.append)
    for i in range(100):
        writer.submit(_record(i))
    await asyncio.sleep(0.05)  # the batch-size trigger wrote full batches already
    assert writer.written >= 40
    await writer.aclose()
    assert writer.written == 100 and sum(sizes) == 100 and max(sizes) <= 40
    rows = TraceQuery(store).list(limit=1000)
    assert len(rows) == 100 and all(len(r.request_text) == 10 for r in rows)


async def test_under_steady_load_batches_stay_full(store: Store) -> None:
    """Rows that arrive while a batch is written wait for a full batch or the next tick: a
    slow sink must not turn a steady stream into a chain of small batches."""

    class SlowSink:
        """Takes a batch, then answers busy for 10 ms (its pipe is full)."""

        def __init__(self) -> None:
            self.sizes: list[int] = []
            self.acks = Acks()
            self.busy_until = 0.0
            self.ready = True

        def open(self) -> None: ...

        def send(self, batch: Batch) -> bool:
            if time.monotonic() < self.busy_until:
                return False
            self.sizes.append(len(batch))
            self.acks.stored.append(batch)
            self.busy_until = time.monotonic() + 0.01
            return True

        def collect(self) -> Acks:
            acks, self.acks = self.acks, Acks()
            return acks

        def drain(self, timeout_s: float) -> Acks:
            time.sleep(max(0.0, self.busy_until - time.monotonic()))  # then it takes more
            return self.collect()

        def close(self) -> None: ...

    sink = SlowSink()
    writer = TraceWriter(store, flush_ms=200, batch_size=100, sink=sink)
    loop = asyncio.get_running_loop()
    end, submitted = loop.time() + 1.0, 0
    while loop.time() < end:
        for _ in range(3):
            writer.submit(_record())
        submitted += 3
        await asyncio.sleep(0.001)
    await writer.aclose()
    assert sum(sink.sizes) == submitted
    # full batches, plus at most one partial batch per 200 ms tick and the final flush
    assert len(sink.sizes) <= submitted // 100 + 1.0 / 0.2 + 2, sink.sizes
    assert sum(1 for n in sink.sizes if n < 100) <= 1.0 / 0.2 + 2


async def test_full_queue_drops_oldest_and_counts(store: Store) -> None:
    writer = TraceWriter(store, flush_ms=10_000, batch_size=1000, max_queue=5)
    records = [_record(i) for i in range(8)]
    for rec in records:
        writer.submit(rec)
    assert writer.dropped == 3 and [r[0] for r in writer.queue] == [r.id for r in records[3:]]
    await writer.aclose()
    assert TraceQuery(store).count() == 5


async def test_a_few_records_are_written_on_the_next_tick(store: Store) -> None:
    """Records become rows a few dozen at a time; fewer than that still reach the store within
    a flush interval, and the queue depth counts them meanwhile."""
    writer = TraceWriter(store, flush_ms=20, batch_size=500)
    for i in range(3):
        writer.submit(_record(i))
    assert writer.depth == 3
    for _ in range(200):
        if writer.written == 3:
            break
        await asyncio.sleep(0.01)
    assert writer.written == 3 and writer.depth == 0
    assert TraceQuery(store).count() == 3
    await writer.aclose()


async def test_a_record_that_cannot_be_stored_does_not_take_others_with_it(
    store: Store,
) -> None:
    writer = TraceWriter(store, flush_ms=10_000, batch_size=1000)
    good = [_record(i) for i in range(40)]
    bad = dataclasses.replace(_record(), request_text=None)  # type: ignore[arg-type]
    for rec in [*good[:20], bad, *good[20:]]:
        writer.submit(rec)
    await writer.aclose()
    assert writer.dropped == 1 and writer.written == 40
    assert {r.id for r in TraceQuery(store).list(limit=100)} == {r.id for r in good}


async def test_failed_write_is_retried(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = TraceWriter(store, flush_ms=5, batch_size=10)
    real = writer._insert_now
    calls = {"n": 0}

    def flaky(batch: list[TraceRow], skip_existing: bool) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("database went away")
        real(batch, skip_existing)

    monkeypatch.setattr(writer, "_insert_now", flaky)
    writer.submit(_record())
    await asyncio.sleep(0.2)
    await writer.aclose()
    assert calls["n"] >= 2 and TraceQuery(store).count() == 1


async def test_console_span_export_uses_gen_ai_names(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    writer = TraceWriter(store, flush_ms=10_000, exporter=SpanExporter("console"))
    writer.submit(_record(7))
    await writer.aclose()
    out = capsys.readouterr().out
    assert '"gen_ai.request.model": "d"' in out and '"gen_ai.usage.input_tokens": 7' in out


# -- the writer process (the server's default) ---------------------------------------------


async def test_writer_process_stores_every_batch_and_exits_on_close(store: Store) -> None:
    sink = ProcessSink(store.url)
    sizes: list[int] = []
    writer = TraceWriter(
        store, flush_ms=20, batch_size=50, max_text=10, sink=sink, on_flush=sizes.append
    )
    records = [_record(i) for i in range(230)]
    for rec in records:
        writer.submit(rec)
    await asyncio.sleep(0.1)
    child = sink.proc
    assert child is not None and child.pid != os.getpid()
    await writer.aclose()
    assert child.poll() == 0 and sink.proc is None  # stdin closed: the child finished and left
    assert writer.written == 230 and sum(sizes) == 230 and max(sizes) <= 50
    stored = TraceQuery(store).list(limit=1000)
    assert sorted(r.id for r in stored) == sorted(r.id for r in records)
    one = TraceQuery(store).get(records[7].id)
    assert one is not None and one.input_tokens == 7 and one.request_text == "q" * 10
    assert one.attributes["gen_ai.usage.input_tokens"] == 7


async def test_writer_process_killed_falls_back_without_loss(store: Store) -> None:
    sink = ProcessSink(store.url)
    writer = TraceWriter(store, flush_ms=10, batch_size=20, sink=sink)
    for i in range(40):
        writer.submit(_record(i))
    await asyncio.sleep(0.05)
    while writer.written < 40:  # the child starts, then takes both batches
        await asyncio.sleep(0.05)
    assert sink.proc is not None
    os.kill(sink.proc.pid, signal.SIGKILL)
    for i in range(40, 100):
        writer.submit(_record(i))
    await writer.aclose()
    assert writer.sink is sink  # a new child took the batches that followed
    assert TraceQuery(store).count() == 100 and writer.written == 100


async def test_a_batch_the_dead_process_had_stored_is_not_written_twice(store: Store) -> None:
    table = TraceTable(store, 4000)

    class DiesAfterCommit:
        """Stores each batch, then dies before it can acknowledge it."""

        calls = 0
        ready = False
        acks = Acks()

        def open(self) -> None:
            self.ready = True

        def send(self, batch: Batch) -> bool:
            self.calls += 1
            table.insert(batch)
            self.acks.lost.append(batch)
            self.acks.gone.append("killed before the acknowledgement")
            self.ready = False
            return True

        def collect(self) -> Acks:
            acks, self.acks = self.acks, Acks()
            return acks

        def drain(self, timeout_s: float) -> Acks:
            return self.collect()

        def close(self) -> None:  # pragma: no cover - never reached: the writer gave up on it
            raise AssertionError

    sink = DiesAfterCommit()
    writer = TraceWriter(store, flush_ms=10_000, batch_size=10, sink=sink)
    for i in range(50):
        writer.submit(_record(i))
    await writer.aclose()
    assert TraceQuery(store).count() == 50 and writer.written == 50
    assert sink.calls == 3 and writer.sink is None  # three deaths, then this process writes


def test_child_answers_failed_for_a_batch_it_cannot_store(store: Store) -> None:
    class Broken:
        def insert(self, batch: list[TraceRecord], skip_existing: bool = False) -> int:
            raise RuntimeError("disk full")

    table = TraceTable(store, 4000)
    payload = pickle.dumps([table.row(_record(i)) for i in range(3)])
    inp = io.BytesIO(struct.pack("<II", 9, len(payload)) + payload)
    out = io.BytesIO()
    _serve(inp, out, Broken(), None)  # type: ignore[arg-type]
    assert struct.unpack("<II", out.getvalue()[:8])[1] == 2  # READY first
    assert struct.unpack("<II", out.getvalue()[8:]) == (9, 1)  # batch 9: FAILED


def test_child_reads_marshalled_and_pickled_batches(store: Store) -> None:
    """Rows are plain values on every database (the time as microseconds) and travel
    marshalled; a row that holds another object (a ``str`` subclass) travels pickled."""

    class Keeps:
        def __init__(self) -> None:
            self.batches: list[list[TraceRow]] = []

        def insert(self, batch: list[TraceRow], skip_existing: bool = False) -> int:
            self.batches.append(batch)
            return len(batch)

    plain = [TraceTable(store, 4000).row(_record(i)) for i in range(3)]
    generic = TraceTable(store, 4000)
    generic.sqlite = False
    generic_rows = [generic.row(_record(i)) for i in range(2)]
    odd = [TraceTable(store, 4000).row(dataclasses.replace(_record(), deployment=_Name("d")))]
    frames = b""
    for batch_id, batch in enumerate((plain, generic_rows, odd), start=1):
        payload, form = _encode(batch)
        frames += struct.pack("<II", batch_id, len(payload) | form) + payload
    assert _encode(plain)[1] and _encode(generic_rows)[1] and not _encode(odd)[1]
    kept, out = Keeps(), io.BytesIO()
    _serve(io.BytesIO(frames), out, kept, None)  # type: ignore[arg-type]
    assert kept.batches == [plain, generic_rows, odd]
    assert struct.unpack("<IIIIII", out.getvalue()[8:]) == (1, 0, 2, 0, 3, 0)  # all stored


async def test_writer_process_exports_spans_to_stderr_not_its_answers(
    store: Store, capfd: pytest.CaptureFixture[str]
) -> None:
    sink = ProcessSink(store.url, exporter="console")
    writer = TraceWriter(store, flush_ms=10_000, sink=sink)
    writer.submit(_record(5))
    await writer.aclose()
    assert TraceQuery(store).count() == 1  # the protocol on stdout stayed intact
    err = capfd.readouterr().err
    assert '"gen_ai.usage.input_tokens": 5' in err


def test_a_child_that_never_starts_is_reported_as_gone(store: Store) -> None:
    sink = ProcessSink("sqlite:////nonexistent/dir/db.sqlite", start_timeout_s=60)
    with pytest.raises(SinkGone):
        sink.open()
    assert sink.proc is None and not sink.ready


@pytest.mark.parametrize("mode", ["process", "thread"])
def test_the_setting_chooses_where_traces_are_written(tmp_path: Path, mode: str) -> None:
    from llmloop.config import load_settings
    from llmloop.services.container import Container

    container = Container(load_settings({"home": str(tmp_path), "trace_writer": mode}, env={}))
    try:
        sink = container.gateway.writer.sink
        assert isinstance(sink, ProcessSink) if mode == "process" else sink is None
    finally:
        container.close()


def test_sqlite_bulk_rows_are_what_sqlalchemy_would_store(store: Store) -> None:
    records = [
        TraceRecord(
            id=new_trace_id(),
            at=utcnow(),
            operation="chat",
            deployment="d",
            user="bob",
            stream=True,
            ttft_ms=1.5,
            cache_hit=True,
            finish_reason="stop",
            guard_verdicts=[{"guard": "pii", "action": "block", "score": 0.9}],
            request_text="é" * 30,
            response_text="ok",
            extra={"x": 10**30, "y": [1]},
        ),
        TraceRecord(
            id=new_trace_id(),
            at=utcnow().replace(microsecond=0),
            operation="chat",
            user="",
            guard_verdicts=[],
            parent_id="tr_parent",
            kind="shadow",
        ),
        TraceRecord(id=new_trace_id(), at=utcnow(), operation="embeddings"),
    ]
    bulk, generic = TraceTable(store, max_text=20), TraceTable(store, max_text=20)
    assert bulk._bulk is not None
    generic._bulk, generic.sqlite = None, False  # the SQLAlchemy path, from datetime values
    # Batches in which a column holds its default in every row leave it out of the insert:
    # the last record alone has nothing but defaults, the first two together have none.
    bulk.insert([bulk.row(r) for r in records[:2]])
    bulk.insert([bulk.row(records[2])])
    twins = [dataclasses.replace(r, id=r.id + "-twin") for r in records]
    generic.insert([generic.row(r) for r in twins])
    quoted = ", ".join(f'quote("{c.name}")' for c in t.traces.columns)  # types show: 0 vs 0.0
    with store.engine.connect() as conn:
        raw = {r[0]: r[1:] for r in conn.exec_driver_sql(f"SELECT {quoted} FROM traces")}
    for rec in records:
        assert raw[f"'{rec.id}'"] == raw[f"'{rec.id}-twin'"]
    read = {r.id: r for r in TraceQuery(store).list(limit=10)}
    assert read[records[0].id].guard_verdicts == records[0].guard_verdicts
    assert read[records[0].id].attributes["x"] == 10**30
    assert read[records[1].id].at == records[1].at


def test_large_mixed_batches_store_what_sqlalchemy_would(store: Store) -> None:
    """Batches of every size (chunks of powers of two) where columns are shared by all rows of
    a chunk, by some, or by none: the bulk path binds a shared value once and names it from
    every row, and stores exactly what SQLAlchemy stores row by row."""
    start = utcnow().replace(microsecond=999_990)  # a second boundary within a batch
    records = [
        TraceRecord(
            id=new_trace_id(),
            at=start + timedelta(microseconds=i),
            operation="chat" if i < 250 else "embeddings",
            deployment=("a", "b")[i // 100 % 2],
            request_model="m",
            key_id="key_1",
            user="u" if i == 130 else None,
            status="error" if i % 97 == 0 else "ok",
            http_status=500 if i % 97 == 0 else 200,
            latency_ms=float(i % 3),
            input_tokens=4,
            output_tokens=i % 2,
            cost=0.0 if i % 50 else 0.5,
            finish_reason="stop",
            request_text=f"user: q{i % 7}",
            response_text="same",
            extra={} if i % 60 else {"i": i},
        )
        for i in range(301)
    ]
    bulk, generic = TraceTable(store, max_text=4000), TraceTable(store, max_text=4000)
    generic._bulk, generic.sqlite = None, False  # the SQLAlchemy path, from datetime values
    for lo, hi in ((0, 1), (1, 4), (4, 133), (133, 301)):
        assert bulk.insert([bulk.row(r) for r in records[lo:hi]]) == hi - lo
    twins = [dataclasses.replace(r, id=r.id + "-twin") for r in records]
    assert generic.insert([generic.row(r) for r in twins]) == 301
    quoted = ", ".join(f'quote("{c.name}")' for c in t.traces.columns)
    with store.engine.connect() as conn:
        raw = {r[0]: r[1:] for r in conn.exec_driver_sql(f"SELECT {quoted} FROM traces")}
    for rec in records:
        assert raw[f"'{rec.id}'"] == raw[f"'{rec.id}-twin'"], rec
    assert TraceQuery(store).get(records[5].id).at == records[5].at


def test_chunks_are_powers_of_two_that_cover_the_batch() -> None:
    """Each chunk size is one of a few statements, compiled once: never an odd size."""
    sizes = {2**k for k in range(8)}
    for n in (1, 2, 3, 127, 128, 129, 300, 437, 500):
        bounds = _chunks(n)
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
        assert {hi - lo for lo, hi in bounds} <= sizes


def test_times_are_stored_as_sqlalchemy_writes_them() -> None:
    """``epoch_us`` (the server, per request) then ``sqlite_times`` (the writer) give the text
    SQLAlchemy stores for a DATETIME on SQLite."""
    times = [
        datetime(2026, 12, 3, 10, 24, 37, 941420, tzinfo=UTC),
        datetime(2026, 12, 3, 10, 24, 37, tzinfo=UTC),
        datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(1969, 7, 20, 20, 17, 40, 5, tzinfo=UTC),  # before the epoch
    ]
    micros = [epoch_us(at) for at in times]
    assert [from_epoch_us(m) for m in micros] == times
    assert sqlite_times(micros) == [at.isoformat(" ", "microseconds")[:26] for at in times]


def test_a_row_only_cuts_what_is_too_long(store: Store) -> None:
    table = TraceTable(store, max_text=5)
    rec = dataclasses.replace(
        _record(), request_text="abcdefgh", response_text="abc", user="u" * 300, target="t" * 300
    )
    row = dict(zip([c.name for c in t.traces.columns], table.row(rec), strict=True))
    assert row["request_text"] == "abcde" and row["response_text"] == "abc"
    assert row["user"] == "u" * 256 and row["target"] == "t" * 256
    assert row["attributes"] == "{}" and row["guard_verdicts"] == "null"
    assert row["at"] == epoch_us(rec.at)
    rec.extra, rec.guard_verdicts, rec.user = {"k": 10**30}, [{"guard": "g"}], ""
    row = dict(zip([c.name for c in t.traces.columns], table.row(rec), strict=True))
    assert row["attributes"] == '{"k": 1000000000000000000000000000000}'
    assert row["guard_verdicts"] == '[{"guard": "g"}]' and row["user"] is None


# -- the pipe to the writer process: the event loop never waits for it ----------------------


def test_a_batch_larger_than_the_pipe_is_finished_by_later_calls(store: Store) -> None:
    table = TraceTable(store, max_text=4000)
    texts = [f"{i:04d}" + "x" * 3996 for i in range(600)]  # distinct: pickle shares none
    big = [table.row(dataclasses.replace(_record(i), request_text=texts[i])) for i in range(600)]
    small = [table.row(_record(i)) for i in range(5)]
    sink = ProcessSink(store.url)
    sink.open()
    assert sink.proc is not None
    os.kill(sink.proc.pid, signal.SIGSTOP)  # it reads nothing until told to go on
    try:
        assert sink.send(big)  # taken: 2.4 MB, more than the pipe holds, so part of it waits
        assert not sink.send(small)  # busy while the rest of the frame is pending
        os.kill(sink.proc.pid, signal.SIGCONT)
        acks = sink.drain(60)
        assert [len(b) for b in acks.stored] == [600] and not acks.gone
        assert sink.send(small) and [len(b) for b in sink.drain(60).stored] == [5]
    finally:
        sink.close()
    assert TraceQuery(store).count() == 605


def test_a_stalled_child_fills_the_window_then_is_declared_dead(store: Store) -> None:
    table = TraceTable(store, max_text=4000)
    sink = ProcessSink(store.url, ack_timeout_s=0.5, max_in_flight=2)
    sink.open()
    assert sink.proc is not None
    stalled = sink.proc
    os.kill(stalled.pid, signal.SIGSTOP)
    try:
        batches = [[table.row(_record(i))] for i in range(3)]
        assert sink.send(batches[0]) and sink.send(batches[1])
        assert not sink.send(batches[2])  # two unanswered: busy, at once, never waiting
        acks = sink.collect()
        assert not (acks.stored or acks.lost or acks.gone)
        time.sleep(0.6)
        acks = sink.collect()  # past the timeout: killed, its batches come back as lost
        assert acks.lost == batches[:2] and len(acks.gone) == 1 and not sink.ready
        assert stalled.poll() is not None
    finally:
        if stalled.poll() is None:
            stalled.kill()
        sink.close()


async def test_the_writer_stores_what_a_stalled_child_held(store: Store) -> None:
    sink = ProcessSink(store.url, ack_timeout_s=0.3)
    writer = TraceWriter(store, flush_ms=20, batch_size=10, sink=sink)
    writer.submit(_record())
    while writer.written < 1:  # the first child is up and answering
        await asyncio.sleep(0.02)
    assert sink.proc is not None
    first = sink.proc
    os.kill(first.pid, signal.SIGSTOP)
    for i in range(30):
        writer.submit(_record(i))
    while writer.written < 31:  # lost after the timeout, then written here or by a new child
        await asyncio.sleep(0.05)
    assert first.poll() is not None and sink.proc is not first
    for i in range(10):
        writer.submit(_record(i))
    await writer.aclose()
    assert TraceQuery(store).count() == 41 and writer.written == 41 and writer.sink is sink


async def test_flush_waits_for_what_the_background_task_handed_over_meanwhile(
    store: Store,
) -> None:
    """While ``flush`` waits for the sink, the background task may hand the queue over itself:
    ``flush`` still returns only once those rows are stored (the OTLP log merge relies on it).
    """

    class SlowSink:
        """Answers only when drained, after a while (a busy writer process)."""

        ready = True

        def __init__(self) -> None:
            self.in_flight: list[Batch] = []

        def open(self) -> None: ...

        def send(self, batch: Batch) -> bool:
            self.in_flight.append(batch)
            return True

        def collect(self) -> Acks:
            return Acks()

        def drain(self, timeout_s: float) -> Acks:
            waited = list(self.in_flight)  # what a real drain waits for: sent before it began
            time.sleep(0.2)  # the background task ticks meanwhile and hands the queue over
            self.in_flight = self.in_flight[len(waited) :]
            return Acks(stored=waited)

        def close(self) -> None: ...

    sink = SlowSink()
    writer = TraceWriter(store, flush_ms=5, batch_size=10, sink=sink)
    for i in range(25):
        writer.submit(_record(i))
    await asyncio.sleep(0)  # the background task starts
    assert await writer.flush() == 25
    assert writer.written == 25 and not sink.in_flight
    await writer.aclose()


async def test_a_batch_the_process_could_not_store_is_queued_again(store: Store) -> None:
    class FailsOnce:
        ready = True

        def __init__(self) -> None:
            self.acks = Acks()
            self.sent: list[int] = []

        def open(self) -> None: ...

        def send(self, batch: Batch) -> bool:
            self.sent.append(len(batch))
            (self.acks.failed if len(self.sent) == 1 else self.acks.stored).append(batch)
            return True

        def collect(self) -> Acks:
            acks, self.acks = self.acks, Acks()
            return acks

        def drain(self, timeout_s: float) -> Acks:
            return self.collect()

        def close(self) -> None: ...

    sink = FailsOnce()
    writer = TraceWriter(store, flush_ms=10_000, batch_size=10, sink=sink)
    for i in range(10):
        writer.submit(_record(i))
    await writer.aclose()
    assert sink.sent == [10, 10] and writer.written == 10 and not writer.queue


def test_writing_a_batch_again_stores_each_trace_once(store: Store) -> None:
    table = TraceTable(store, max_text=4000)
    rows = [table.row(_record(i)) for i in range(4)]
    assert table.insert(rows[:2]) == 2
    assert table.insert(rows) == 2  # the first two were stored already: left out, no error
    assert TraceQuery(store).count() == 4
