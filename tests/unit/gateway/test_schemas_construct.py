"""The request parser's fast constructor builds exactly what pydantic's ``model_construct`` does
(same values in field order, same fields set, no extra, no private state), so the instances
behave alike everywhere; a pydantic release that changes its internals fails here."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, Field

from llmloop.api.gateway.schemas import _maker, parse_chat, parse_completion
from llmloop.core.chat import ChatMessage, GenerationRequest, SamplingParams, ToolCall


def _state(obj: BaseModel) -> tuple[Any, ...]:
    return (
        type(obj),
        list(obj.__dict__.items()),
        obj.model_fields_set,
        obj.__pydantic_extra__,
        obj.__pydantic_private__,
    )


CASES: list[tuple[type[BaseModel], dict[str, Any]]] = [
    (ChatMessage, {"role": "user", "content": "hi", "parts": None, "name": None,
                   "tool_calls": None, "tool_call_id": None}),
    (ChatMessage, {"content": "out of order", "role": "assistant"}),
    (ToolCall, {"id": "call_1", "name": "f", "arguments": "{}"}),
    (GenerationRequest, {"model": "m", "messages": [ChatMessage(role="user", content="x")],
                         "sampling": SamplingParams(max_tokens=3), "user": "u"}),
    (GenerationRequest, {"model": "m", "prompt": "p"}),  # sampling from its default factory
]  # fmt: skip


@pytest.mark.parametrize(("cls", "values"), CASES)
def test_maker_builds_what_model_construct_builds(
    cls: type[BaseModel], values: dict[str, Any]
) -> None:
    fast = _maker(cls)(**dict(values))
    slow = cls.model_construct(**dict(values))
    assert _state(fast) == _state(slow)
    assert fast == slow and fast.model_dump() == slow.model_dump()
    assert fast.model_dump_json() == slow.model_dump_json()


def test_default_factories_give_each_instance_its_own_value() -> None:
    make = _maker(GenerationRequest)
    a, b = make(model="m", prompt="a"), make(model="m", prompt="b")
    assert a.sampling == SamplingParams() and a.sampling is not b.sampling


def test_models_it_cannot_build_are_refused_at_import() -> None:
    class Aliased(BaseModel):
        value: int = Field(alias="v")

    class PostInit(BaseModel):
        value: int = 0

        def model_post_init(self, context: Any, /) -> None:
            pass

    for cls in (Aliased, PostInit):
        with pytest.raises(TypeError, match="needs model_construct"):
            _maker(cls)


def test_parsed_requests_equal_their_model_construct_twins() -> None:
    body = {"model": "chat", "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
        {"role": "user", "content": "and?"}], "max_tokens": 5, "user": "u1"}  # fmt: skip
    req, _ = parse_chat(body)
    twin = GenerationRequest.model_construct(**{k: getattr(req, k) for k in req.model_fields_set})
    assert _state(req) == _state(twin)
    for msg in req.messages or []:
        values = {k: getattr(msg, k) for k in msg.model_fields_set}
        assert _state(msg) == _state(ChatMessage.model_construct(**values))
    [completion], _ = parse_completion({"model": "c", "prompt": "once", "echo": True})
    values = {k: getattr(completion, k) for k in completion.model_fields_set}
    assert _state(completion) == _state(GenerationRequest.model_construct(**values))
