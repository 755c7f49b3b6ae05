"""Running a set of guards over a (streamed) response: feed chunks, release only judged text.

``GuardedStream`` is what the gateway wraps around an engine stream. Every fed chunk is appended to
the response; each guard sees its own trailing window (``window_chars`` plus the new text) so the
cost of a call does not grow with the answer. Text is released only after every guard has seen it,
and a guard may hold back a suffix it cannot judge yet (``hold_from(text) -> index``: an unclosed
markdown link, a partial canary token, an unfinished word); a guard without ``hold_from`` keeps
its last ``window_chars`` of unreleased text back, so a match split across chunks is never
partly shown (``value_hold`` is a tighter policy for detectors of short values such as PII).
Input-only guards (no ``check_output`` of their own) are skipped. A block verdict stops the stream
before the offending text is released; a redact verdict rewrites the unreleased text; flags are
recorded once per rule. Guards with ``window_chars == 0`` judge the whole text at the end only
(JSON schema). It does not talk to engines or HTTP; ``wrap`` adapts an async chunk iterator.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence

from llmloop.core.chat import ChatMessage, GenerationChunk
from llmloop.core.guards import GuardVerdict
from llmloop.guards.base import Guard

# A trailing value still being written: space/dash-separated groups that start with a digit or a
# capital (phone, card, IBAN, SSN groups), then one unbroken run (email, key, URL, partial word).
_TRAILING_VALUE = re.compile(r"(?:[+(]?[0-9A-Z][0-9A-Z()+.\-]*[ \-]){0,8}[\w@.+\-()/:%=]*$")


def value_hold(text: str, max_chars: int = 64) -> int:
    """Hold back a trailing value that may still grow (e.g. ``+44 20 79``, ``jane.doe@exa``),
    at most ``max_chars``: a hold policy for detectors of short values such as PII."""
    floor = max(0, len(text) - max_chars)
    found = _TRAILING_VALUE.search(text, floor)
    return max(found.start(), floor) if found is not None else len(text)


def check_messages(guards: Sequence[Guard], messages: list[ChatMessage]) -> list[GuardVerdict]:
    """Every input verdict of ``guards`` on a request, in guard order."""
    verdicts: list[GuardVerdict] = []
    for guard in guards:
        verdicts += guard.check_input(messages)
    return verdicts


class GuardedStream:
    """Incremental output guarding with bounded hold-back; see the module docstring."""

    def __init__(self, guards: Sequence[Guard]) -> None:
        self.guards = list(guards)
        # Guards that only check input would otherwise hold back their (unused) window.
        self._output = [g for g in self.guards if type(g).check_output is not Guard.check_output]
        self.text = ""
        self.released = 0
        self.verdicts: list[GuardVerdict] = []
        self.blocked: GuardVerdict | None = None
        self._checked = 0
        self._seen: set[tuple[str, str]] = set()

    def feed(self, chunk: str) -> str:
        """Add generated text; return the text that may be shown now ("" once blocked)."""
        if self.blocked is not None:
            return ""
        self.text += chunk
        return self._run(final=False)

    def finish(self) -> str:
        """Judge the complete answer; return the rest of the text ("" if blocked)."""
        if self.blocked is not None:
            return ""
        return self._run(final=True)

    def _run(self, final: bool) -> str:
        safe = len(self.text)
        for guard in self._output:
            whole = guard.window_chars <= 0
            if whole and not final:
                continue
            # New text plus the guard's context window, and never less than the unreleased text.
            start = 0 if whole else max(0, min(self._checked - guard.window_chars, self.released))
            window = self.text[start:]
            for verdict in guard.check_output(window, final):
                self._handle(guard, verdict, final)
                if self.blocked is not None:
                    return ""
            window = self.text[start:]  # a redaction may have changed it
            if not final:
                hold = getattr(guard, "hold_from", None)
                if hold is not None:
                    safe = min(safe, start + int(hold(window)))
                else:
                    safe = min(safe, len(self.text) - guard.window_chars)
        self._checked = len(self.text)
        safe = max(safe, self.released)
        out = self.text[self.released : safe]
        self.released = safe
        return out

    def _handle(self, guard: Guard, verdict: GuardVerdict, final: bool) -> None:
        if verdict.action == "allow":
            return
        if verdict.action == "block":
            self.blocked = verdict
            self.verdicts.append(verdict)
            return
        if verdict.action == "redact":
            # Redact only what has not been shown yet; if the offence is not in that part
            # alone (it straddles released text), the only safe outcome is a block.
            pending = self.text[self.released :]
            again = [v for v in guard.check_output(pending, final) if v.redacted is not None]
            if not again:
                self.blocked = verdict.model_copy(
                    update={"action": "block", "reason": verdict.reason + " (already shown)"}
                )
                self.verdicts.append(self.blocked)
                return
            assert again[0].redacted is not None
            self.text = self.text[: self.released] + again[0].redacted
        key = (verdict.guard, verdict.rule_id)
        if key not in self._seen:
            self._seen.add(key)
            self.verdicts.append(verdict)

    async def wrap(self, chunks: AsyncIterator[GenerationChunk]) -> AsyncIterator[GenerationChunk]:
        """Guard an engine stream: yields released text; a block ends it with content_filter."""
        try:
            async for chunk in chunks:
                if chunk.text:
                    out = self.feed(chunk.text)
                    if self.blocked is not None:
                        yield GenerationChunk(finish_reason="content_filter")
                        return
                    if out:
                        yield GenerationChunk(text=out)
                if chunk.finish_reason is not None:
                    rest = self.finish()
                    if self.blocked is not None:
                        yield GenerationChunk(finish_reason="content_filter", usage=chunk.usage)
                        return
                    yield GenerationChunk(
                        text=rest, finish_reason=chunk.finish_reason, usage=chunk.usage
                    )
                    return
            rest = self.finish()
            finish_reason = "content_filter" if self.blocked is not None else "stop"
            yield GenerationChunk(text=rest, finish_reason=finish_reason)
        finally:
            closer = getattr(chunks, "aclose", None)
            if closer is not None:
                await closer()


def check_text(guards: Sequence[Guard], text: str) -> tuple[str, list[GuardVerdict]]:
    """Guard a complete (non-streamed) answer: the text to return and every verdict."""
    stream = GuardedStream(guards)
    stream.text = text
    out = stream.finish()
    return out, stream.verdicts
