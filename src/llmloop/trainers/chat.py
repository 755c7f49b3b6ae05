"""Chat rows as training examples: token ids, and labels that train only the assistant's turns.

A conversation is rendered once with the base model's chat template; each assistant turn is
located as the text between the conversation rendered up to it (with the generation prompt) and
the conversation rendered through it, so its end-of-turn token is trained too and the model
learns to stop. Tokens of system, user and tool turns (and assistant turns with ``weight: 0``,
as in OpenAI's fine-tuning format) get the label -100: they are context, not targets. Tool calls
and tool names are passed to the template, which must render them. This module does not check
row shapes (``sft.py``) nor train anything; it needs only a tokenizer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llmloop.errors import ConfigError

__all__ = ["IGNORE_INDEX", "render_chat", "tokenize_chat"]

#: The label PyTorch's cross-entropy (and every transformers model) leaves out of the loss.
IGNORE_INDEX = -100


def render_chat(
    tokenizer: Any,
    messages: Sequence[dict[str, Any]],
    tools: list[dict[str, Any]] | None,
    add_generation_prompt: bool,
    index: int,
) -> str:
    """The conversation as text through ``tokenizer``'s chat template (ConfigError on failure)."""
    turns = [{k: v for k, v in m.items() if k != "weight"} for m in messages]
    try:
        text = tokenizer.apply_chat_template(
            turns, tools=tools, tokenize=False, add_generation_prompt=add_generation_prompt
        )
    except Exception as exc:  # jinja errors of a third-party template, of any type
        raise ConfigError(f"row {index}: the chat template cannot render it: {exc}") from exc
    return str(text)


def _assistant_spans(
    tokenizer: Any, messages: list[dict[str, Any]], tools: Any, text: str, index: int
) -> list[tuple[int, int]]:
    """Character spans of ``text`` holding the trained assistant turns."""
    spans = []
    for turn, message in enumerate(messages):
        if message["role"] != "assistant" or message.get("weight", 1) == 0:
            continue
        before = render_chat(tokenizer, messages[:turn], tools, True, index)
        through = render_chat(tokenizer, messages[: turn + 1], tools, False, index)
        if not (text.startswith(through) and through.startswith(before)):
            raise ConfigError(
                f"row {index}: the base model's chat template does not render a conversation as "
                "the sum of its turns, so the assistant's tokens cannot be told apart; set "
                "assistant_only_loss=false to train on every token"
            )
        spans.append((len(before), len(through)))
    return spans


def _check_tool_calls(messages: list[dict[str, Any]], text: str, index: int) -> None:
    """Refuse a template that silently drops the tool calls it is given."""
    for message in messages:
        for call in message.get("tool_calls") or []:
            name = str((call.get("function") or {}).get("name", ""))
            if name and name not in text:
                raise ConfigError(
                    f"row {index}: the base model's chat template does not render tool calls "
                    f"('{name}' is missing from the rendered text); use a template with tools"
                )


def _token_labels(
    tokenizer: Any, text: str, spans: list[tuple[int, int]], assistant_only: bool
) -> tuple[list[int], list[int]]:
    """Token ids of ``text`` and their labels (-100 outside ``spans`` when assistant_only)."""
    if not assistant_only:
        ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
        return ids, list(ids)
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = list(enc["input_ids"])
        labels = [
            tid if any(start < end_ and end > start_ for start_, end_ in spans) else IGNORE_INDEX
            for tid, (start, end) in zip(ids, enc["offset_mapping"], strict=True)
        ]
        return ids, labels
    # A slow tokenizer has no offsets: tokenize the pieces between span boundaries.
    ids, labels, cursor = [], [], 0
    for start, end in [*spans, (len(text), len(text))]:
        for piece, trained in ((text[cursor:start], False), (text[start:end], True)):
            piece_ids = (
                list(tokenizer(piece, add_special_tokens=False)["input_ids"]) if piece else []
            )
            ids += piece_ids
            labels += piece_ids if trained else [IGNORE_INDEX] * len(piece_ids)
        cursor = end
    return ids, labels


def tokenize_chat(
    records: Sequence[dict[str, Any]], tokenizer: Any, assistant_only: bool = True
) -> list[dict[str, list[int]]]:
    """``{"input_ids", "labels"}`` per chat record (``{"messages", "tools"?}``), untruncated."""
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError("chat rows need a chat template, and the base model's tokenizer has none")
    examples = []
    for index, record in enumerate(records):
        messages, tools = list(record["messages"]), record.get("tools")
        text = render_chat(tokenizer, messages, tools, False, index)
        _check_tool_calls(messages, text, index)
        spans = _assistant_spans(tokenizer, messages, tools, text, index) if assistant_only else []
        if assistant_only and not spans:
            raise ConfigError(f"row {index}: every assistant turn has weight 0; nothing to train")
        ids, labels = _token_labels(tokenizer, text, spans, assistant_only)
        examples.append({"input_ids": ids, "labels": labels})
    return examples
