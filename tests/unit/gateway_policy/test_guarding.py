"""Guardrail hooks: input checks, complete answers and streams cut before a denied term."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmloop.core.chat import ChatMessage, GenerationChunk, GenerationRequest, Usage
from llmloop.core.guards import GuardVerdict
from llmloop.errors import GuardBlockedError
from llmloop.guards.base import Guard
from llmloop.guards.deny_list import DenyListConfig, DenyListGuard
from llmloop.services.gateway.guarding import GuardPipeline, verdict_dicts


def deny(action: str = "block", terms: tuple[str, ...] = ("secret",)) -> DenyListGuard:
    return DenyListGuard(DenyListConfig(terms=list(terms), action=action))  # type: ignore[arg-type]


class Engine:
    """An engine stream over fixed pieces that notes whether it was closed early."""

    def __init__(self, pieces: list[str], finish: bool = True) -> None:
        self.pieces, self.finish, self.closed, self.sent = pieces, finish, False, 0

    async def stream(self) -> AsyncIterator[GenerationChunk]:
        try:
            for piece in self.pieces:
                self.sent += 1
                yield GenerationChunk(text=piece)
            if self.finish:
                yield GenerationChunk(finish_reason="stop", usage=Usage(completion_tokens=7))
        finally:
            self.closed = True


async def consume(
    pipeline: GuardPipeline, engine: Engine, verdicts: list[GuardVerdict]
) -> tuple[list[GenerationChunk], GuardBlockedError | None]:
    got: list[GenerationChunk] = []
    try:
        async for chunk in pipeline.stream(engine.stream(), verdicts):
            got.append(chunk)
    except GuardBlockedError as exc:
        return got, exc
    return got, None


def text_of(chunks: list[GenerationChunk]) -> str:
    return "".join(c.text for c in chunks)


async def test_a_term_split_across_chunks_is_cut_before_any_of_it_is_sent() -> None:
    engine = Engine(["Here is a long preamble that is quite harmless. The SeC", "ReT is 42", " ok"])
    verdicts: list[GuardVerdict] = []
    got, error = await consume(GuardPipeline([deny()]), engine, verdicts)
    assert error is not None and error.extra["rule_id"] == "deny_list.term"
    assert "sec" not in text_of(got).lower()
    assert engine.closed and engine.sent == 2  # the generation was stopped at once
    assert [v.action for v in verdicts] == ["block"]
    assert verdict_dicts(error.verdicts)[0]["rule_id"] == "deny_list.term"  # type: ignore[attr-defined]


async def test_redact_replaces_a_split_term_and_keeps_the_final_chunk() -> None:
    engine = Engine(["the sec", "ret", " is out; another SECRET here"])
    verdicts: list[GuardVerdict] = []
    got, error = await consume(GuardPipeline([deny("redact")]), engine, verdicts)
    assert error is None
    assert text_of(got) == "the [REDACTED] is out; another [REDACTED] here"
    assert got[-1].finish_reason == "stop" and got[-1].usage == Usage(completion_tokens=7)
    assert {v.action for v in verdicts} == {"redact"} and len(verdicts) >= 2


async def test_flag_passes_text_and_records_the_finding_once() -> None:
    pieces = ["a secret", " stays", " visible"] + [" filler"] * 5
    verdicts: list[GuardVerdict] = []
    got, error = await consume(GuardPipeline([deny("flag")]), Engine(pieces), verdicts)
    assert error is None and text_of(got) == "".join(pieces)
    assert [(v.action, v.rule_id) for v in verdicts] == [("flag", "deny_list.term")]


async def test_text_is_held_back_at_most_the_largest_window() -> None:
    guard = deny()
    pieces = ["x" * 10] * 30
    released_after: list[int] = []
    total = 0
    async for chunk in GuardPipeline([guard]).stream(Engine(pieces).stream()):
        total += len(chunk.text)
        released_after.append(total)
    assert total == 300
    # After each engine chunk everything except the guard's window has been released.
    assert all(
        sent >= 10 * (i + 1) - guard.window_chars for i, sent in enumerate(released_after[:-1])
    )


class Recorder(Guard):
    """Notes how much text each output call sees."""

    name = "recorder"
    window_chars = 32

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, bool]] = []

    def check_output(self, text: str, final: bool) -> list[GuardVerdict]:
        self.seen.append((len(text), final))
        return []


async def test_each_call_sees_a_bounded_window_not_the_whole_answer() -> None:
    guard = Recorder()
    engine = Engine(["abcdefgh"] * 500)
    got, _ = await consume(GuardPipeline([guard]), engine, [])
    assert len(text_of(got)) == 4000
    assert max(n for n, _ in guard.seen) <= 2 * guard.window_chars + 8
    assert guard.seen[-1][1] is True and sum(1 for _, f in guard.seen if f) == 1


class WholeAnswer(Guard):
    name = "whole"
    window_chars = 0

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def check_output(self, text: str, final: bool) -> list[GuardVerdict]:
        self.calls.append(text)
        return []


async def test_a_whole_answer_guard_is_called_once_with_everything() -> None:
    guard = WholeAnswer()
    got, _ = await consume(GuardPipeline([guard, deny()]), Engine(["one ", "two ", "three"]), [])
    assert text_of(got) == "one two three"
    assert guard.calls == ["one two three"]


class NoHold(Guard):
    name = "nohold"

    def hold_from(self, text: str) -> int:
        return len(text)


async def test_a_guard_that_says_where_to_hold_releases_sooner() -> None:
    engine = Engine(["first ", "second"])
    chunks = [c async for c in GuardPipeline([NoHold()]).stream(engine.stream())]
    assert [c.text for c in chunks] == ["first ", "second", ""]


async def test_a_stream_without_a_final_chunk_is_judged_at_its_end() -> None:
    got, error = await consume(GuardPipeline([deny()]), Engine(["ends with secr", "et"], False), [])
    assert error is not None and "secr" not in text_of(got)
    got, error = await consume(GuardPipeline([deny()]), Engine(["all fine"], False), [])
    assert error is None and text_of(got) == "all fine"


async def test_no_guards_pass_the_stream_through() -> None:
    got, error = await consume(GuardPipeline([]), Engine(["a", "secret"]), [])
    assert error is None and [c.text for c in got] == ["a", "secret", ""]


@settings(max_examples=60, deadline=None)
@given(
    before=st.text(alphabet="abc .", max_size=80),
    after=st.text(alphabet="abc .", max_size=80),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=8),
    action=st.sampled_from(["block", "redact"]),
)
def test_any_split_never_leaks_the_term(
    before: str, after: str, cuts: list[int], action: str
) -> None:
    text = f"{before}secret{after}"
    points = sorted({min(c, len(text)) for c in cuts} | {0, len(text)})
    pieces = [text[a:b] for a, b in itertools.pairwise(points) if b > a]
    got, error = asyncio.run(consume(GuardPipeline([deny(action)]), Engine(pieces), []))
    sent = text_of(got)
    if action == "block":
        assert error is not None and "s" not in sent[len(before) :]
    else:
        assert error is None and sent == f"{before}[REDACTED]{after}"


# --- input and complete answers -----------------------------------------------------------------


def msgs(*contents: str) -> list[ChatMessage]:
    return [ChatMessage(role="system", content=contents[0])] + [
        ChatMessage(role="user", content=c) for c in contents[1:]
    ]


def test_input_block_raises_with_the_rule_id_and_verdicts() -> None:
    with pytest.raises(GuardBlockedError) as caught:
        GuardPipeline([deny("flag", ("hello",)), deny()]).check_input(msgs("sys", "my SECRET"))
    assert caught.value.extra == {"rule_id": "deny_list.term", "guard": "deny_list",
                                  "stage": "input"}  # fmt: skip
    assert [v.action for v in caught.value.verdicts] == ["block"]  # type: ignore[attr-defined]


def test_input_redaction_rewrites_only_the_offending_messages() -> None:
    original = msgs("be brief", "tell me the secret", "and the Secret again")
    checked = GuardPipeline([deny("redact")]).check_input(original)
    assert [m.content for m in checked.messages] == [
        "be brief", "tell me the [REDACTED]", "and the [REDACTED] again"]  # fmt: skip
    assert [v.action for v in checked.verdicts] == ["redact"]
    assert original[1].content == "tell me the secret"  # the caller's messages are untouched


def test_a_redaction_spanning_messages_fails_closed() -> None:
    with pytest.raises(GuardBlockedError):
        GuardPipeline([deny("redact", ("sec\nret",))]).check_input(msgs("sec", "ret"))


def test_clean_and_flagged_input_passes() -> None:
    clean = GuardPipeline([deny()]).check_input(msgs("s", "nothing to see"))
    assert clean.verdicts == [] and clean.messages == msgs("s", "nothing to see")
    flagged = GuardPipeline([deny("flag")]).check_input(msgs("s", "a secret"))
    assert flagged.messages == msgs("s", "a secret") and flagged.verdicts[0].action == "flag"


def test_check_request_redacts_chat_and_prompt_requests() -> None:
    pipeline = GuardPipeline([deny("redact")])
    chat = GenerationRequest(model="m", messages=msgs("s", "the secret"))
    new, verdicts = pipeline.check_request(chat)
    assert new.messages is not None and new.messages[1].content == "the [REDACTED]"
    assert len(verdicts) == 1
    prompt, _ = pipeline.check_request(GenerationRequest(model="m", prompt="secret: 1"))
    assert prompt.prompt == "[REDACTED]: 1"
    same, verdicts = pipeline.check_request(GenerationRequest(model="m", prompt="fine"))
    assert same.prompt == "fine" and verdicts == []


def test_check_output_redacts_blocks_and_flags() -> None:
    assert GuardPipeline([deny("redact")]).check_output("a secret").text == "a [REDACTED]"
    flagged = GuardPipeline([deny("flag")]).check_output("a secret")
    assert flagged.text == "a secret" and flagged.verdicts[0].action == "flag"
    with pytest.raises(GuardBlockedError) as caught:
        GuardPipeline([deny()]).check_output("a secret")
    assert caught.value.extra["stage"] == "output"
