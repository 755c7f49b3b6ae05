"""The trace writer process: inserts gateway traces beside the server, not inside it.

The gateway's event loop runs on one thread, and every microsecond of Python the trace writer
runs in that process (building rows, serialising attributes, binding parameters) is taken from
requests through the GIL, with a hand-off between threads on top. :class:`ProcessSink` moves
that work into a child process (``python -m llmloop.services.gateway.trace_process``): the
server only pickles each batch of rows (tuples of plain values, about a microsecond each) and
writes them to the child's stdin; the child inserts them in one transaction, exports the spans
when an exporter is configured, and answers with an acknowledgement.

Protocol, both ways little-endian ``<II`` headers: the parent sends ``(batch id, payload
length)`` then the pickled ``list`` of :data:`TraceRow`; the child answers
``(batch id, status)`` once the batch is committed (``OK``) or its insert failed (``FAILED``:
the parent keeps the batch and retries, as it does in-process). The child ignores SIGINT and
SIGTERM and exits when its stdin closes, after the batch in hand, so a server's shutdown
decides when traces stop. When the child dies or stops answering, :class:`SinkGone` makes the
writer fall back to writing in-process, skipping records the child had stored already.
"""

from __future__ import annotations

import logging
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
from typing import IO, Any

from llmloop.services.gateway.tracing import SinkGone, SpanExporter, TraceRow, TraceTable

log = logging.getLogger("llmloop.gateway.traces")

_HEADER = struct.Struct("<II")
OK, FAILED, READY = 0, 1, 2
#: The child's settings travel in the environment (a database URL may hold a password, which
#: a command line would show to every user of the machine).
ENV_URL = "LLMLOOP_TRACE_SINK_URL"
ENV_EXPORTER, ENV_ENDPOINT = "LLMLOOP_TRACE_SINK_EXPORTER", "LLMLOOP_TRACE_SINK_ENDPOINT"


class ProcessSink:
    """The server's end: starts the child on first use and hands it batches (blocking calls,
    made from the trace writer's worker thread)."""

    def __init__(
        self,
        url: str,
        exporter: str = "none",
        endpoint: str = "",
        ack_timeout_s: float = 120.0,
        start_timeout_s: float = 120.0,
    ) -> None:
        self.env = {
            **os.environ,
            ENV_URL: url,
            ENV_EXPORTER: exporter,
            ENV_ENDPOINT: endpoint,
        }
        self.ack_timeout_s = ack_timeout_s
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None
        self._next_id = 0
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def _start(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", __name__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=self.env,
            start_new_session=True,  # a Ctrl-C on the terminal is the server's to handle
        )
        self.proc = proc
        _, status = self._answer(self.start_timeout_s, "start")
        if status != READY:
            raise self._gone(f"unexpected start answer {status}")
        return proc

    def open(self) -> None:
        with self._lock:
            self._running()

    def _running(self) -> subprocess.Popen[bytes]:
        if self.proc is not None and self.proc.poll() is None:
            return self.proc
        self._kill()
        return self._start()

    def write(self, batch: list[TraceRow]) -> None:
        payload = pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)
        with self._lock:
            proc = self._running()
            assert proc.stdin is not None
            self._next_id = (self._next_id + 1) & 0xFFFFFFFF
            try:
                proc.stdin.write(_HEADER.pack(self._next_id, len(payload)))
                proc.stdin.write(payload)
                proc.stdin.flush()
            except OSError as exc:  # broken pipe: the child is gone
                raise self._gone(f"write failed: {exc}") from None
            batch_id, status = self._answer(self.ack_timeout_s, "acknowledge a batch")
        if batch_id != self._next_id:
            raise self._gone(f"answered batch {batch_id}, expected {self._next_id}")
        if status != OK:
            raise RuntimeError("the trace writer process could not store a batch (see its log)")

    def _answer(self, timeout_s: float, what: str) -> tuple[int, int]:
        assert self.proc is not None and self.proc.stdout is not None
        out = self.proc.stdout
        ready, _, _ = select.select([out], [], [], timeout_s)
        data = out.read(_HEADER.size) if ready else b""
        if len(data) < _HEADER.size:
            why = f"did not {what} in {timeout_s:.0f} s" if not ready else "exited"
            raise self._gone(why)
        batch_id, status = _HEADER.unpack(data)
        return batch_id, status

    def _gone(self, why: str) -> SinkGone:
        self._kill()
        return SinkGone(why)

    def _kill(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            for pipe in (self.proc.stdin, self.proc.stdout):
                if pipe is not None:
                    pipe.close()
            self.proc = None

    def close(self, timeout_s: float = 60.0) -> None:
        """Close the child's stdin and wait for it to finish (it has answered every batch)."""
        with self._lock:
            proc, self.proc = self.proc, None
            if proc is None:
                return
            try:
                if proc.stdin is not None:
                    proc.stdin.close()
                proc.wait(timeout_s)
            except (OSError, subprocess.TimeoutExpired):
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def _serve(inp: IO[bytes], out: IO[bytes], table: TraceTable, exporter: Any) -> None:
    out.write(_HEADER.pack(0, READY))
    out.flush()
    while True:
        header = inp.read(_HEADER.size)
        if len(header) < _HEADER.size:
            return  # stdin closed: the server is done
        batch_id, size = _HEADER.unpack(header)
        payload = inp.read(size)
        if len(payload) < size:
            return
        rows = pickle.loads(payload)
        try:
            table.insert(rows)
            status = OK
        except Exception:
            log.exception("writing %d traces failed", len(rows))
            status = FAILED
        out.write(_HEADER.pack(batch_id, status))
        out.flush()
        if status == OK and exporter is not None:
            exporter.export(rows)


def main() -> int:
    """The child: read batches from stdin until it closes, store them, acknowledge each."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s trace-writer %(message)s")
    from llmloop.store.registry import Store

    kind = os.environ.get(ENV_EXPORTER, "none")
    exporter = SpanExporter(kind, os.environ.get(ENV_ENDPOINT, "")) if kind != "none" else None
    # The protocol keeps the real stdout; anything printed (a console span exporter) goes to
    # stderr instead of corrupting it.
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    store = Store(os.environ[ENV_URL], auto_create_empty=False)
    # Rows arrive cut already; this process has one thread, with no one to share the GIL with.
    table = TraceTable(store, max_text=0, share_gil=False)
    try:
        _serve(sys.stdin.buffer, answers, table, exporter)
    except BrokenPipeError:
        pass  # the server is gone (killed): nobody is left to answer
    finally:
        if exporter is not None:
            exporter.shutdown()
        store.engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
