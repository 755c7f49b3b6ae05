"""The hf engine's scheduler: one worker thread that owns the model and runs the decode loop.

Each turn of the loop takes new work from a thread-safe inbox (rows to generate, calls such as
embedding or adapter loading), admits waiting rows into the running ``DecodeBatch`` up to
``max_batch_size`` (prefill + cache merge), runs one decode step for all rows, adds the
``logit_bias`` of rows that carry one, masks the logits of rows that carry a grammar (structured
output) and feeds the grammars their tokens, turns the sampled tokens into text deltas, finishes
rows (stop, length, stop sequence, grammar complete, cancelled) and posts what it produced to
each request's asyncio queue with one ``call_soon_threadsafe`` per event loop per step. Log-probs
are those of the distribution the token was drawn from: for a biased or constrained row, the
biased and masked one (forbidden tokens never appear). It does not parse requests or build
prompts: ``hf.py`` does that.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llmloop.core.chat import TokenLogprob, Usage
from llmloop.engines.detokenize import decode_deltas, make_batch_decoder
from llmloop.engines.hf_batch import (
    DecodeBatch,
    Row,
    TokenScore,
    biased_indices,
    constrained_indices,
    floored_indices,
)
from llmloop.engines.sampling import BatchSampler, gather_logprobs
from llmloop.engines.token_bytes import TokenBytes
from llmloop.errors import OverloadedError, UpstreamError


@dataclass
class RowOutput:
    """What a row produced in one step: a text delta, or the end (finish reason and usage)."""

    text: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None
    logprobs: list[TokenLogprob] | None = None
    prompt_logprobs: list[TokenLogprob] | None = None
    error: Exception | None = None


def _post(items: list[tuple[asyncio.Queue[RowOutput], RowOutput]]) -> None:
    for queue, item in items:
        queue.put_nowait(item)


class Scheduler:
    """The worker thread and its continuous-batching loop."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        max_batch_size: int,
        max_queue: int,
        eos_ids: set[int],
        pad_id: int,
        vocab_size: int,
        use_adapters: bool,
    ) -> None:
        self.tokenizer = tokenizer
        self._bytes = TokenBytes(tokenizer)
        self.max_batch_size = max_batch_size
        self.max_queue = max_queue
        self.eos_ids = eos_ids
        self._eos: Any = None  # eos_ids as a tensor, made on first use
        self.pad_id = pad_id
        self.batch = DecodeBatch(model, vocab_size, use_adapters)
        self._decode = make_batch_decoder(tokenizer)
        self._decode_special = make_batch_decoder(tokenizer, skip_special_tokens=False)
        self._inbox: deque[Row | Callable[[], Any] | None] = deque()
        self._waiting: deque[Row] = deque()
        self._wake = threading.Condition()
        self._outbox: dict[asyncio.AbstractEventLoop, list[Any]] = {}
        self._thread = threading.Thread(target=self._run, name="llmloop-hf-engine", daemon=True)

    # -- called from the event loop ---------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def submit(self, row: Row) -> None:
        """Queue ``row``; refuse it when ``max_queue`` rows already wait for a batch slot."""
        # len() of a deque is atomic in CPython: an approximate count is all a limit needs.
        if len(self._inbox) + len(self._waiting) >= self.max_queue:
            raise OverloadedError(
                f"the hf engine has {self.max_queue} requests waiting; try again later",
                retry_after=1.0,
            )
        with self._wake:
            self._inbox.append(row)
            self._wake.notify()

    def call(self, fn: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        """Run ``fn`` on the worker thread between two steps (the model is never shared)."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def job() -> None:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except Exception as exc:
                    future.set_exception(exc)

        with self._wake:
            self._inbox.append(job)
            self._wake.notify()
        return future

    def stop(self, timeout: float = 10.0) -> None:
        with self._wake:
            self._inbox.append(None)
            self._wake.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # -- the worker thread ------------------------------------------------------------------
    def _run(self) -> None:
        import torch

        with torch.inference_mode():
            while self._take_inbox():
                try:
                    self._admit()
                    if self.batch.rows:
                        self._advance(self.batch.step())
                except Exception as exc:  # a failed forward fails the rows, not the thread
                    self._fail_all(exc)
                self._flush()
        self._fail_all(UpstreamError("the hf engine was closed", retryable=True))
        self._flush()

    def _take_inbox(self) -> bool:
        with self._wake:
            while not self._inbox and not self._waiting and not self.batch.rows:
                self._wake.wait()
            items = list(self._inbox)
            self._inbox.clear()
        for item in items:
            if item is None:
                return False
            if isinstance(item, Row):
                self._waiting.append(item)
            else:
                item()
        return True

    def _admit(self) -> None:
        room = self.max_batch_size - len(self.batch)
        joining: list[Row] = []
        while self._waiting and len(joining) < room:
            row = self._waiting.popleft()
            if row.cancelled:
                self._finish(row, "cancelled")
                self._flush()
            else:
                joining.append(row)
        if not joining:
            return
        try:
            logits, prompt_scores = self.batch.prefill(joining, self.pad_id)
        except Exception as exc:
            for row in joining:
                self._emit(row, RowOutput(error=_as_upstream(exc)))
            return
        for row, scores in zip(joining, prompt_scores, strict=True):
            row.prompt_scores = scores
        self._advance(logits, len(self.batch) - len(joining), joined=True)

    def _eos_index(self, device: Any) -> Any:
        import torch

        if self._eos is None:
            self._eos = torch.tensor(sorted(self.eos_ids), dtype=torch.long, device=device)
        return self._eos

    def _advance(self, logits: Any, first: int = 0, joined: bool = False) -> None:
        """Sample one token for rows ``first..`` from ``logits``, emit text, drop finished rows."""
        import torch

        batch = self.batch
        rows = batch.rows[first:]
        # Joining rows take their first token from their own prefill logits, with a sampler of
        # their own; the batch sampler is rebuilt once they hold that token.
        sampler, constrained, biased = batch.sampler, batch.constrained, batch.biased
        floored = batch.floored
        if joined:
            sampler = BatchSampler([r.sampling_row() for r in rows], batch.vocab_size, batch.device)
            constrained, biased = constrained_indices(rows), biased_indices(rows)
            floored = floored_indices(rows)
        if biased:  # logit_bias: before the grammar mask, which must win
            batch.add_bias(logits, rows, biased)
        if floored and self.eos_ids:  # min_tokens, ignore_eos
            batch.hold_off_eos(logits, rows, floored, self._eos_index(logits.device))
        if constrained:  # structured output: forbidden tokens get -inf before sampling
            batch.constrain(logits, rows, constrained)
        tokens = sampler.sample(logits)
        sampler.record(tokens)
        batch.set_last_tokens(torch.cat([batch.last_tokens[:first], tokens]) if first else tokens)
        self._score(rows, logits, tokens)
        ids = tokens.tolist()
        for row, token in zip(rows, ids, strict=True):
            if token in self.eos_ids:
                row.finish_reason = "stop"
            else:
                row.output_ids.append(token)
        if constrained:
            self._follow_grammars(rows, constrained, ids)
        streams, outputs = [r.text for r in rows], [r.output_ids for r in rows]
        deltas = decode_deltas(self._decode, streams, outputs, self._decode_special)
        keep = list(range(first))
        for i, (row, delta) in enumerate(zip(rows, deltas, strict=True)):
            if row.cancelled:
                self._finish(row, "cancelled")
                continue
            if row.text.stopped:
                row.finish_reason = "stop"
            elif row.finish_reason is None and len(row.output_ids) >= row.max_new_tokens:
                row.finish_reason = "length"
            if row.finish_reason is not None:
                self._finish(row, row.finish_reason, delta)
            else:
                if delta:
                    self._emit(row, RowOutput(text=delta, logprobs=self._fresh_logprobs(row)))
                keep.append(first + i)
        if joined or len(keep) != len(batch):
            batch.keep(keep)
            batch.refresh_sampler()

    def _follow_grammars(self, rows: list[Row], constrained: list[int], ids: list[int]) -> None:
        """Feed each constrained row's token to its grammar; a finished grammar ends the row."""
        for i in constrained:
            row, grammar = rows[i], rows[i].grammar
            if grammar is None or row.finish_reason is not None:  # ended by EOS already
                continue
            if not grammar.accept(ids[i]):  # only when the mask left nothing to choose
                detail = f"hf engine: the grammar rejected token {ids[i]} (nothing was allowed)"
                self._emit(row, RowOutput(error=UpstreamError(detail)))
                row.cancelled = True
            elif grammar.finished:  # it accepted a stop token that is not one of eos_ids
                row.output_ids.pop()
                row.finish_reason = "stop"

    def _score(self, rows: list[Row], logits: Any, tokens: Any) -> None:
        wanted = [i for i, r in enumerate(rows) if r.logprobs is not None]
        if not wanted:
            return
        import torch

        index = torch.tensor(wanted, device=logits.device)
        top = max(rows[i].logprobs or 0 for i in wanted)
        chosen, tops = gather_logprobs(logits[index], tokens[index], top)
        for j, i in enumerate(wanted):
            n = rows[i].logprobs or 0
            rows[i].scores.append(TokenScore(int(tokens[i]), chosen[j], tops[j][:n]))

    def _finish(self, row: Row, reason: str, delta: str = "") -> None:
        row.finish_reason = reason
        tail = ""
        if reason != "cancelled":
            stream = row.text
            if not stream.stopped and stream.read_offset < len(row.output_ids):
                # Flush ids held back for an unfinished character: the output is what it is.
                decode = self._decode_special if stream.keep_special else self._decode
                texts = decode(list(stream.pending_slices(row.output_ids)))
                delta += stream.accept(texts[0], texts[1], len(row.output_ids), final=True)
            tail = stream.finish()
        usage = Usage(prompt_tokens=len(row.prompt_ids), completion_tokens=len(row.output_ids))
        out = RowOutput(text=delta + tail, finish_reason=reason, usage=usage)
        if row.logprobs is not None:
            out.logprobs = self._token_logprobs(row.scores)
            out.prompt_logprobs = self._token_logprobs(row.prompt_scores) if row.echo else None
        self._emit(row, out)

    def _fresh_logprobs(self, row: Row) -> list[TokenLogprob] | None:
        """The scores not streamed yet, for a text delta of a row that asked for logprobs (a
        token whose text is held back, part of a character or of a stop, comes with a later
        delta); offsets continue from the tokens streamed before."""
        if row.logprobs is None or row.scores_sent == len(row.scores):
            return None
        fresh = self._token_logprobs(row.scores[row.scores_sent :], row.chars_scored)
        row.scores_sent = len(row.scores)
        row.chars_scored += sum(len(lp.token) for lp in fresh)
        return fresh

    def _token_logprobs(self, scores: list[TokenScore], offset: int = 0) -> list[TokenLogprob]:
        out: list[TokenLogprob] = []
        for s in scores:
            text = self.tokenizer.decode([s.token_id])
            raw = self._bytes.of(s.token_id) if "\ufffd" in text else None
            top = {self.tokenizer.decode([t]): lp for t, lp in s.top} if s.top else None
            out.append(TokenLogprob(token=text, logprob=s.logprob, top=top, offset=offset,
                                    bytes=raw))  # fmt: skip
            offset += len(text)
        return out

    def _fail_all(self, exc: Exception) -> None:
        error = _as_upstream(exc)
        for row in [*self.batch.rows, *self._waiting]:
            self._emit(row, RowOutput(error=error))
        self._waiting.clear()
        self.batch.keep([])
        self.batch.refresh_sampler()

    def _emit(self, row: Row, out: RowOutput) -> None:
        loop, queue = row.channel
        self._outbox.setdefault(loop, []).append((queue, out))

    def _flush(self) -> None:
        for loop, items in self._outbox.items():
            try:
                loop.call_soon_threadsafe(_post, items)
            except RuntimeError:  # the loop was closed: nobody is listening any more
                pass
        self._outbox = {}


def _as_upstream(exc: Exception) -> Exception:
    if isinstance(exc, UpstreamError):
        return exc
    return UpstreamError(f"hf engine failed: {type(exc).__name__}: {exc}", retryable=False)
