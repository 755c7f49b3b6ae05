"""Chat-template rendering shared by the local engines (hf, vllm): messages and tools -> prompt.

Hugging Face chat templates expect OpenAI-like dicts: assistant turns carry ``tool_calls`` as
``{"id", "type": "function", "function": {"name", "arguments": <object>}}`` and tool turns a
``tool_call_id`` and the function's ``name``. :func:`template_messages` builds those from
:class:`~llmloop.core.chat.ChatMessage` values; :func:`render_chat` applies the tokenizer's
template, passing the request's tools when it wants them (only the forced one when
``tool_choice`` names a function). Template errors become ``InvalidInputError``. Nothing here
tokenizes, generates or parses answers (that is :mod:`llmloop.engines.tool_parsers`).
"""

from __future__ import annotations

import json
from typing import Any

from llmloop.core.chat import ChatMessage, GenerationRequest
from llmloop.errors import InvalidInputError


def template_text(tokenizer: Any) -> str | None:
    """The chat template source ("" when unset; named templates joined); None if unknowable."""
    if not hasattr(tokenizer, "chat_template"):
        return None  # e.g. vLLM's Mistral tokenizer renders without a Jinja template
    template = tokenizer.chat_template
    if isinstance(template, dict):
        return "\n".join(str(t) for t in template.values())
    return str(template or "")


def _arguments(text: str) -> Any:
    """Call arguments as templates want them: the JSON object, or the raw text if not one."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, dict) else text


def template_messages(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    """Messages as the dicts chat templates read (tool turns get the name of their call)."""
    names: dict[str, str] = {}  # call id -> function name, to name the tool turns
    out: list[dict[str, Any]] = []
    for message in messages:
        item: dict[str, Any] = {"role": message.role, "content": message.content}
        if message.tool_calls:
            item["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": _arguments(call.arguments)},
                }
                for call in message.tool_calls
            ]
            names.update((call.id, call.name) for call in message.tool_calls)
        if message.role == "tool":
            if message.tool_call_id is not None:
                item["tool_call_id"] = message.tool_call_id
            name = message.name or names.get(message.tool_call_id or "")
            if name:
                item["name"] = name
        out.append(item)
    return out


def template_tools(req: GenerationRequest) -> list[dict[str, Any]] | None:
    """The tools to show the model: None unless the request wants tools; only a forced one."""
    if not req.wants_tools or req.tools is None:
        return None
    forced = req.forced_tool
    if forced is None:
        return list(req.tools)
    chosen = [t for t in req.tools if (t.get("function") or {}).get("name") == forced]
    if not chosen:
        raise InvalidInputError(f"tool_choice names '{forced}', which is not among the tools")
    return chosen


def render_chat(tokenizer: Any, req: GenerationRequest) -> str:
    """The prompt text for ``req.messages`` (and its tools) from the tokenizer's template."""
    from jinja2 import TemplateError

    assert req.messages is not None
    kwargs: dict[str, Any] = {}
    tools = template_tools(req)
    if tools is not None:
        source = template_text(tokenizer)
        if source is not None and "tools" not in source:
            raise InvalidInputError(
                "this model's chat template does not render tools; "
                "give the engine a tool-capable chat template or send the request without tools"
            )
        kwargs["tools"] = tools
    try:
        text = tokenizer.apply_chat_template(
            template_messages(req.messages), tokenize=False, add_generation_prompt=True, **kwargs
        )
    except TemplateError as exc:
        raise InvalidInputError(f"the chat template cannot render these messages: {exc}") from None
    return str(text)
