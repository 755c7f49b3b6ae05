"""The hf engine on architectures other than Llama, built tiny and random here (nothing is
downloaded): greedy answers of rows that join and leave one running batch equal
``model.generate`` on each prompt alone, past the slab's spare room and past a sliding window;
streams give the same text; echoed prompt log-probs equal the model's log-softmax; embeddings
work. Gemma 2 (no sdpa) loads with transformers' attention choice; GPT-2's absolute positions
embed a text the same in any left-padded batch; recurrent-state models are refused at load.

The weights are redrawn with a wide spread and untied from the embeddings: at the default
init, a tiny random model repeats one token, which would hide any cache or mask bug.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hf_helpers import started

from llmloop.core.chat import GenerationRequest, SamplingParams
from llmloop.engines.hf import HFEngine
from llmloop.errors import ConfigError

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

WINDOW = 16  # sliding window of the models that have one: the prompts and answers outgrow it
PROMPTS = [  # 1, 6, 30 and 2 tokens: they pad, join and leave in every order
    "Hello",
    "The quick brown fox jumps over",
    "Your order has shipped and will arrive in three days. Thank you for contacting support. "
    "To reset your password, open settings and choose reset.",
    "Thank you",
]
MAX_TOKENS = [80, 30, 70, 12]  # 80 and 70: past the slab's 64 spare columns


def _decoder(**extra: Any) -> dict[str, Any]:
    """The Llama-shaped fields most decoders share: hidden 32, 2 layers, grouped-query heads."""
    return dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=512, **extra)  # fmt: skip


SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4)
HYBRID = dict(
    head_dim=8, sliding_window=WINDOW, layer_types=["sliding_attention", "full_attention"]
)
CONFIGS: dict[str, Callable[[], tuple[Any, str]]] = {
    "qwen2": lambda: (transformers.Qwen2Config(**_decoder()), "Qwen2ForCausalLM"),
    "qwen3": lambda: (transformers.Qwen3Config(**_decoder(head_dim=8)), "Qwen3ForCausalLM"),
    "mistral": lambda: (
        transformers.MistralConfig(**_decoder(head_dim=8, sliding_window=WINDOW)),
        "MistralForCausalLM",
    ),
    "gemma2": lambda: (transformers.Gemma2Config(**_decoder(**HYBRID)), "Gemma2ForCausalLM"),
    "gemma3": lambda: (transformers.Gemma3TextConfig(**_decoder(**HYBRID)), "Gemma3ForCausalLM"),
    "phi3": lambda: (transformers.Phi3Config(**_decoder()), "Phi3ForCausalLM"),
    "gpt2": lambda: (
        transformers.GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=512),
        "GPT2LMHeadModel",
    ),
    "smollm3": lambda: (
        transformers.SmolLM3Config(**_decoder(no_rope_layers=[1, 0])),
        "SmolLM3ForCausalLM",
    ),
    "falcon-alibi": lambda: (
        transformers.FalconConfig(**SMALL, alibi=True),
        "FalconForCausalLM",
    ),
    "gpt-neox": lambda: (
        transformers.GPTNeoXConfig(**SMALL, intermediate_size=64, max_position_embeddings=512),
        "GPTNeoXForCausalLM",
    ),
    # A state-space model: its recurrent cache cannot be padded or split (refused at load).
    "mamba": lambda: (
        transformers.MambaConfig(hidden_size=32, num_hidden_layers=2, state_size=4),
        "MambaForCausalLM",
    ),
}
SERVED = [name for name in CONFIGS if name != "mamba"]


def build_tiny(name: str, tokenizer_dir: Path, out: Path) -> Path:
    """Save a random ``name`` model with the tiny Llama's tokenizer (left padding) under ``out``."""
    tok = transformers.AutoTokenizer.from_pretrained(tokenizer_dir, padding_side="left")
    tok.save_pretrained(out)
    config, cls_name = CONFIGS[name]()
    config.update({"vocab_size": len(tok), "bos_token_id": tok.bos_token_id,
                   "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id,
                   "tie_word_embeddings": False})  # fmt: skip
    torch.manual_seed(0)
    model = getattr(transformers, cls_name)(config)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() >= 2:
                param.normal_(0, 0.2)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def arch_dirs(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("archs")
    return {name: build_tiny(name, tiny_model_dir, root / name) for name in CONFIGS}


def reference(model_dir: Path) -> tuple[Any, Any]:
    """The model as transformers loads it, never stopping at end-of-sequence (as ignore_eos)."""
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir).eval()
    model.generation_config.eos_token_id = None
    return model, transformers.AutoTokenizer.from_pretrained(model_dir)


def generate(ref: tuple[Any, Any], prompt: str, max_tokens: int) -> str:
    model, tok = ref
    enc = tok([prompt], return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=max_tokens, do_sample=False)
    assert out.shape[1] - enc["input_ids"].shape[1] == max_tokens
    return str(tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True))


def greedy(prompt: str, max_tokens: int, **fields: Any) -> GenerationRequest:
    params = SamplingParams(max_tokens=max_tokens, temperature=0.0)
    return GenerationRequest(model="m", prompt=prompt, sampling=params, **fields)


async def staircase(engine: HFEngine, reqs: list[GenerationRequest]) -> list[str]:
    """Stream ``reqs``, each started once the one before has its first chunk (so each joins a
    batch that is decoding), then read them all to the end together."""
    streams = [engine.stream(r) for r in reqs]
    firsts = [(await anext(s)).text for s in streams]

    async def rest(stream: Any, first: str) -> str:
        return first + "".join([c.text async for c in stream])

    return await asyncio.gather(*(rest(s, f) for s, f in zip(streams, firsts, strict=True)))


@pytest.mark.parametrize("name", SERVED)
async def test_batched_greedy_answers_equal_generate(name: str, arch_dirs: dict[str, Path]) -> None:
    ref = reference(arch_dirs[name])
    expected = [generate(ref, p, n) for p, n in zip(PROMPTS, MAX_TOKENS, strict=True)]
    assert len(set(expected[0].split())) > 3  # a model that repeats itself would prove nothing
    engine = await started(arch_dirs[name], max_batch_size=8, ignore_eos=True)
    try:
        reqs = [greedy(p, n) for p, n in zip(PROMPTS, MAX_TOKENS, strict=True)]
        together = await asyncio.gather(*(engine.chat(r) for r in reqs))
        assert [r.text for r in together] == expected
        assert await staircase(engine, reqs) == expected
    finally:
        await engine.aclose()


@pytest.mark.parametrize("name", SERVED)
async def test_echo_scores_and_embeddings(name: str, arch_dirs: dict[str, Path]) -> None:
    model, tok = reference(arch_dirs[name])
    ids = tok(PROMPTS[2], return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        logp = torch.log_softmax(model(ids).logits[0].float(), dim=-1)
    expected = [float(logp[i, ids[0, i + 1]]) for i in range(ids.shape[1] - 1)]
    engine = await started(arch_dirs[name], max_batch_size=8)
    try:
        busy = engine.stream(greedy(PROMPTS[0], 40))  # scored while another row decodes
        await anext(busy)
        scored = await engine.chat(greedy(PROMPTS[2], 1, logprobs=0, echo=True))
        await busy.aclose()
        assert scored.logprobs is not None and scored.logprobs[0].logprob is None
        got = [t.logprob for t in scored.logprobs[1 : ids.shape[1]]]
        assert got == pytest.approx(expected, abs=1e-4)
        alone = (await engine.embed(["hello world"])).vectors[0]
        batch = await engine.embed(["hello world", PROMPTS[2]])  # left-padded beside a long one
        assert batch.vectors[0] == pytest.approx(alone, abs=1e-5)
        assert sum(x * x for x in alone) == pytest.approx(1.0, abs=1e-5)
    finally:
        await engine.aclose()


async def test_gemma2_loads_with_the_attention_transformers_picks(
    arch_dirs: dict[str, Path],
) -> None:
    """Gemma 2 has no sdpa attention: forcing the option's default refused to load it."""
    engine = await started(arch_dirs["gemma2"])
    try:
        assert engine._model.config._attn_implementation == "eager"
    finally:
        await engine.aclose()
    with pytest.raises(ConfigError, match="scaled_dot_product_attention"):  # asked for: refused
        await started(arch_dirs["gemma2"], attn_implementation="sdpa")
    qwen2 = await started(arch_dirs["qwen2"])  # an architecture that has it keeps sdpa
    try:
        assert qwen2._model.config._attn_implementation == "sdpa"
    finally:
        await qwen2.aclose()


async def test_a_recurrent_state_model_is_refused_at_load(arch_dirs: dict[str, Path]) -> None:
    """A state-space cache has no sequence axis to pad or trim: every request used to fail
    with "IndexError: list index out of range"."""
    with pytest.raises(
        ConfigError, match=r"LinearAttentionLayer layers.*cannot pad, join or split"
    ):
        await started(arch_dirs["mamba"])
