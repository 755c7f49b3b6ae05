"""Supervised fine-tuning: :class:`SFTConfig` and ``run_sft`` on TRL's ``SFTTrainer`` with PEFT.

Three row shapes are accepted, and checked row by row before any model is loaded:

- chat: ``{"messages": [{"role": ..., "content": ...}, ...]}`` (optionally ``"tools"``, assistant
  ``tool_calls`` and ``weight``) rendered with the chat template; the loss is on the assistant
  turns only (``chat.py`` builds the labels) unless ``assistant_only_loss`` is off;
- instruction: ``{"prompt": ..., "response": ...}`` trained as prompt-completion (loss on the
  response only), through the chat template unless ``use_chat_template`` is off;
- text: ``{"text": ...}`` trained as plain causal language modelling.

LoRA (``config.lora``) or full fine-tuning, packing, gradient accumulation, evaluation during
training (eval loss and perplexity), early stopping, checkpoints and resume after a crash come
from :class:`~llmloop.trainers.base.TrainerConfig` and ``loop.py``. This module does not pick
hyperparameters (``hpo.py``), merge or export weights (``export.py``) or register anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from llmloop.errors import ConfigError, InvalidInputError, NotFoundError
from llmloop.trainers.base import Tracker, TrainerConfig, TrainResult

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback

__all__ = ["RowFormat", "SFTConfig", "detect_format", "load_base", "prepare_rows", "run_sft"]

RowFormat = Literal["chat", "instruction", "text"]
_ROLES = {"system", "user", "assistant", "tool", "developer"}


class SFTConfig(TrainerConfig):
    """Supervised fine-tuning settings on top of the shared trainer settings."""

    format: RowFormat | Literal["auto"] = Field(
        "auto", description="Row shape; 'auto' detects it from the first row's keys."
    )
    packing: bool = Field(
        False, description="Pack several short examples into each max_length sequence."
    )
    completion_only_loss: bool = Field(
        True, description="For instruction rows, compute the loss on the response tokens only."
    )
    assistant_only_loss: bool = Field(
        True,
        description="For chat rows, compute the loss on the assistant turns only (system, user "
        "and tool turns are context, not targets).",
    )


def _shape(row: dict[str, Any]) -> RowFormat | None:
    if "messages" in row:
        return "chat"
    if "prompt" in row and "response" in row:
        return "instruction"
    if "text" in row:
        return "text"
    return None


def detect_format(row: dict[str, Any]) -> RowFormat:
    """The shape of one row from its keys; raise :class:`InvalidInputError` when none fits."""
    shape = _shape(row)
    if shape is None:
        raise InvalidInputError(
            "row 0 has none of 'messages', 'prompt'+'response' or 'text'", keys=sorted(row)
        )
    return shape


def _require_str(row: dict[str, Any], key: str, index: int) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidInputError(f"row {index}: '{key}' must be a non-empty string", row=index)
    return value


def _check_message(message: Any, index: int, turn: int) -> dict[str, Any]:
    """One chat message, with the keys chat templates read (tool calls and names kept)."""
    where = f"row {index}, message {turn}"
    if not isinstance(message, dict) or message.get("role") not in _ROLES:
        raise InvalidInputError(f"{where}: needs a role in {sorted(_ROLES)}", row=index)
    calls = message.get("tool_calls")
    if calls is not None and (
        message["role"] != "assistant"
        or not isinstance(calls, list)
        or not all(isinstance(c, dict) and isinstance(c.get("function"), dict) for c in calls)
    ):
        raise InvalidInputError(
            f"{where}: 'tool_calls' must be an assistant's list of {{'function': ...}}", row=index
        )
    content = message.get("content")
    if content is None and calls:  # OpenAI's shape of a turn that only calls tools
        content = ""
    if not isinstance(content, str):
        raise InvalidInputError(f"{where}: 'content' must be a string", row=index)
    if message.get("weight", 1) not in (0, 1):
        raise InvalidInputError(f"{where}: 'weight' must be 0 or 1", row=index)
    kept = {"role": message["role"], "content": content}
    for key in ("tool_calls", "name", "tool_call_id", "weight"):
        if message.get(key) is not None:
            kept[key] = message[key]
    return kept


def _check_messages(row: dict[str, Any], index: int) -> dict[str, Any]:
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidInputError(f"row {index}: 'messages' must be a non-empty list", row=index)
    checked = [_check_message(message, index, turn) for turn, message in enumerate(messages)]
    if checked[-1]["role"] != "assistant":
        raise InvalidInputError(f"row {index}: the last message must be the assistant's", row=index)
    tools = row.get("tools")
    if tools is not None and not (
        isinstance(tools, list) and all(isinstance(t, dict) for t in tools)
    ):
        raise InvalidInputError(f"row {index}: 'tools' must be a list of objects", row=index)
    return {"messages": checked, **({"tools": tools} if tools else {})}


def prepare_rows(
    rows: Sequence[dict[str, Any]], fmt: RowFormat | Literal["auto"], use_chat_template: bool
) -> tuple[RowFormat, list[dict[str, Any]]]:
    """Check every row and turn it into the record TRL expects; return the format and records."""
    if not rows:
        raise InvalidInputError("no rows to train on")
    if not isinstance(rows[0], dict):
        raise InvalidInputError("row 0 is not an object", row=0)
    resolved: RowFormat = detect_format(rows[0]) if fmt == "auto" else fmt
    records: list[dict[str, Any]] = []
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise InvalidInputError(f"row {index} is not an object", row=index)
        if fmt == "auto" and (shape := _shape(row)) not in (None, resolved):
            raise InvalidInputError(
                f"row {index} is shaped as {shape} but row 0 as {resolved}; one dataset holds "
                "one shape (convert the rows or train on the shapes separately)",
                row=index,
            )
        if resolved == "chat":
            records.append(_check_messages(row, index))
        elif resolved == "text":
            records.append({"text": _require_str(row, "text", index)})
        else:
            prompt = _require_str(row, "prompt", index)
            response = _require_str(row, "response", index)
            if use_chat_template:
                records.append(
                    {
                        "prompt": [{"role": "user", "content": prompt}],
                        "completion": [{"role": "assistant", "content": response}],
                    }
                )
            else:
                records.append({"prompt": prompt, "completion": response})
    return resolved, records


def load_base(base_model_dir: str | Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer from a local directory (never from a hub)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(base_model_dir)
    if not (path / "config.json").is_file():
        raise NotFoundError(f"no model (config.json) in {path}")
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
    return model, tokenizer


def peft_config(config: TrainerConfig, model: PreTrainedModel | None = None) -> Any:
    """PEFT ``LoraConfig`` from the trainer settings, or None for full fine-tuning.

    With ``model``, target modules it does not have are a :class:`ConfigError` naming the ones
    it has (PEFT's own error would surface from deep inside the trainer).
    """
    if config.lora is None:
        return None
    from peft import LoraConfig

    if model is not None and config.lora.target_modules != "all-linear":
        check_lora_targets(model, config.lora.target_modules)
    return LoraConfig(
        r=config.lora.r,
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        target_modules=config.lora.target_modules,
        task_type="CAUSAL_LM",
    )


def check_lora_targets(model: PreTrainedModel, targets: Sequence[str]) -> None:
    """Refuse LoRA targets that match no module (PEFT matches the end of a dotted name)."""
    modules = dict(model.named_modules())
    missing = [
        target
        for target in targets
        if not any(name == target or name.endswith(f".{target}") for name in modules)
    ]
    if missing:
        linear = sorted(
            {n.rsplit(".", 1)[-1] for n, m in modules.items() if type(m).__name__ == "Linear"}
        )
        raise ConfigError(
            f"lora.target_modules {missing} are not modules of the base model; "
            f"its linear modules are {linear} (or use 'all-linear')"
        )


def run_sft(
    config: SFTConfig,
    base_model_dir: str | Path,
    train_rows: Sequence[dict[str, Any]],
    eval_rows: Sequence[dict[str, Any]] | None,
    out_dir: str | Path,
    tracker: Tracker,
    callbacks: Sequence[TrainerCallback] = (),
) -> TrainResult:
    """Fine-tune ``base_model_dir`` on ``train_rows``; resume from ``out_dir``'s last checkpoint.

    ``callbacks`` are extra transformers callbacks (``hpo.py`` passes its pruning callback).
    """
    fmt, train_records = prepare_rows(train_rows, config.format, config.use_chat_template)
    eval_records = None
    if eval_rows:
        _, eval_records = prepare_rows(eval_rows, fmt, config.use_chat_template)
    import trl
    from datasets import Dataset

    from llmloop.trainers.loop import TrackingCallback, train_and_save, training_arguments

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model, tokenizer = load_base(base_model_dir)
    if fmt == "chat":  # TRL would train on every token of templates without generation markers
        from llmloop.trainers.chat import tokenize_chat

        train_records = tokenize_chat(train_records, tokenizer, config.assistant_only_loss)
        if eval_records:
            eval_records = tokenize_chat(eval_records, tokenizer, config.assistant_only_loss)
    args = trl.SFTConfig(
        **training_arguments(config, out, has_eval=eval_records is not None),
        max_length=config.max_length,
        packing=config.packing,
        completion_only_loss=config.completion_only_loss if fmt == "instruction" else None,
        dataset_num_proc=None,
    )
    tracker.log_params({**config.model_dump(mode="json"), "trainer": "sft", "format": fmt})
    tracking = TrackingCallback(tracker, config)
    trainer = trl.SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(train_records),
        eval_dataset=Dataset.from_list(eval_records) if eval_records else None,
        processing_class=tokenizer,
        peft_config=peft_config(config, model),
        callbacks=[tracking, *callbacks],
    )
    _require_examples(trainer, config.max_length)
    return train_and_save(trainer, tracking, config, tokenizer, out)


def _require_examples(trainer: Any, max_length: int) -> None:
    """Refuse a run whose rows all lost their trained tokens to truncation (TRL drops them)."""
    for name in ("train", "eval"):
        dataset = getattr(trainer, f"{name}_dataset")
        if dataset is not None and len(dataset) == 0:
            raise InvalidInputError(
                f"no {name} row keeps a trained token within max_length={max_length} tokens "
                "(the prompts fill the window); raise max_length or shorten the prompts"
            )
