"""The batched trace writer: batches, bounded queue, retry after a failed write, flush on close,
and OpenTelemetry span export with GenAI attribute names."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from llmloop.core.traces import TraceRecord, new_trace_id
from llmloop.services.gateway.trace_query import TraceQuery
from llmloop.services.gateway.tracing import SpanExporter, TraceWriter
from llmloop.store.registry import Store, utcnow


def _record(i: int = 0) -> TraceRecord:
    return TraceRecord(id=new_trace_id(), at=utcnow(), operation="chat", deployment="d",
                       request_model="d", input_tokens=i, output_tokens=2,
                       request_text="q" * 50, response_text="a")  # fmt: skip


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'db.sqlite'}")


async def test_batches_and_flushes_everything_on_close(store: Store) -> None:
    sizes: list[int] = []
    writer = TraceWriter(store, flush_ms=10_000, batch_size=40, max_text=10,
                         on_flush=sizes.append)  # fmt: skip
    for i in range(100):
        writer.submit(_record(i))
    await asyncio.sleep(0.05)  # the batch-size trigger wrote full batches already
    assert writer.written >= 40
    await writer.aclose()
    assert writer.written == 100 and sum(sizes) == 100 and max(sizes) <= 40
    rows = TraceQuery(store).list(limit=1000)
    assert len(rows) == 100 and all(len(r.request_text) == 10 for r in rows)


async def test_full_queue_drops_oldest_and_counts(store: Store) -> None:
    writer = TraceWriter(store, flush_ms=10_000, batch_size=1000, max_queue=5)
    records = [_record(i) for i in range(8)]
    for rec in records:
        writer.submit(rec)
    assert writer.dropped == 3 and [r.id for r in writer.queue] == [r.id for r in records[3:]]
    await writer.aclose()
    assert TraceQuery(store).count() == 5


async def test_failed_write_is_retried(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = TraceWriter(store, flush_ms=5, batch_size=10)
    real = writer._write
    calls = {"n": 0}

    def flaky(batch: list[TraceRecord]) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("database went away")
        real(batch)

    monkeypatch.setattr(writer, "_write", flaky)
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
