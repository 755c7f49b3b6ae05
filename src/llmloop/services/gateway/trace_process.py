"""The trace writer process: inserts gateway traces beside the server, not inside it.

The gateway's event loop runs on one thread, and every microsecond of Python the trace writer
runs in that process (binding parameters, the insert itself) is taken from requests through
the GIL. :class:`ProcessSink` moves that work into a child process
(``python -m llmloop.services.gateway.trace_process``): on the event loop's thread, the server
only serialises each batch of rows (tuples of plain values, under a microsecond each) into a
non-blocking pipe to the child's stdin, and reads the child's acknowledgements when they have
arrived; it never waits for the child and needs no worker thread. The child inserts each batch
in one transaction, answers, then exports the spans when an exporter is configured.

Protocol, both ways little-endian ``<II`` headers: the parent sends ``(batch id, payload
length)`` then the ``list`` of :data:`TraceRow`, marshalled when the length's top bit is set
and pickled otherwise; the child answers
``(batch id, status)`` once the batch is committed (``OK``) or its insert failed (``FAILED``:
the parent queues the batch again). At most ``max_in_flight`` batches go unanswered. The child
ignores SIGINT and SIGTERM and exits when its stdin closes, after the batch in hand, so a
server's shutdown decides when traces stop. When the child dies or stops answering, the batches
it had not answered come back to the writer as lost: it writes them in-process, skipping
records the child had stored already, and starts a new child for what follows.
"""

from __future__ import annotations

import fcntl
import logging
import marshal
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from typing import IO, Any

from llmloop.services.gateway.trace_table import SpanExporter, TraceTable
from llmloop.services.gateway.tracing import Acks, Batch, SinkGone

log = logging.getLogger("llmloop.gateway.traces")

_HEADER = struct.Struct("<II")
#: The top bit of a batch's length: its rows were written with ``marshal``, not ``pickle``.
_MARSHAL = 1 << 31
#: The pipe to the child holds this much (Linux lets any process ask for up to 1 MiB).
_PIPE_SIZE = 1 << 20
OK, FAILED, READY = 0, 1, 2
#: The child's settings travel in the environment (a database URL may hold a password, which
#: a command line would show to every user of the machine).
ENV_URL = "LLMLOOP_TRACE_SINK_URL"
ENV_EXPORTER, ENV_ENDPOINT = "LLMLOOP_TRACE_SINK_EXPORTER", "LLMLOOP_TRACE_SINK_ENDPOINT"


class ProcessSink:
    """The server's end: starts the child, hands it batches and collects its answers.

    ``send`` and ``collect`` run on the event loop's thread and never wait: the pipes are
    non-blocking, a frame the pipe cannot take at once is finished by later calls, and until
    then ``send`` answers busy. ``open``, ``drain`` and ``close`` block (worker threads); a lock
    keeps them apart from the loop's calls, which answer busy meanwhile instead of waiting.
    """

    def __init__(
        self,
        url: str,
        exporter: str = "none",
        endpoint: str = "",
        ack_timeout_s: float = 120.0,
        start_timeout_s: float = 120.0,
        max_in_flight: int = 4,
    ) -> None:
        self.env = {
            **os.environ,
            ENV_URL: url,
            ENV_EXPORTER: exporter,
            ENV_ENDPOINT: endpoint,
        }
        self.ack_timeout_s = ack_timeout_s
        self.start_timeout_s = start_timeout_s
        self.max_in_flight = max_in_flight
        self.proc: subprocess.Popen[bytes] | None = None
        self._next_id = 0
        self._lock = threading.Lock()
        self._in_flight: deque[tuple[int, Batch, float]] = deque()  # (batch id, rows, sent at)
        self._out = memoryview(b"")  # the part of the last frame the pipe has not taken yet
        self._answers = bytearray()  # answer bytes read but not yet a whole header
        self._early = Acks()  # answers read by ``send`` (its window was full), for ``collect``
        self._dead: Acks | None = None  # what died with the last child, until collected

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def ready(self) -> bool:
        return self.proc is not None

    # -- blocking: worker threads ----------------------------------------------------------

    def open(self) -> None:
        with self._lock:
            if self.proc is None:
                self._start()

    def _start(self) -> None:
        proc = subprocess.Popen(
            [sys.executable, "-m", __name__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=self.env,
            start_new_session=True,  # a Ctrl-C on the terminal is the server's to handle
        )
        assert proc.stdin is not None and proc.stdout is not None
        self.proc = proc
        try:  # a batch of 500 rows is about 150 kB: let one pipe write take it whole
            fcntl.fcntl(proc.stdin.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
        except (OSError, AttributeError):
            pass
        ready, _, _ = select.select([proc.stdout], [], [], self.start_timeout_s)
        header = os.read(proc.stdout.fileno(), _HEADER.size) if ready else b""
        if len(header) < _HEADER.size or _HEADER.unpack(header)[1] != READY:
            why = f"did not start in {self.start_timeout_s:.0f} s" if not ready else "exited"
            self._kill()
            raise SinkGone(why)
        os.set_blocking(proc.stdin.fileno(), False)
        os.set_blocking(proc.stdout.fileno(), False)

    def drain(self, timeout_s: float) -> Acks:
        """Finish the pending frame and wait for every answer; past ``timeout_s`` without one,
        the child is declared dead (killed; its batches come back as lost)."""
        with self._lock:
            acks = Acks()
            deadline = time.monotonic() + timeout_s
            while self.proc is not None and self._in_flight:
                assert self.proc.stdin is not None and self.proc.stdout is not None
                writing = [self.proc.stdin] if self._out else []
                left = deadline - time.monotonic()
                readable, writable, _ = select.select(
                    [self.proc.stdout], writing, [], max(0.0, left)
                )
                if not readable and not writable:
                    self._die(f"did not acknowledge a batch in {timeout_s:.0f} s")
                    break
                if writable:
                    self._push()
                if readable:
                    acks.add(self._read())
            acks.add(self._take_dead())
            return acks

    def close(self, timeout_s: float = 60.0) -> None:
        """Close the child's stdin and wait for it to finish (after ``drain``, it has answered
        every batch)."""
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

    # -- never blocking: the event loop's thread -------------------------------------------

    def send(self, batch: Batch) -> bool:
        if not self._lock.acquire(blocking=False):
            return False  # a worker thread drains or starts the child
        try:
            if not self.ready or (self._out and not self._push()):
                return False
            if len(self._in_flight) >= self.max_in_flight:
                self._early.add(self._read())
                if len(self._in_flight) >= self.max_in_flight:
                    return False
            payload, form = _encode(batch)
            self._next_id = (self._next_id + 1) & 0xFFFFFFFF
            self._in_flight.append((self._next_id, batch, time.monotonic()))
            self._out = memoryview(_HEADER.pack(self._next_id, len(payload) | form) + payload)
            self._push()
            return True
        finally:
            self._lock.release()

    def collect(self) -> Acks:
        if not self._lock.acquire(blocking=False):
            return Acks()
        try:
            if self._out:
                self._push()
            acks = self._read() if self.proc is not None else Acks()
            waited = time.monotonic() - self._in_flight[0][2] if self._in_flight else 0.0
            if self.ready and waited > self.ack_timeout_s:
                self._die(f"did not acknowledge a batch in {self.ack_timeout_s:.0f} s")
            acks.add(self._take_dead())
            return acks
        finally:
            self._lock.release()

    # -- with the lock held --------------------------------------------------------------

    def _push(self) -> bool:
        """Write what the pipe takes of the pending frame; True once it is all written."""
        assert self.proc is not None and self.proc.stdin is not None
        try:
            while self._out:
                self._out = self._out[os.write(self.proc.stdin.fileno(), self._out) :]
        except BlockingIOError:
            return False
        except OSError as exc:  # broken pipe: the child is gone
            self._die(f"write failed: {exc}")
            return False
        return True

    def _read(self) -> Acks:
        """The answers waiting in the pipe, matched to the batches in flight."""
        acks = Acks()
        assert self.proc is not None and self.proc.stdout is not None
        try:
            while True:
                data = os.read(self.proc.stdout.fileno(), 65536)
                if not data:
                    self._die("exited")
                    return acks
                self._answers += data
        except BlockingIOError:
            pass
        except OSError as exc:
            self._die(f"read failed: {exc}")
            return acks
        whole = len(self._answers) - len(self._answers) % _HEADER.size
        for offset in range(0, whole, _HEADER.size):
            batch_id, status = _HEADER.unpack_from(self._answers, offset)
            if not self._in_flight or self._in_flight[0][0] != batch_id:
                self._die(f"answered batch {batch_id} out of turn")
                return acks
            _, batch, _ = self._in_flight.popleft()
            (acks.stored if status == OK else acks.failed).append(batch)
        del self._answers[:whole]
        return acks

    def _die(self, why: str) -> None:
        """The child is gone: kill what is left of it; its batches in flight are lost."""
        lost = [batch for _, batch, _ in self._in_flight]
        self._in_flight.clear()
        self._out = memoryview(b"")
        self._answers.clear()
        self._kill()
        dead = self._dead or Acks()
        dead.lost += lost
        dead.gone.append(why)
        self._dead = dead

    def _take_dead(self) -> Acks:
        taken = self._early
        self._early = Acks()
        if self._dead is not None:
            taken.add(self._dead)
            self._dead = None
        return taken

    def _kill(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            for pipe in (self.proc.stdin, self.proc.stdout):
                if pipe is not None:
                    pipe.close()
            self.proc = None


def _encode(batch: Batch) -> tuple[bytes, int]:
    """A batch as bytes, and the flag that says how: rows of plain values (all rows
    ``TraceTable.row`` makes) go through ``marshal``, faster than ``pickle`` both ways for them;
    a row that holds another object (a ``str`` subclass, say) sends its batch through
    ``pickle``."""
    try:
        return marshal.dumps(batch), _MARSHAL
    except ValueError:
        return pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL), 0


def _serve(inp: IO[bytes], out: IO[bytes], table: TraceTable, exporter: Any) -> None:
    out.write(_HEADER.pack(0, READY))
    out.flush()
    while True:
        header = inp.read(_HEADER.size)
        if len(header) < _HEADER.size:
            return  # stdin closed: the server is done
        batch_id, size = _HEADER.unpack(header)
        form, size = size & _MARSHAL, size & ~_MARSHAL
        payload = inp.read(size)
        if len(payload) < size:
            return
        rows = marshal.loads(payload) if form else pickle.loads(payload)
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
