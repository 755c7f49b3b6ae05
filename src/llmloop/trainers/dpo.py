"""Preference tuning: :class:`DPOConfig` and ``run_dpo`` on TRL's ``DPOTrainer``.

Rows are ``{"prompt", "chosen", "rejected"}`` strings, the shape feedback produces. They are
rendered through the chat template (user prompt, assistant answers) unless ``use_chat_template``
is off. With LoRA the reference model is the base with the adapter disabled; with full
fine-tuning TRL keeps a frozen copy. Tracking, checkpoints, resume and the result come from
``loop.py`` exactly as for SFT. This module does not collect preferences or register models.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from llmloop.errors import InvalidInputError
from llmloop.trainers.base import Tracker, TrainerConfig, TrainResult
from llmloop.trainers.sft import load_base, peft_config

if TYPE_CHECKING:
    from transformers import TrainerCallback

__all__ = ["DPOConfig", "prepare_preferences", "run_dpo"]

_FIELDS = ("prompt", "chosen", "rejected")


class DPOConfig(TrainerConfig):
    """Direct preference optimisation settings on top of the shared trainer settings."""

    learning_rate: float = Field(5e-5, gt=0, le=1.0, description="Peak learning rate.")
    beta: float = Field(0.1, gt=0, description="Strength of the KL pull towards the reference.")
    loss_type: str = Field("sigmoid", description="TRL DPO loss ('sigmoid', 'ipo', 'hinge'...).")


def prepare_preferences(
    rows: Sequence[dict[str, Any]], use_chat_template: bool
) -> list[dict[str, Any]]:
    """Check every preference row and turn it into TRL's (conversational) preference record."""
    if not rows:
        raise InvalidInputError("no preference rows to train on")
    records = []
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise InvalidInputError(f"row {index} is not an object", row=index)
        for key in _FIELDS:
            if not isinstance(row.get(key), str) or not row[key]:
                raise InvalidInputError(
                    f"row {index}: '{key}' must be a non-empty string", row=index
                )
        if row["chosen"] == row["rejected"]:
            raise InvalidInputError(f"row {index}: 'chosen' equals 'rejected'", row=index)
        if use_chat_template:
            records.append(
                {
                    "prompt": [{"role": "user", "content": row["prompt"]}],
                    "chosen": [{"role": "assistant", "content": row["chosen"]}],
                    "rejected": [{"role": "assistant", "content": row["rejected"]}],
                }
            )
        else:
            records.append({key: row[key] for key in _FIELDS})
    return records


def run_dpo(
    config: DPOConfig,
    base_model_dir: str | Path,
    train_rows: Sequence[dict[str, Any]],
    eval_rows: Sequence[dict[str, Any]] | None,
    out_dir: str | Path,
    tracker: Tracker,
    callbacks: Sequence[TrainerCallback] = (),
) -> TrainResult:
    """Preference-tune ``base_model_dir``; resume from ``out_dir``'s last complete checkpoint."""
    train_records = prepare_preferences(train_rows, config.use_chat_template)
    eval_records = prepare_preferences(eval_rows, config.use_chat_template) if eval_rows else None
    import trl
    from datasets import Dataset

    from llmloop.trainers.loop import TrackingCallback, train_and_save, training_arguments

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model, tokenizer = load_base(base_model_dir)
    args = trl.DPOConfig(
        **training_arguments(config, out, has_eval=eval_records is not None),
        max_length=config.max_length,
        beta=config.beta,
        loss_type=[config.loss_type],
        dataset_num_proc=None,
    )
    tracker.log_params({**config.model_dump(mode="json"), "trainer": "dpo"})
    tracking = TrackingCallback(tracker, config, loss_is_nll=False)
    trainer = trl.DPOTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(train_records),
        eval_dataset=Dataset.from_list(eval_records) if eval_records else None,
        processing_class=tokenizer,
        peft_config=peft_config(config, model),
        callbacks=[tracking, *callbacks],
    )
    return train_and_save(trainer, tracking, config, tokenizer, out)
