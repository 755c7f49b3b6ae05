"""A LoRA fine-tune on a templated domain lowers validation perplexity against its base."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llmloop.errors import InvalidInputError
from llmloop.trainers.base import RecordingTracker
from llmloop.trainers.perplexity import mean_nll, perplexity
from llmloop.trainers.sft import SFTConfig, load_base, run_sft


def as_texts(tokenizer: Any, rows: list[dict[str, Any]]) -> list[str]:
    return [
        tokenizer.apply_chat_template(
            [
                {"role": "user", "content": r["prompt"]},
                {"role": "assistant", "content": r["response"]},
            ],
            tokenize=False,
        )
        for r in rows
    ]


def test_lora_lowers_validation_perplexity(
    base_dir: Path, tickets: list[dict[str, Any]], ticket_eval: list[dict[str, Any]], tmp_path: Path
) -> None:
    from peft import PeftModel

    model, tokenizer = load_base(base_dir)
    texts = as_texts(tokenizer, ticket_eval)
    before = perplexity(model, tokenizer, texts)
    config = SFTConfig(
        max_steps=24,
        learning_rate=1e-2,
        batch_size=8,
        eval_steps=12,
        lora={"r": 16, "alpha": 32, "target_modules": "all-linear"},
    )
    result = run_sft(config, base_dir, tickets, ticket_eval, tmp_path, RecordingTracker())
    tuned = PeftModel.from_pretrained(load_base(base_dir)[0], result.adapter_dir)
    after = perplexity(tuned, tokenizer, texts)
    assert after < before * 0.7, (before, after)
    assert result.metrics["eval_perplexity"] < before


def test_perplexity_is_exp_of_mean_nll(base_dir: Path) -> None:
    import math

    model, tokenizer = load_base(base_dir)
    texts = ["Your order has shipped.", "Hello there, how can I help?"]
    assert perplexity(model, tokenizer, texts) == pytest.approx(
        math.exp(mean_nll(model, tokenizer, texts))
    )
    # A random model over a ~500-token vocabulary is close to uniform.
    assert 100 < perplexity(model, tokenizer, texts) < 2000


def test_perplexity_refuses_empty_input(base_dir: Path) -> None:
    model, tokenizer = load_base(base_dir)
    with pytest.raises(InvalidInputError):
        perplexity(model, tokenizer, [])
