"""The hf engine behind the gateway answers as OpenAI does where a QA pass against ``llmloop serve``
found it did not (repro_3, 6, 8 and 9): a prompt past the context is a 400
``context_length_exceeded`` naming ``messages`` or ``prompt`` (the openai SDK's BadRequestError);
echo's ``text_offset`` runs on into the answer; empty and
over-long embedding inputs are 400s naming ``input``; ``logit_bias`` is honoured; ``suffix`` and
``best_of`` are 400s naming them; a streamed echo starts with the prompt; vLLM's ``min_tokens``
and ``ignore_eos`` are honoured."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest
from gw_harness import Gateway

pytest.importorskip("torch")

LONG: Any = [{"role": "user", "content": "hello " * 600}]  # the tiny model's context is 512


async def deploy_hf(gw: Gateway, model_dir: Path) -> None:
    engine = {"kind": "hf", "model": str(model_dir),
              "options": {"num_threads": 1, "max_batch_size": 8}}  # fmt: skip
    await gw.deploy({"name": "tiny", "targets": [{"engine": engine}]})


async def test_context_overflow_is_context_length_exceeded(
    gw: Gateway, tiny_model_dir: Path
) -> None:
    await deploy_hf(gw, tiny_model_dir)
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as caught:
            await gw.client.chat.completions.create(
                model="tiny", messages=LONG, max_tokens=5, stream=stream
            )
        error = caught.value
        assert (error.status_code, error.code, error.param) == (400, "context_length_exceeded",
                                                                "messages")  # fmt: skip
        assert "This model's maximum context length is 512 tokens" in error.message
    with pytest.raises(openai.BadRequestError) as caught:  # it fits, but not with 50 more
        await gw.client.completions.create(model="tiny", prompt=[5] * 511, max_tokens=50)
    assert (caught.value.code, caught.value.param) == ("context_length_exceeded", "prompt")
    assert "(511 in the prompt, 50 in the completion)" in caught.value.message
    capped = await gw.client.completions.create(  # no max_tokens: the room left, no error
        model="tiny", prompt=[5] * 511, temperature=0
    )
    assert capped.usage is not None and capped.usage.completion_tokens <= 1
    raw = await gw.http.post("/v1/chat/completions", json={"model": "tiny", "messages": LONG})
    error_body = raw.json()["error"]
    assert raw.status_code == 400 and error_body.pop("message").startswith(
        "This model's maximum context length is 512 tokens. However, your messages resulted in "
    )
    assert error_body == {"type": "invalid_request_error", "param": "messages",
                          "code": "context_length_exceeded"}  # fmt: skip


async def test_echo_text_offsets_slice_the_echoed_text(gw: Gateway, tiny_model_dir: Path) -> None:
    await deploy_hf(gw, tiny_model_dir)
    resp = await gw.client.completions.create(
        model="tiny", prompt="hello world", echo=True, logprobs=0, max_tokens=3, temperature=0
    )
    choice = resp.choices[0]
    assert choice.logprobs is not None and choice.text.startswith("hello world")
    tokens, offsets = choice.logprobs.tokens or [], choice.logprobs.text_offset or []
    assert len(tokens) == len(offsets) > 3 and offsets == sorted(offsets)
    assert [choice.text[o : o + len(t)] for t, o in zip(tokens, offsets, strict=True)] == tokens
    assert offsets[-3] >= len("hello world")  # the answer's tokens point past the prompt


async def test_embedding_inputs_the_model_cannot_embed_are_400s(
    gw: Gateway, tiny_model_dir: Path
) -> None:
    await deploy_hf(gw, tiny_model_dir)
    for value in ("", ["", "hello"]):
        with pytest.raises(openai.BadRequestError) as caught:
            await gw.client.embeddings.create(model="tiny", input=value)
        assert caught.value.param == "input" and "empty string" in caught.value.message
    with pytest.raises(openai.BadRequestError) as caught:
        await gw.client.embeddings.create(model="tiny", input="word " * 4000)
    assert (caught.value.code, caught.value.param) == ("context_length_exceeded", "input")
    fine = await gw.client.embeddings.create(model="tiny", input=["hello", "a longer text"])
    assert len(fine.data) == 2


async def test_logit_bias_is_honoured(gw: Gateway, tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    await deploy_hf(gw, tiny_model_dir)
    messages: Any = [{"role": "user", "content": "hello world"}]
    biased = await gw.client.chat.completions.create(
        model="tiny", messages=messages, temperature=0, max_tokens=5, logit_bias={"100": 100}
    )
    forced = AutoTokenizer.from_pretrained(tiny_model_dir).decode([100] * 5)
    assert biased.choices[0].message.content == forced
    with pytest.raises(openai.BadRequestError) as caught:
        await gw.client.chat.completions.create(
            model="tiny", messages=messages, max_tokens=5, logit_bias={"hello": 1}
        )
    assert caught.value.param == "logit_bias"


async def test_ignore_eos_and_min_tokens_from_extra_body(gw: Gateway, tiny_model_dir: Path) -> None:
    """vLLM's extra fields, as load generators send them through the openai client's
    ``extra_body``: answers of a fixed length even where the model would end at once."""
    from transformers import AutoTokenizer

    await deploy_hf(gw, tiny_model_dir)
    eos = AutoTokenizer.from_pretrained(tiny_model_dir).eos_token_id
    ends = {"logit_bias": {str(eos): 100}}
    messages: Any = [{"role": "user", "content": "hello world"}]
    for extra, tokens in (({}, 0), ({"min_tokens": 4}, 4), ({"ignore_eos": True}, 7)):
        answer = await gw.client.chat.completions.create(
            model="tiny", messages=messages, max_tokens=7, extra_body={**ends, **extra}
        )
        assert answer.usage is not None and answer.usage.completion_tokens == tokens
    with pytest.raises(openai.BadRequestError) as caught:
        await gw.client.chat.completions.create(
            model="tiny", messages=messages, max_tokens=2, extra_body={"min_tokens": 5}
        )
    assert caught.value.param == "min_tokens"


async def test_suffix_and_best_of_are_400s_naming_them(gw: Gateway, tiny_model_dir: Path) -> None:
    await deploy_hf(gw, tiny_model_dir)
    asks: list[dict[str, Any]] = [{"suffix": " END"}, {"best_of": 4, "n": 1}]
    for extra, param in zip(asks, ("suffix", "best_of"), strict=True):
        with pytest.raises(openai.BadRequestError) as caught:
            await gw.client.completions.create(model="tiny", prompt="hello", max_tokens=5, **extra)
        assert caught.value.param == param


async def test_a_streamed_echo_starts_with_the_prompt(gw: Gateway, tiny_model_dir: Path) -> None:
    await deploy_hf(gw, tiny_model_dir)
    ask: dict[str, Any] = {"model": "tiny", "prompt": "hello world", "echo": True,
                           "max_tokens": 3, "temperature": 0}  # fmt: skip
    whole = await gw.client.completions.create(**ask)
    stream = await gw.client.completions.create(**ask, stream=True)
    pieces = [c.choices[0].text async for c in stream if c.choices]
    assert pieces[0] == "hello world"
    assert "".join(pieces) == whole.choices[0].text


async def test_streamed_logprobs_match_the_whole_answers(gw: Gateway, tiny_model_dir: Path) -> None:
    await deploy_hf(gw, tiny_model_dir)
    ask: Any = {"model": "tiny", "messages": [{"role": "user", "content": "hello world"}],
                "temperature": 0, "max_tokens": 6, "logprobs": True, "top_logprobs": 2}  # fmt: skip
    whole = await gw.client.chat.completions.create(**ask)
    assert whole.choices[0].logprobs is not None
    expected = [(lp.token, round(lp.logprob, 4)) for lp in whole.choices[0].logprobs.content or []]
    stream = await gw.client.chat.completions.create(**ask, stream=True)
    streamed = [(lp.token, round(lp.logprob, 4)) async for c in stream
                if c.choices and c.choices[0].logprobs
                for lp in c.choices[0].logprobs.content or []]  # fmt: skip
    assert streamed == expected and len(streamed) == 6


async def test_a_token_holding_part_of_a_character_has_its_own_bytes(
    gw: Gateway, tiny_model_dir: Path
) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    lead = tokenizer.convert_tokens_to_ids("Ã")  # byte 0xC3 alone: the first half of "é"
    assert isinstance(lead, int) and tokenizer.decode([lead]) == "\ufffd"
    await deploy_hf(gw, tiny_model_dir)
    resp = await gw.client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "x"}], max_tokens=1,
        logit_bias={str(lead): 100}, logprobs=True)  # fmt: skip
    assert resp.choices[0].logprobs is not None
    [token] = resp.choices[0].logprobs.content or []
    assert token.bytes == [0xC3]  # not the replacement character's [239, 191, 189]
