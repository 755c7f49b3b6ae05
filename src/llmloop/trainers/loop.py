"""One run of a transformers/TRL trainer: stream it to a tracker, resume it, save it, measure it.

``TrackingCallback`` forwards every log (loss, eval loss, learning rate) to a :class:`Tracker`
with tokens/s, wall time, peak memory and estimated cost, applies early-stopping patience, and
stops the run when the tracker asks. ``train_and_save`` resumes from the latest *complete*
checkpoint in the output directory (a process killed mid-save leaves a partial one, skipped),
trains, saves the adapter or full weights with the tokenizer and returns a :class:`TrainResult`.
It does not build datasets, models or trainers: ``sft.py`` and ``dpo.py`` do. Imported lazily
(it imports transformers at module level).
"""

from __future__ import annotations

import math
import resource
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from transformers import (
    PreTrainedTokenizerBase,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)

from llmloop.trainers.base import Tracker, TrainerConfig, TrainResult

# TRL still sets the renamed argument; transformers warns on every run (not the user's to fix).
warnings.filterwarnings(
    "ignore",
    message=r"`(is_)?gradient_checkpointing(_enable|_disable)?` is deprecated",
    category=FutureWarning,
)

CHECKPOINT_PREFIX = "checkpoint-"
# A checkpoint is complete once these are written (the trainer state is written last).
_CHECKPOINT_FILES = ("trainer_state.json",)
_WEIGHT_FILES = ("model.safetensors", "adapter_model.safetensors", "pytorch_model.bin")


def peak_memory_mb() -> float:
    """Peak memory of this process: CUDA max allocated when on GPU, else peak RSS (Linux KiB)."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def latest_checkpoint(out_dir: Path) -> Path | None:
    """The highest-step checkpoint under ``out_dir`` whose weights and state were fully written."""
    if not out_dir.is_dir():
        return None
    complete = []
    for path in out_dir.glob(f"{CHECKPOINT_PREFIX}*"):
        suffix = path.name[len(CHECKPOINT_PREFIX) :]
        has_state = all((path / name).is_file() for name in _CHECKPOINT_FILES)
        has_weights = any((path / name).is_file() for name in _WEIGHT_FILES)
        if suffix.isdigit() and has_state and has_weights:
            complete.append((int(suffix), path))
    return max(complete)[1] if complete else None


class TrackingCallback(TrainerCallback):
    """Streams a trainer's logs to a tracker; early-stops on eval loss; obeys the tracker's stop."""

    def __init__(self, tracker: Tracker, config: TrainerConfig, loss_is_nll: bool = True) -> None:
        self.tracker = tracker
        self.config = config
        self.loss_is_nll = loss_is_nll  # False for DPO: exp(loss) is then no perplexity
        self.started = 0.0
        self.tokens_at_start = 0
        self.best_eval_loss = math.inf
        self.evals_without_gain = 0
        self.stopped_early = False
        self.last_metrics: dict[str, float] = {}

    def elapsed_s(self) -> float:
        """Seconds since training started in this process."""
        return time.perf_counter() - self.started if self.started else 0.0

    def cost(self, elapsed_s: float) -> float:
        """Estimated cost of ``elapsed_s`` seconds on one device."""
        return elapsed_s / 3600 * self.config.device_hour_price

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        self.started = time.perf_counter()
        self.tokens_at_start = int(state.num_input_tokens_seen or 0)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kw: Any,
    ) -> None:
        metrics = {k: float(v) for k, v in (logs or {}).items() if isinstance(v, int | float)}
        if "eval_loss" in metrics and self.loss_is_nll:
            metrics["eval_perplexity"] = math.exp(min(metrics["eval_loss"], 50.0))
        elapsed = self.elapsed_s()
        tokens = int(state.num_input_tokens_seen or 0) - self.tokens_at_start
        metrics["tokens_per_s"] = tokens / elapsed if elapsed > 0 else 0.0
        metrics["wall_time_s"] = elapsed
        metrics["peak_memory_mb"] = peak_memory_mb()
        metrics["cost_estimate"] = self.cost(elapsed)
        self.last_metrics.update(metrics)
        self.tracker.log_metrics(metrics, step=state.global_step)

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: dict[str, float] | None = None,
        **kw: Any,
    ) -> None:
        patience = self.config.early_stopping_patience
        loss = (metrics or {}).get("eval_loss")
        if patience is None or loss is None:
            return
        if loss < self.best_eval_loss:
            self.best_eval_loss, self.evals_without_gain = loss, 0
            return
        self.evals_without_gain += 1
        if self.evals_without_gain >= patience:
            self.stopped_early = True
            control.should_training_stop = True

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        if self.tracker.should_stop():
            self.stopped_early = True
            control.should_training_stop = True
            control.should_save = self.config.save_steps > 0


def training_arguments(config: TrainerConfig, out_dir: Path, has_eval: bool) -> dict[str, Any]:
    """The ``TrainingArguments`` keywords every trainer derives from a :class:`TrainerConfig`."""
    eval_strategy = "no"
    if has_eval:
        eval_strategy = "steps" if config.eval_steps else "epoch"
    on_gpu = torch.cuda.is_available()
    return {
        "output_dir": str(out_dir),
        # TRL defaults to bf16, which CPUs here cannot train in.
        "bf16": on_gpu and torch.cuda.is_bf16_supported(),
        "use_cpu": not on_gpu,
        "learning_rate": config.learning_rate,
        "num_train_epochs": config.num_epochs,
        "max_steps": config.max_steps,
        "per_device_train_batch_size": config.batch_size,
        "per_device_eval_batch_size": config.batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "warmup_steps": config.warmup_ratio,
        "weight_decay": config.weight_decay,
        "eval_strategy": eval_strategy,
        "eval_steps": config.eval_steps or None,
        "save_strategy": "steps" if config.save_steps else "no",
        "save_steps": config.save_steps or 500,
        "save_total_limit": config.save_total_limit,
        "logging_steps": config.logging_steps,
        "seed": config.seed,
        "data_seed": config.seed,
        "report_to": "none",
        "disable_tqdm": True,
        "include_num_input_tokens_seen": "non_padding",
        "dataloader_pin_memory": False,
    }


def train_and_save(
    trainer: Trainer,
    tracking: TrackingCallback,
    config: TrainerConfig,
    tokenizer: PreTrainedTokenizerBase,
    out_dir: Path,
) -> TrainResult:
    """Train (resuming when a checkpoint exists), save the outputs, evaluate, build the result."""
    trainer.remove_callback(PrinterCallback)  # the tracker gets the logs; keep stdout quiet
    resume_from = latest_checkpoint(out_dir) if config.resume else None
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    wall_time = tracking.elapsed_s()
    state = trainer.state
    main = trainer.is_world_process_zero()  # with several processes, rank 0 writes the outputs
    if config.lora is not None:
        adapter_dir, merged, tokenizer_dir = out_dir / "adapter", None, out_dir / "adapter"
        peft_model: Any = trainer.model
        if main:
            peft_model.save_pretrained(adapter_dir)
    else:
        adapter_dir, merged, tokenizer_dir = None, out_dir / "model", out_dir / "model"
        trainer.save_model(str(merged))  # writes on rank 0 only
    if main:
        tokenizer.save_pretrained(tokenizer_dir)
    metrics = {k: v for k, v in tracking.last_metrics.items() if k.startswith("train_")}
    losses = [e["loss"] for e in state.log_history if "loss" in e]
    if losses:
        metrics["train_loss_last"] = float(losses[-1])
    if trainer.eval_dataset is not None:
        final = trainer.evaluate()
        metrics.update({k: float(v) for k, v in final.items() if isinstance(v, int | float)})
        if tracking.loss_is_nll:
            metrics["eval_perplexity"] = math.exp(min(metrics["eval_loss"], 50.0))
    tokens = int(state.num_input_tokens_seen or 0)
    new_tokens = tokens - tracking.tokens_at_start
    metrics["tokens_per_s"] = new_tokens / wall_time if wall_time > 0 else 0.0
    return TrainResult(
        output_dir=out_dir,
        adapter_dir=adapter_dir,
        merged=merged,
        tokenizer_dir=tokenizer_dir,
        metrics=metrics,
        train_tokens=tokens,
        wall_time_s=wall_time,
        peak_memory_mb=peak_memory_mb(),
        cost_estimate=tracking.cost(wall_time),
        steps=state.global_step,
        resumed_from=resume_from,
        stopped_early=tracking.stopped_early,
    )
