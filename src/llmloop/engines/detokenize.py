"""Incremental detokenisation and stop-sequence matching for streamed generation.

``TextStream`` turns a growing list of token ids into text deltas that never end in a broken
UTF-8 sequence (a byte-level BPE token can hold half a character), and holds back any tail that
could still become a stop sequence, so the stop text itself is never emitted. ``decode_deltas``
does the decoding for a whole decode batch in one tokenizer call (two when some rows keep their
special tokens: forced tool calls, whose markers may be special tokens). Nothing here samples or
runs a model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

_REPLACEMENT = "\ufffd"

#: Decodes many id lists at once (``tokenizers.Tokenizer.decode_batch`` or a fallback).
BatchDecoder = Callable[[list[list[int]]], list[str]]


@dataclass
class TextStream:
    """The text of one row: decoded so far, emitted so far, and the stop sequences to watch."""

    stops: Sequence[str] = ()
    keep_special: bool = False  # decode special tokens as text instead of skipping them
    text: str = ""
    emitted: int = 0
    prefix_offset: int = 0
    read_offset: int = 0
    stopped: bool = field(default=False, init=False)

    def pending_slices(self, ids: list[int]) -> tuple[list[int], list[int]]:
        """The two id windows whose decodings give the next delta (see :func:`decode_deltas`)."""
        return ids[self.prefix_offset : self.read_offset], ids[self.prefix_offset :]

    def accept(self, prefix_text: str, full_text: str, n_ids: int, final: bool = False) -> str:
        """Take the decodings of :meth:`pending_slices`; return the text safe to emit now.

        A delta ending in U+FFFD waits for the next token (half a character), unless ``final``.
        """
        if len(full_text) > len(prefix_text) and (final or not full_text.endswith(_REPLACEMENT)):
            self.text += full_text[len(prefix_text) :]
            self.prefix_offset, self.read_offset = self.read_offset, n_ids
        return self._release(final=False)

    def finish(self) -> str:
        """Release whatever was held back (generation ended for another reason than a stop)."""
        return self._release(final=True)

    def _release(self, final: bool) -> str:
        if self.stopped:
            return ""
        if self.stops:
            longest = max(len(s) for s in self.stops)
            start = max(0, self.emitted - longest + 1)
            hits = [i for i in (self.text.find(s, start) for s in self.stops if s) if i >= 0]
            if hits:
                end = min(hits)
                self.text = self.text[:end]
                self.stopped = True
                return self._advance(end)
            if not final:
                return self._advance(len(self.text) - self._held_back())
        return self._advance(len(self.text))

    def _held_back(self) -> int:
        """Length of the longest text tail that is a proper prefix of some stop sequence."""
        best = 0
        for stop in self.stops:
            for k in range(min(len(stop) - 1, len(self.text)), best, -1):
                if self.text.endswith(stop[:k]):
                    best = k
                    break
        return best

    def _advance(self, end: int) -> str:
        end = max(end, self.emitted)
        delta = self.text[self.emitted : end]
        self.emitted = end
        return delta


def decode_deltas(
    decode: BatchDecoder,
    streams: Sequence[TextStream],
    id_lists: Sequence[list[int]],
    decode_special: BatchDecoder | None = None,
) -> list[str]:
    """Advance every stream by its new ids with one batched tokenizer call; return the deltas.

    Streams that keep special tokens are decoded by ``decode_special`` (a second call).
    """
    windows: tuple[list[list[int]], list[list[int]]] = ([], [])  # [1]: keeping special tokens
    for stream, ids in zip(streams, id_lists, strict=True):
        windows[stream.keep_special].extend(stream.pending_slices(ids))
    decoders = (decode, decode_special or decode)
    texts = tuple(iter(fn(w) if w else []) for fn, w in zip(decoders, windows, strict=True))
    deltas: list[str] = []
    for stream, ids in zip(streams, id_lists, strict=True):
        prefix, full = next(texts[stream.keep_special]), next(texts[stream.keep_special])
        deltas.append(stream.accept(prefix, full, len(ids)))
    return deltas


def make_batch_decoder(tokenizer: object, skip_special_tokens: bool = True) -> BatchDecoder:
    """The fastest batched decode the tokenizer offers (skipping special tokens by default)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and hasattr(backend, "decode_batch"):

        def decode_fast(ids: list[list[int]]) -> list[str]:
            return list(backend.decode_batch(ids, skip_special_tokens=skip_special_tokens))

        return decode_fast

    batch_decode = tokenizer.batch_decode  # type: ignore[attr-defined]

    def decode_slow(ids: list[list[int]]) -> list[str]:
        return list(batch_decode(ids, skip_special_tokens=skip_special_tokens))

    return decode_slow
