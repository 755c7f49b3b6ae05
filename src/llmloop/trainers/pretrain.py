"""A tiny foundation model for the demo: build a small Llama and pre-train it briefly on texts.

``init_base`` trains a byte-level BPE tokenizer on the texts and saves a randomly initialised
small Llama (``llmloop.testing.tiny.build_tiny_llama``, with a chat template), then trains all
its weights as a plain causal language model on the texts, packed into fixed-length sequences,
for at most ``config.steps`` steps. The result's ``merged`` directory is the usable base. It
does not register the model (the service does) and does not download anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from llmloop.errors import InvalidInputError
from llmloop.trainers.base import Tracker, TrainResult
from llmloop.trainers.sft import SFTConfig, run_sft

__all__ = ["BaseModelConfig", "init_base"]


class BaseModelConfig(BaseModel):
    """Shape of the tiny Llama and its brief pre-training."""

    model_config = ConfigDict(extra="forbid")

    vocab_size: int = Field(512, ge=300, le=32000, description="BPE vocabulary size.")
    hidden_size: int = Field(64, ge=16, le=1024, description="Width of the residual stream.")
    layers: int = Field(2, ge=1, le=24, description="Transformer blocks.")
    heads: int = Field(4, ge=1, le=32, description="Attention heads (must divide hidden_size).")
    max_positions: int = Field(512, ge=32, description="Longest context in tokens.")
    steps: int = Field(200, ge=1, le=1000, description="Pre-training steps (a brief warm start).")
    seq_len: int = Field(128, ge=16, description="Tokens per packed training sequence.")
    batch_size: int = Field(8, ge=1, description="Sequences per step.")
    learning_rate: float = Field(3e-3, gt=0, le=1.0, description="Peak learning rate.")
    seed: int = Field(0, description="Seed for tokenizer-independent weight init and data order.")
    device_hour_price: float = Field(0.0, ge=0, description="Price of one device-hour.")


def init_base(
    texts: Sequence[str], out_dir: str | Path, config: BaseModelConfig, tracker: Tracker
) -> TrainResult:
    """Build the tokenizer and tiny Llama from ``texts``, pre-train it, save it under ``out_dir``.

    The trained model and tokenizer are in ``result.merged``.
    """
    from llmloop.testing.tiny import build_tiny_llama

    clean = [text for text in texts if isinstance(text, str) and text.strip()]
    if not clean:
        raise InvalidInputError("init_base needs at least one non-empty text")
    if config.hidden_size % config.heads:
        raise InvalidInputError(
            f"heads ({config.heads}) must divide hidden_size ({config.hidden_size})"
        )
    out = Path(out_dir)
    init_dir = build_tiny_llama(
        out / "init",
        texts=clean,
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        layers=config.layers,
        heads=config.heads,
        max_positions=config.max_positions,
        seed=config.seed,
    )
    tracker.log_params({"trainer": "pretrain", **config.model_dump(mode="json")})
    sft = SFTConfig(
        format="text",
        lora=None,
        packing=True,
        max_steps=config.steps,
        max_length=config.seq_len,
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        warmup_ratio=0.05,
        seed=config.seed,
        device_hour_price=config.device_hour_price,
        logging_steps=10,
    )
    rows = [{"text": text} for text in clean]
    return run_sft(sft, init_dir, rows, None, out, tracker)
