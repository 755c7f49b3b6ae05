"""Guardrail hooks of the gateway: input checks before the engine, output checks on the answer.

:class:`GuardPipeline` runs a list of :class:`~llmloop.guards.base.Guard` in order. On input, a
block verdict raises :class:`GuardBlockedError` (with the rule id) and a redact verdict rewrites
the offending messages. On a streamed output, text is released only after every guard has judged
it *with the text that may follow*: each guard's last ``window_chars`` of unreleased text stay
held back (or less, when the guard says where a partial match starts via ``hold_from(text)``),
so a denied term split across chunks is never partly shown. A block verdict closes the engine
stream and raises before the offending text is released; a redact verdict rewrites the held-back
text; flags pass the text through. Each guard call sees only its trailing window of released
text plus the unreleased text, so the cost of a call does not grow with the answer (guards with
``window_chars <= 0`` judge the whole answer once, at the end). Every verdict is recorded for
the trace (repeated allow/flag verdicts of one rule once). Tool calls are judged whole: their
arguments go through the output checks once the call is complete (a streamed call is held back
until then), and a redaction that would leave arguments that are no longer JSON blocks instead.
It knows nothing of HTTP or engines.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from llmloop.core.chat import (
    ChatMessage,
    GenerationChunk,
    GenerationRequest,
    GenerationResult,
    ToolCall,
    ToolCallDelta,
    collect_tool_calls,
    tool_call_deltas,
)
from llmloop.core.guards import GuardVerdict
from llmloop.errors import BadRequestError, GuardBlockedError
from llmloop.guards.base import Guard


@dataclass(frozen=True)
class GuardedInput:
    messages: list[ChatMessage]
    verdicts: list[GuardVerdict]


@dataclass(frozen=True)
class GuardedOutput:
    text: str
    verdicts: list[GuardVerdict]


def blocked_error(verdict: GuardVerdict, verdicts: list[GuardVerdict]) -> GuardBlockedError:
    """The error for a block verdict; ``.verdicts`` keeps every verdict for the trace."""
    where = "request" if verdict.stage == "input" else "response"
    err = GuardBlockedError(
        f"the {where} was blocked by guard '{verdict.guard}' (rule {verdict.rule_id})",
        rule_id=verdict.rule_id, guard=verdict.guard, stage=verdict.stage,
    )  # fmt: skip
    err.verdicts = list(verdicts)  # type: ignore[attr-defined]
    return err


def verdict_dicts(verdicts: Sequence[GuardVerdict]) -> list[dict[str, Any]]:
    """Verdicts as JSON-ready dicts (the trace's ``guard_verdicts``)."""
    return [v.model_dump(mode="json") for v in verdicts]


@dataclass
class _StreamState:
    pending: str = ""  # generated, not yet released
    tail: str = ""  # the last released characters (context for the next calls)
    released_all: list[str] = field(default_factory=list)  # only for whole-answer guards
    seen: set[tuple[str, str, str]] = field(default_factory=set)


class GuardPipeline:
    """Guards applied in order to requests, answers and streams."""

    def __init__(self, guards: Sequence[Guard]) -> None:
        self.guards = list(guards)
        windows = [g.window_chars for g in self.guards if g.window_chars > 0]
        self.context_chars = max(windows, default=0)
        self._whole = any(g.window_chars <= 0 for g in self.guards)

    # --- input ---------------------------------------------------------------------------------

    def check_input(self, messages: list[ChatMessage]) -> GuardedInput:
        """Verdicts on the request and the messages with redactions applied; raises on block."""
        verdicts: list[GuardVerdict] = []
        for guard in self.guards:
            found = guard.check_input(messages)
            verdicts += found
            for verdict in found:
                if verdict.action == "block":
                    raise blocked_error(verdict, verdicts)
            redact = next((v for v in found if v.action == "redact"), None)
            if redact is not None:
                messages = self._redact_messages(guard, messages, redact, verdicts)
        return GuardedInput(messages, verdicts)

    def _redact_messages(
        self,
        guard: Guard,
        messages: list[ChatMessage],
        verdict: GuardVerdict,
        verdicts: list[GuardVerdict],
    ) -> list[ChatMessage]:
        # A verdict's redaction covers what the guard saw (all messages joined); apply it per
        # message by asking the guard about each one. No change found means the offence spans
        # messages: failing closed is the only safe outcome.
        out, changed = [], False
        for message in messages:
            fixes = [v.redacted for v in guard.check_input([message]) if v.redacted is not None]
            if fixes and fixes[0] != message.content:
                out.append(message.model_copy(update=_redacted_fields(message, fixes[0])))
                changed = True
            else:
                out.append(message)
        if not changed:
            raise blocked_error(verdict.model_copy(update={"action": "block"}), verdicts)
        return out

    def check_request(self, req: GenerationRequest) -> tuple[GenerationRequest, list[GuardVerdict]]:
        """:meth:`check_input` for a chat or completion request; returns the request to send."""
        if req.messages is not None:
            checked = self.check_input(req.messages)
            if checked.messages != req.messages:
                req = req.model_copy(update={"messages": checked.messages})
            return req, checked.verdicts
        if req.prompt_ids is not None:
            raise BadRequestError("this model's guards read text: send the prompt as text, "
                                  "not token ids", param="prompt")  # fmt: skip
        assert req.prompt is not None
        checked = self.check_input([ChatMessage(role="user", content=req.prompt)])
        if checked.messages[0].content != req.prompt:
            req = req.model_copy(update={"prompt": checked.messages[0].content})
        return req, checked.verdicts

    # --- output --------------------------------------------------------------------------------

    def check_output(self, text: str) -> GuardedOutput:
        """A complete answer: the text to return (redacted) and the verdicts; raises on block."""
        verdicts: list[GuardVerdict] = []
        for guard in self.guards:
            found = guard.check_output(text, True)
            verdicts += found
            for verdict in found:
                if verdict.action == "block":
                    raise blocked_error(verdict, verdicts)
                if verdict.action == "redact":
                    if verdict.redacted is None:
                        raise blocked_error(
                            verdict.model_copy(update={"action": "block"}), verdicts
                        )
                    text = verdict.redacted
        return GuardedOutput(text, verdicts)

    def check_tool_calls(self, calls: list[ToolCall]) -> tuple[list[ToolCall], list[GuardVerdict]]:
        """Each call's arguments judged as output: (calls to return, verdicts); raises on block."""
        out, verdicts = [], []
        for call in calls:
            guarded = self.check_output(call.arguments)
            verdicts += guarded.verdicts
            if guarded.text != call.arguments:
                if not _is_json(guarded.text):
                    verdict = next(v for v in reversed(guarded.verdicts) if v.action == "redact")
                    raise blocked_error(verdict.model_copy(update={"action": "block"}), verdicts)
                call = call.model_copy(update={"arguments": guarded.text})
            out.append(call)
        return out, verdicts

    def check_result(self, result: GenerationResult) -> tuple[GenerationResult, list[GuardVerdict]]:
        """A whole answer's text, then its calls' arguments: (the answer to return, verdicts)."""
        out = self.check_output(result.text)
        verdicts = list(out.verdicts)
        if out.text != result.text:
            result = result.model_copy(update={"text": out.text})
        if result.tool_calls:
            calls, found = self.check_tool_calls(result.tool_calls)
            verdicts += found
            if calls != result.tool_calls:
                result = result.model_copy(update={"tool_calls": calls})
        return result, verdicts

    async def stream(
        self, chunks: AsyncIterator[GenerationChunk], verdicts: list[GuardVerdict] | None = None
    ) -> AsyncIterator[GenerationChunk]:
        """Guard an engine stream; verdicts are appended to ``verdicts`` as they come.

        Yields chunks of released text and, last, the engine's final chunk (``finish_reason``,
        ``usage``) carrying the rest of the text. A block closes ``chunks`` and raises
        :class:`GuardBlockedError` (the gateway sends it as the stream's error event).
        """
        record = verdicts if verdicts is not None else []
        state = _StreamState()
        calls: list[ToolCallDelta] = []
        try:
            async for chunk in chunks:
                if not self.guards:
                    yield chunk
                    continue
                final = chunk.finish_reason is not None
                calls += chunk.tool_calls or ()
                out = self._advance(state, chunk.text, final, record)
                if final:
                    update: dict[str, object] = {"text": out, "tool_calls": None}
                    if calls:
                        checked, found = self.check_tool_calls(collect_tool_calls(calls))
                        record += found
                        update["tool_calls"] = tool_call_deltas(checked)
                    yield chunk.model_copy(update=update)
                    return
                if out:
                    yield GenerationChunk(text=out)
            if self.guards:
                out = self._advance(state, "", True, record)
                if out:
                    yield GenerationChunk(text=out)
                if calls:  # an engine that ended without its final chunk
                    checked, found = self.check_tool_calls(collect_tool_calls(calls))
                    record += found
                    yield GenerationChunk(tool_calls=tool_call_deltas(checked))
        finally:
            closer = getattr(chunks, "aclose", None)
            if closer is not None:
                await closer()  # stops the generation when we end early

    def _advance(
        self, state: _StreamState, new: str, final: bool, record: list[GuardVerdict]
    ) -> str:
        """Judge the unreleased text with ``new`` appended; return what may be released."""
        state.pending += new
        hold = 0
        for guard in self.guards:
            whole = guard.window_chars <= 0
            if whole and not final:
                continue
            tail = "".join(state.released_all) if whole else state.tail[-guard.window_chars :]
            text = tail + state.pending
            for verdict in guard.check_output(text, final):
                self._record(state, verdict, record)
                if verdict.action == "block":
                    raise blocked_error(verdict, record)
                if verdict.action == "redact":
                    state.pending = self._redact_pending(guard, verdict, tail, state, final, record)
                    text = tail + state.pending
            if not final:
                hold = max(hold, self._hold(guard, text, len(tail), len(state.pending)))
        cut = len(state.pending) if final else max(0, len(state.pending) - hold)
        out, state.pending = state.pending[:cut], state.pending[cut:]
        if out:
            state.tail = (state.tail + out)[-self.context_chars :] if self.context_chars else ""
            if self._whole:
                state.released_all.append(out)
        return out

    @staticmethod
    def _hold(guard: Guard, text: str, tail_len: int, pending_len: int) -> int:
        """How many trailing unreleased characters ``guard`` wants kept back."""
        hold_from = getattr(guard, "hold_from", None)
        if hold_from is None:
            return min(guard.window_chars, pending_len)
        start = max(int(hold_from(text)) - tail_len, 0)
        return max(0, pending_len - start)

    @staticmethod
    def _redact_pending(
        guard: Guard,
        verdict: GuardVerdict,
        tail: str,
        state: _StreamState,
        final: bool,
        record: list[GuardVerdict],
    ) -> str:
        if verdict.redacted is not None and verdict.redacted.startswith(tail):
            return verdict.redacted[len(tail) :]
        # The redaction touched the context: redact the unreleased text alone, if that finds it.
        again = [v.redacted for v in guard.check_output(state.pending, final) if v.redacted]
        if again:
            return again[0]
        raise blocked_error(verdict.model_copy(update={"action": "block"}), record)

    @staticmethod
    def _record(state: _StreamState, verdict: GuardVerdict, record: list[GuardVerdict]) -> None:
        if verdict.action in ("allow", "flag"):
            key = (verdict.guard, verdict.rule_id, verdict.action)
            if key in state.seen:
                return  # the same finding, seen again through the sliding window
            state.seen.add(key)
        record.append(verdict)


def _redacted_fields(message: ChatMessage, text: str) -> dict[str, Any]:
    """The fields that replace a message's text; with media parts, its text parts become one
    redacted text part (the media parts follow), so no unredacted copy goes to the engine."""
    fields: dict[str, Any] = {"content": text}
    if message.parts:
        media = [p for p in message.parts if p.get("type") != "text"]
        fields["parts"] = [{"type": "text", "text": text}, *media]
    return fields


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True
