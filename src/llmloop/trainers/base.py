"""The trainer contract: a tracker to stream to, a config base and the result every trainer returns.

Trainers are adapters: the service layer hands them rows already loaded from a dataset version,
an output directory and a :class:`Tracker`; they return a :class:`TrainResult`. This module holds
only those values and the two trackers shipped for callers that do not record runs
(:class:`NullTracker`) and for tests (:class:`RecordingTracker`). It imports no torch and knows
nothing of the registry, the store or how runs are persisted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llmloop.errors import ConfigError

__all__ = [
    "LoraSettings",
    "NullTracker",
    "RecordingTracker",
    "Tracker",
    "TrainResult",
    "TrainerConfig",
]


@runtime_checkable
class Tracker(Protocol):
    """Where a training run streams its parameters and metrics (a run in the registry, a test)."""

    def log_params(self, params: dict[str, Any]) -> None:
        """Record the run's parameters once, before training starts."""

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Record metric values observed at a global optimisation ``step``."""

    def should_stop(self) -> bool:
        """Whether the caller asked the run to stop (a cancel button); checked every step."""


class NullTracker:
    """A tracker that records nothing and never asks to stop."""

    def log_params(self, params: dict[str, Any]) -> None:
        """Drop the parameters."""

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Drop the metrics."""

    def should_stop(self) -> bool:
        """Never stop."""
        return False


class RecordingTracker:
    """An in-memory tracker: keeps every call so tests can assert on what a run reported."""

    def __init__(self, stop_after_step: int | None = None) -> None:
        self.params: dict[str, Any] = {}
        self.metrics: list[tuple[int, dict[str, float]]] = []
        self.stop_after_step = stop_after_step

    def log_params(self, params: dict[str, Any]) -> None:
        """Merge ``params`` into :attr:`params`."""
        self.params.update(params)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Append ``(step, metrics)`` to :attr:`metrics`."""
        self.metrics.append((step, dict(metrics)))

    def should_stop(self) -> bool:
        """Ask to stop once a step at or past ``stop_after_step`` was logged."""
        if self.stop_after_step is None:
            return False
        return any(step >= self.stop_after_step for step, _ in self.metrics)

    def series(self, name: str) -> list[tuple[int, float]]:
        """Every ``(step, value)`` logged for metric ``name``, in order."""
        return [(step, values[name]) for step, values in self.metrics if name in values]


class LoraSettings(BaseModel):
    """Low-rank adapter settings (PEFT ``LoraConfig``); absent means full fine-tuning."""

    model_config = ConfigDict(extra="forbid")

    r: int = Field(8, ge=1, le=1024, description="Rank of the low-rank update matrices.")
    alpha: int = Field(16, ge=1, description="LoRA scaling numerator (scale = alpha / r).")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on the LoRA input.")
    target_modules: list[str] | Literal["all-linear"] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        description="Module names to adapt, or 'all-linear' for every linear layer.",
    )


class TrainerConfig(BaseModel):
    """Settings shared by every trainer: schedule, batches, evaluation, checkpoints and cost."""

    model_config = ConfigDict(extra="forbid")

    learning_rate: float = Field(2e-4, gt=0, le=1.0, description="Peak learning rate.")
    num_epochs: float = Field(1.0, gt=0, description="Passes over the training rows.")
    max_steps: int = Field(-1, ge=-1, description="Stop after this many steps (-1: use epochs).")
    batch_size: int = Field(4, ge=1, description="Rows per device per forward pass.")
    gradient_accumulation_steps: int = Field(
        1, ge=1, description="Forward passes whose gradients are summed before one step."
    )
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="Fraction of steps warming up.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_length: int = Field(256, ge=8, description="Tokens per example after truncation.")
    lora: LoraSettings | None = Field(
        default_factory=LoraSettings, description="LoRA settings; null for full fine-tuning."
    )
    eval_steps: int = Field(
        0, ge=0, description="Evaluate every N steps when eval rows are given (0: per epoch)."
    )
    early_stopping_patience: int | None = Field(
        None, ge=1, description="Stop after this many evaluations without a lower eval loss."
    )
    save_steps: int = Field(0, ge=0, description="Checkpoint every N steps (0: no checkpoints).")
    save_total_limit: int = Field(2, ge=1, description="Checkpoints kept on disk.")
    resume: bool = Field(
        True, description="Resume from the latest complete checkpoint found in the output dir."
    )
    logging_steps: int = Field(1, ge=1, description="Report training metrics every N steps.")
    seed: int = Field(0, description="Seed for weights init, data order and dropout.")
    device_hour_price: float = Field(
        0.0, ge=0, description="Price of one device-hour; cost = device-hours x price."
    )
    use_chat_template: bool = Field(
        True, description="Render instruction and preference rows through the chat template."
    )
    processes: int = Field(
        1,
        ge=1,
        le=64,
        description="Data-parallel processes (one per GPU, or CPU processes) started with "
        "torchrun; 1 trains in the calling process.",
    )
    accelerate_config: str | None = Field(
        None,
        description="An accelerate config file (several nodes, FSDP, DeepSpeed): the run is "
        "started with `accelerate launch --config_file` instead of torchrun.",
    )

    @model_validator(mode="after")
    def _check_patience(self) -> TrainerConfig:
        if self.early_stopping_patience is not None and self.eval_steps == 0:
            raise ConfigError("early_stopping_patience needs eval_steps > 0")
        if self.max_steps == 0:  # transformers would read 0 as "use the epochs" and train them
            raise ConfigError("max_steps must be at least 1, or -1 to train num_epochs")
        return self


class TrainResult(BaseModel):
    """What a training run produced: where its outputs are and what it measured."""

    model_config = ConfigDict(extra="forbid")

    output_dir: Path = Field(description="The run's output directory (checkpoints live here).")
    adapter_dir: Path | None = Field(
        None, description="Saved LoRA adapter with its tokenizer, when LoRA was used."
    )
    merged: Path | None = Field(
        None,
        description="Standalone weights loadable with from_pretrained: the full fine-tune, or "
        "the adapter merged into its base.",
    )
    tokenizer_dir: Path = Field(description="Directory holding the tokenizer to serve with.")
    metrics: dict[str, float] = Field(default_factory=dict, description="Final metrics.")
    train_tokens: int = Field(0, ge=0, description="Non-padding tokens seen in training.")
    wall_time_s: float = Field(0.0, ge=0, description="Seconds spent in training.")
    peak_memory_mb: float = Field(0.0, ge=0, description="Peak RSS, or CUDA max allocated.")
    cost_estimate: float = Field(0.0, ge=0, description="device-hours x device_hour_price.")
    steps: int = Field(0, ge=0, description="Optimisation steps reached (global step).")
    resumed_from: Path | None = Field(None, description="Checkpoint the run resumed from.")
    stopped_early: bool = Field(
        False, description="Whether early stopping or the tracker ended the run before its end."
    )
