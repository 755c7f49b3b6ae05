"""The hf engine beyond the contract: exactness against transformers, joining a running batch,
queueing past max_batch_size, seeds, prompt scoring, LoRA adapters and option errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from llmloop.core.chat import ChatMessage, EngineSpec, GenerationRequest, SamplingParams
from llmloop.engines.hf import HFEngine
from llmloop.errors import ConfigError, InvalidInputError, NotFoundError

torch = pytest.importorskip("torch")

PROMPTS = ["The quick brown fox", "Hello", "Your order has shipped and will arrive in three"]


def completion(prompt: str, max_tokens: int = 10, **sampling: Any) -> GenerationRequest:
    params = SamplingParams(
        max_tokens=max_tokens, temperature=sampling.pop("temperature", 0.0), **sampling
    )
    return GenerationRequest(model="m", prompt=prompt, sampling=params)


async def make_engine(model_dir: Path, **options: Any) -> HFEngine:
    engine = HFEngine(
        EngineSpec(kind="hf", model=str(model_dir), options={"num_threads": 1, **options})
    )
    await engine.start()
    return engine


@pytest.fixture
async def engine(tiny_model_dir: Path) -> AsyncIterator[HFEngine]:
    engine = await make_engine(tiny_model_dir, max_batch_size=8)
    yield engine
    await engine.aclose()


@pytest.fixture(scope="module")
def reference(tiny_model_dir: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(
        tiny_model_dir
    ).eval(), AutoTokenizer.from_pretrained(tiny_model_dir)


def generate_reference(reference: tuple[Any, Any], prompt: str, max_tokens: int) -> str:
    model, tokenizer = reference
    enc = tokenizer([prompt], return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=max_tokens, do_sample=False)
    return str(tokenizer.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True))


async def test_greedy_batched_answers_equal_transformers_generate(
    engine: HFEngine, reference: tuple[Any, Any]
) -> None:
    results = await asyncio.gather(*(engine.chat(completion(p, 12)) for p in PROMPTS))
    for prompt, result in zip(PROMPTS, results, strict=True):
        assert result.text == generate_reference(reference, prompt, 12)


async def test_a_request_joins_a_running_batch_without_changing_answers(engine: HFEngine) -> None:
    long_req, short_req = completion(PROMPTS[2], 40), completion(PROMPTS[1], 6)
    long_alone, short_alone = await engine.chat(long_req), await engine.chat(short_req)
    stream = engine.stream(long_req)
    pieces = [(await stream.__anext__()).text]
    short = await engine.chat(short_req)  # joins while the long one decodes, leaves first
    pieces.extend([c.text async for c in stream])
    assert short.text == short_alone.text
    assert "".join(pieces) == long_alone.text


async def test_requests_past_max_batch_size_wait_their_turn(tiny_model_dir: Path) -> None:
    engine = await make_engine(tiny_model_dir, max_batch_size=2, ignore_eos=True)
    try:
        reqs = [completion(f"{PROMPTS[0]} {i}", 4 + i) for i in range(5)]
        alone = [await engine.chat(r) for r in reqs]
        together = await asyncio.gather(*(engine.chat(r) for r in reqs))
        assert [r.text for r in together] == [r.text for r in alone]
        assert [r.usage.completion_tokens for r in together] == [4, 5, 6, 7, 8]
    finally:
        await engine.aclose()


async def test_seeded_sampling_is_reproducible_in_any_company(engine: HFEngine) -> None:
    req = completion(PROMPTS[0], 12, temperature=1.0, seed=11)
    first = await engine.chat(req)
    crowd = await asyncio.gather(
        engine.chat(completion(PROMPTS[1], 12, temperature=1.0)),
        engine.chat(req),
        engine.chat(completion(PROMPTS[2], 5, temperature=0.7, top_p=0.9, top_k=5)),
    )
    assert crowd[1].text == first.text
    other = await engine.chat(completion(PROMPTS[0], 12, temperature=1.0, seed=12))
    assert other.text != first.text


async def test_echo_logprobs_equal_the_model_scores(
    engine: HFEngine, reference: tuple[Any, Any]
) -> None:
    model, tokenizer = reference
    req = GenerationRequest(
        model="m",
        prompt=PROMPTS[2],
        sampling=SamplingParams(max_tokens=1, temperature=0),
        logprobs=0,
        echo=True,
    )
    result = await engine.chat(req)
    ids = tokenizer(PROMPTS[2], return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        logp = torch.log_softmax(model(ids).logits[0].float(), dim=-1)
    expected = [float(logp[i, ids[0, i + 1]]) for i in range(ids.shape[1] - 1)]
    scored = result.logprobs
    assert scored is not None and scored[0].logprob is None
    assert [t.logprob for t in scored[1 : ids.shape[1]]] == pytest.approx(expected, abs=1e-4)
    assert "".join(t.token for t in scored[: ids.shape[1]]) == PROMPTS[2]


async def test_chat_messages_use_the_chat_template(
    engine: HFEngine, reference: tuple[Any, Any]
) -> None:
    _, tokenizer = reference
    messages = [
        ChatMessage(role="system", content="Be brief."),
        ChatMessage(role="user", content="Hello"),
    ]
    req = GenerationRequest(
        model="m", messages=messages, sampling=SamplingParams(max_tokens=1), echo=True
    )
    result = await engine.chat(req)
    assert result.text.startswith("<|system|>Be brief.<|end|><|user|>Hello<|end|><|assistant|>")
    dicts = [m.model_dump(exclude_none=True) for m in messages]
    text = tokenizer.apply_chat_template(dicts, add_generation_prompt=True, tokenize=False)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert result.usage.prompt_tokens == len(ids)


async def test_embed_refuses_an_empty_list(engine: HFEngine) -> None:
    with pytest.raises(InvalidInputError):
        await engine.embed([])


@pytest.fixture(scope="module")
def lora_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    out = tmp_path_factory.mktemp("lora")
    get_peft_model(base, config).save_pretrained(out)
    return out


def scored(prompt: str, adapter: str | None = None) -> GenerationRequest:
    return GenerationRequest(
        model="m",
        prompt=prompt,
        sampling=SamplingParams(max_tokens=4, temperature=0),
        logprobs=0,
        adapter=adapter,
    )


async def test_lora_adapters_mix_in_one_batch(tiny_model_dir: Path, lora_dir: Path) -> None:
    engine = await make_engine(tiny_model_dir, adapters={"tuned": str(lora_dir)})
    try:
        base_alone = await engine.chat(scored(PROMPTS[0]))
        tuned_alone = await engine.chat(scored(PROMPTS[0], "tuned"))
        by_path = await engine.chat(scored(PROMPTS[0], str(lora_dir)))  # loaded on demand
        base_lp = [t.logprob for t in base_alone.logprobs or []]
        tuned_lp = [t.logprob for t in tuned_alone.logprobs or []]
        assert tuned_lp != pytest.approx(base_lp, abs=1e-3)
        assert [t.logprob for t in by_path.logprobs or []] == pytest.approx(tuned_lp, abs=1e-4)
        mixed = await asyncio.gather(
            engine.chat(scored(PROMPTS[0])), engine.chat(scored(PROMPTS[0], "tuned"))
        )
        assert [t.logprob for t in mixed[0].logprobs or []] == pytest.approx(base_lp, abs=1e-4)
        assert [t.logprob for t in mixed[1].logprobs or []] == pytest.approx(tuned_lp, abs=1e-4)
        with pytest.raises(NotFoundError):
            await engine.chat(scored(PROMPTS[0], "no-such-adapter"))
    finally:
        await engine.aclose()


async def test_spec_adapter_is_the_default(tiny_model_dir: Path, lora_dir: Path) -> None:
    engine = HFEngine(EngineSpec(kind="hf", model=str(tiny_model_dir), adapter=str(lora_dir)))
    plain = await make_engine(tiny_model_dir)
    try:
        tuned = await engine.chat(scored(PROMPTS[1]))
        base = await plain.chat(scored(PROMPTS[1]))
        assert [t.logprob for t in tuned.logprobs or []] != pytest.approx(
            [t.logprob for t in base.logprobs or []], abs=1e-3
        )
    finally:
        await engine.aclose()
        await plain.aclose()


async def test_loading_an_adapter_warns_of_nothing(tiny_model_dir: Path, lora_dir: Path) -> None:
    """`llmloop eval run` of a LoRA version printed transformers' FutureWarning about
    `is_gradient_checkpointing`, which peft reads: noise the user can do nothing about."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        engine = HFEngine(EngineSpec(kind="hf", model=str(tiny_model_dir), adapter=str(lora_dir)))
        await engine.start()
        await engine.aclose()
    assert not [w for w in caught if "gradient_checkpointing" in str(w.message)]


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"max_batch_siz": 4}, "max_batch_siz"),
        ({"max_batch_size": 0}, "max_batch_size"),
        ({"dtype": "int3"}, "dtype"),
    ],
)
def test_bad_options_are_config_errors(options: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        HFEngine(EngineSpec(kind="hf", model="somewhere", options=options))


async def test_missing_model_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        HFEngine(EngineSpec(kind="hf", model=""))
    engine = HFEngine(EngineSpec(kind="hf", model=str(tmp_path / "nope")))
    with pytest.raises(ConfigError, match="cannot load model"):
        await engine.start()


async def test_long_generation_outgrows_the_cache_slab_exactly(
    tiny_model_dir: Path, reference: tuple[Any, Any]
) -> None:
    model, tokenizer = reference
    ids = tokenizer(PROMPTS[0], return_tensors="pt")["input_ids"]
    with torch.inference_mode():  # no cache at all: recompute the whole sequence every step
        for _ in range(90):
            ids = torch.cat([ids, model(ids).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    expected = tokenizer.decode(ids[0, -90:], skip_special_tokens=True)
    engine = await make_engine(tiny_model_dir, ignore_eos=True)
    try:
        short = engine.chat(completion(PROMPTS[1], 3))  # a second row leaves mid-way
        long, _ = await asyncio.gather(engine.chat(completion(PROMPTS[0], 90)), short)
        assert long.text == expected
        assert long.usage.completion_tokens == 90
    finally:
        await engine.aclose()


async def test_a_full_queue_is_overloaded_and_close_fails_what_is_left(
    tiny_model_dir: Path,
) -> None:
    from llmloop.errors import OverloadedError, UpstreamError

    engine = await make_engine(tiny_model_dir, max_batch_size=1, max_queue=1, ignore_eos=True)
    scheduler = engine._scheduler
    running = asyncio.ensure_future(engine.chat(completion(PROMPTS[0], 400)))
    for _ in range(400):  # until the first row decodes
        await asyncio.sleep(0.002)
        if scheduler.batch.rows:
            break
    waiting = asyncio.ensure_future(engine.chat(completion(PROMPTS[1], 400)))
    for _ in range(400):  # until the second row waits for the only slot
        await asyncio.sleep(0.002)
        if len(scheduler._inbox) + len(scheduler._waiting) >= 1:
            break
    assert not running.done() and not waiting.done()
    with pytest.raises(OverloadedError):
        await engine.chat(completion(PROMPTS[2], 5))
    await engine.aclose()
    for task in (running, waiting):
        with pytest.raises(UpstreamError, match="closed"):
            await task
