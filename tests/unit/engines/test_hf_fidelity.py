"""The hf engine answers as OpenAI and vLLM do where a QA pass found it did not: the context
window (``context_length_exceeded``, max_tokens capped only when the client chose none), echo's
text offsets, empty and over-long embedding inputs, ``logit_bias`` honoured, ``suffix`` and
``best_of`` refused, and the prompt first in a streamed echo."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hf_helpers import started

from llmloop.core.chat import ChatMessage, GenerationRequest, SamplingParams
from llmloop.engines.context_window import answer_budget
from llmloop.engines.hf import HFEngine
from llmloop.errors import BadRequestError, ContextLengthExceededError

pytest.importorskip("torch")

CONTEXT = 64  # the engine's max_context in these tests: short prompts overflow it


def completion(
    prompt: str = "hello world", passthrough: dict[str, Any] | None = None, **sampling: Any
) -> GenerationRequest:
    params = SamplingParams(**{"temperature": 0.0, **sampling})
    return GenerationRequest(model="m", prompt=prompt, sampling=params, passthrough=passthrough)


@pytest.fixture
async def engine(tiny_model_dir: Path) -> AsyncIterator[HFEngine]:
    engine = await started(tiny_model_dir, max_context=CONTEXT, max_batch_size=4)
    yield engine
    await engine.aclose()


def prompt_of(engine: HFEngine, tokens: int) -> list[int]:
    """Token ids of a prompt exactly ``tokens`` long."""
    return [engine._tokenizer.encode("hello")[0]] * tokens


def by_ids(ids: list[int], **sampling: Any) -> GenerationRequest:
    params = SamplingParams(**{"temperature": 0.0, **sampling})
    return GenerationRequest(model="m", prompt="", prompt_ids=ids, sampling=params)


# -- context length ---------------------------------------------------------------------------


def test_the_budget_follows_vllm() -> None:
    chosen = completion(max_tokens=10)
    default = completion()  # max_tokens left to the engine (not in model_fields_set)
    assert answer_budget(chosen, 50, CONTEXT) == 10
    assert answer_budget(chosen, 54, CONTEXT) == 10  # exactly full
    assert answer_budget(default, 50, CONTEXT) == 14  # the default is capped at the room left
    chat = GenerationRequest(model="m", messages=[ChatMessage(role="user", content="x")])
    assert answer_budget(chat, 50, CONTEXT) == 14
    assert answer_budget(chat, 20, CONTEXT) == 44  # all the room, not a default's cap
    with pytest.raises(ContextLengthExceededError) as caught:
        answer_budget(chosen, 55, CONTEXT)
    assert caught.value.extra == {"param": "prompt"}
    assert caught.value.detail == (
        "This model's maximum context length is 64 tokens. However, you requested 65 tokens "
        "(55 in the prompt, 10 in the completion). Please reduce the length of the prompt or "
        "completion."
    )
    with pytest.raises(ContextLengthExceededError, match="your prompt resulted in 64 tokens"):
        answer_budget(default, CONTEXT, CONTEXT)


async def test_a_prompt_past_the_context_is_context_length_exceeded(engine: HFEngine) -> None:
    with pytest.raises(ContextLengthExceededError) as caught:
        await engine.chat(completion("hello " * 100))
    error = caught.value
    assert (error.status, error.code, error.extra) == (400, "context_length_exceeded",
                                                       {"param": "prompt"})  # fmt: skip
    assert error.detail.startswith("This model's maximum context length is 64 tokens.")
    chat = GenerationRequest(model="m", messages=[ChatMessage(role="user", content="hi " * 100)])
    with pytest.raises(ContextLengthExceededError) as caught:
        await engine.chat(chat)
    assert caught.value.extra == {"param": "messages"}
    assert "However, your messages resulted in" in caught.value.detail
    stream = engine.stream(completion("hello " * 100))
    with pytest.raises(ContextLengthExceededError):  # before any chunk: the gateway answers 400
        await anext(stream)


async def test_max_tokens_the_client_chose_must_fit(engine: HFEngine) -> None:
    with pytest.raises(ContextLengthExceededError, match=r"\(60 in the prompt, 5 in the"):
        await engine.chat(by_ids(prompt_of(engine, 60), max_tokens=5))
    fits = await engine.chat(by_ids(prompt_of(engine, 60), max_tokens=4))
    assert fits.usage.prompt_tokens == 60 and fits.usage.completion_tokens <= 4


async def test_a_default_max_tokens_is_capped_at_the_room_left(tiny_model_dir: Path) -> None:
    engine = await started(tiny_model_dir, max_context=CONTEXT, ignore_eos=True)
    try:
        result = await engine.chat(by_ids(prompt_of(engine, 61)))  # default 256: 3 fit
        assert result.finish_reason == "length" and result.usage.completion_tokens == 3
        last = await engine.chat(by_ids(prompt_of(engine, 63)))
        assert last.usage.completion_tokens == 1
    finally:
        await engine.aclose()


# -- echo: text offsets and streams -----------------------------------------------------------


async def test_echo_offsets_run_on_through_the_answer(engine: HFEngine) -> None:
    req = completion(max_tokens=4).model_copy(update={"echo": True, "logprobs": 0})
    result = await engine.chat(req)
    assert result.logprobs is not None and result.text.startswith("hello world")
    offsets = [t.offset for t in result.logprobs]
    assert offsets == sorted(offsets) and offsets[result.usage.prompt_tokens] == len("hello world")
    for token in result.logprobs:  # OpenAI's contract: text_offset slices the token out
        assert result.text[token.offset : token.offset + len(token.token)] == token.token
    plain = await engine.chat(completion(max_tokens=4).model_copy(update={"logprobs": 0}))
    assert plain.logprobs is not None and plain.logprobs[0].offset == 0  # without echo: from 0


async def test_a_streamed_echo_sends_the_prompt_first(engine: HFEngine) -> None:
    req = completion(max_tokens=4).model_copy(update={"echo": True})
    whole = await engine.chat(req)
    chunks = [c async for c in engine.stream(req)]
    assert chunks[0].text == "hello world"
    assert "".join(c.text for c in chunks) == whole.text
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens > 0


# -- embeddings -------------------------------------------------------------------------------


async def test_empty_embedding_inputs_are_bad_requests(engine: HFEngine) -> None:
    for texts in ([""], ["a text", ""]):
        with pytest.raises(BadRequestError, match="empty string") as caught:
            await engine.embed(texts)
        assert caught.value.status == 400 and caught.value.extra == {"param": "input"}


async def test_an_embedding_input_past_the_context_is_refused(engine: HFEngine) -> None:
    with pytest.raises(ContextLengthExceededError, match="input 1 has") as caught:
        await engine.embed(["short", "word " * 200])
    assert caught.value.extra == {"param": "input"}
    texts = ["word " * 20, "hi"]
    fits = await engine.embed(texts)
    counts = [len(ids) for ids in engine._tokenizer(texts)["input_ids"]]
    assert len(fits.vectors) == 2 and fits.usage.prompt_tokens == sum(counts)


async def test_padded_embedding_batches_equal_the_tokenizers(engine: HFEngine) -> None:
    from llmloop.engines.hf import _padded

    tok = engine._tokenizer
    texts = ["a longer text here", "hi", "the quick brown fox"]
    expected = tok(texts, padding=True, return_tensors="pt")
    ours = _padded(tok(texts)["input_ids"], tok.pad_token_id, tok.padding_side == "left")
    assert ours["input_ids"].tolist() == expected["input_ids"].tolist()
    assert ours["attention_mask"].tolist() == expected["attention_mask"].tolist()


# -- passthrough fields -----------------------------------------------------------------------


async def test_logit_bias_forces_and_bans_tokens(engine: HFEngine) -> None:
    plain = completion(max_tokens=5)
    forced = completion(max_tokens=5, passthrough={"logit_bias": {"100": 100}})
    alone = await engine.chat(plain)
    together = await asyncio.gather(engine.chat(forced), engine.chat(plain))
    assert together[0].text == engine._tokenizer.decode([100] * 5)
    assert together[1].text == alone.text  # a biased row leaves its batch-mates alone
    first = await engine.chat(completion(max_tokens=1))
    [greedy] = engine._tokenizer.encode(first.text)
    banned = await engine.chat(
        completion(max_tokens=1, passthrough={"logit_bias": {str(greedy): -100}})
    )
    assert banned.text != first.text
    stream = engine.stream(forced)
    assert "".join([c.text async for c in stream]) == together[0].text


@pytest.mark.parametrize(
    ("extra", "param", "needle"),
    [
        ({"logit_bias": {"abc": 1}}, "logit_bias", "Invalid key"),
        ({"logit_bias": {"99999": 1}}, "logit_bias", "Invalid key"),
        ({"logit_bias": {"5": 101}}, "logit_bias", "Invalid value"),
        ({"logit_bias": [5]}, "logit_bias", "must be an object"),
        ({"suffix": " END"}, "suffix", "does not support 'suffix'"),
        ({"best_of": 4}, "best_of", "does not support 'best_of'"),
        ({"best_of": "two"}, "best_of", "positive integer"),
        ({"min_tokens": 3}, "min_tokens", "at most 'max_tokens' \\(2\\)"),
        ({"min_tokens": -1}, "min_tokens", "non-negative integer"),
        ({"min_tokens": "4"}, "min_tokens", "non-negative integer"),
        ({"ignore_eos": "yes"}, "ignore_eos", "must be a boolean"),
    ],
)
async def test_fields_the_engine_cannot_honour_are_400s(
    engine: HFEngine, extra: dict[str, Any], param: str, needle: str
) -> None:
    with pytest.raises(BadRequestError, match=needle) as caught:
        await engine.chat(completion(max_tokens=2, passthrough=extra))
    assert caught.value.status == 400 and caught.value.extra == {"param": param}
    with pytest.raises(BadRequestError):
        await anext(engine.stream(completion(max_tokens=2, passthrough=extra)))


async def test_fields_that_ask_for_nothing_are_accepted(engine: HFEngine) -> None:
    expected = await engine.chat(completion(max_tokens=3))
    extra = {"suffix": "", "best_of": 1, "logit_bias": {}, "reasoning_effort": "low"}
    result = await engine.chat(completion(max_tokens=3, passthrough=extra))
    nulls = await engine.chat(
        completion(max_tokens=3, passthrough=dict.fromkeys(("suffix", "best_of", "logit_bias")))
    )
    assert result.text == nulls.text == expected.text


async def test_min_tokens_and_ignore_eos_hold_off_the_end(tiny_model_dir: Path) -> None:
    """vLLM's ``min_tokens`` and ``ignore_eos`` (load generators send them for answers of a
    fixed length): end-of-sequence is masked until the minimum, for that row only."""
    engine = await started(tiny_model_dir, max_context=CONTEXT, max_batch_size=4)
    try:
        eos = engine._tokenizer.eos_token_id
        ends = completion(max_tokens=8, passthrough={"logit_bias": {str(eos): 100}})
        ended = await engine.chat(ends)  # forced to end at once
        assert (ended.finish_reason, ended.usage.completion_tokens) == ("stop", 0)
        held = {"logit_bias": {str(eos): 100}, "min_tokens": 3}
        floored, plain = await asyncio.gather(
            engine.chat(completion(max_tokens=8, passthrough=held)), engine.chat(ends)
        )
        assert (floored.finish_reason, floored.usage.completion_tokens) == ("stop", 3)
        assert plain.usage.completion_tokens == 0  # its batch-mate still ends at once
        ignore = {"logit_bias": {str(eos): 100}, "ignore_eos": True}
        full = await engine.chat(completion(max_tokens=6, passthrough=ignore))
        assert (full.finish_reason, full.usage.completion_tokens) == ("length", 6)
        streamed = engine.stream(completion(max_tokens=6, passthrough=ignore))
        chunks = [c async for c in streamed]
        assert chunks[-1].finish_reason == "length"
    finally:
        await engine.aclose()
