"""JSON-schema validity of the final output, and size/abuse limits on requests."""

from __future__ import annotations

import pytest

from llmloop.core.chat import ChatMessage
from llmloop.errors import ConfigError
from llmloop.guards.schema import JsonSchemaConfig, JsonSchemaGuard
from llmloop.guards.size import SizeConfig, SizeGuard

SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name"],
}


def test_valid_and_fenced_documents_pass() -> None:
    guard = JsonSchemaGuard(JsonSchemaConfig(json_schema=SCHEMA))
    assert guard.check_output('{"name": "Ada", "age": 36}', final=True) == []
    assert guard.check_output('```json\n{"name": "Ada"}\n```', final=True) == []


def test_partial_output_is_not_judged() -> None:
    guard = JsonSchemaGuard(JsonSchemaConfig(json_schema=SCHEMA))
    assert guard.check_output('{"name": ', final=False) == []
    assert guard.window_chars == 0


@pytest.mark.parametrize(
    ("text", "rule_id", "where"),
    [
        ("not json at all", "schema.invalid_json", "not JSON"),
        ('{"age": 3}', "schema.violation", "(root)"),
        ('{"name": "x", "age": -1}', "schema.violation", "at age"),
    ],
)
def test_failures_have_rule_ids(text: str, rule_id: str, where: str) -> None:
    [verdict] = JsonSchemaGuard(JsonSchemaConfig(json_schema=SCHEMA)).check_output(text, True)
    assert verdict.rule_id == rule_id and where in verdict.reason


def test_fence_can_be_refused_and_bad_schema_is_a_config_error() -> None:
    strict = JsonSchemaGuard(JsonSchemaConfig(json_schema=SCHEMA, allow_fence=False))
    assert strict.check_output('```json\n{"name": "Ada"}\n```', final=True) != []
    with pytest.raises(ConfigError, match="invalid JSON schema"):
        JsonSchemaGuard(JsonSchemaConfig(json_schema={"type": "no-such-type"}))


def _msgs(*texts: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=t) for t in texts]


@pytest.mark.parametrize(
    ("config", "messages", "rule_id"),
    [
        (SizeConfig(max_messages=2), _msgs("a", "b", "c"), "size.messages"),
        (SizeConfig(max_total_chars=10), _msgs("hello", "world!"), "size.total_chars"),
        (SizeConfig(max_message_chars=5), _msgs("toolong"), "size.message_chars"),
        (SizeConfig(), _msgs("spam " * 300), "abuse.flood"),
        (SizeConfig(), _msgs("hi" + "\u200b" * 40), "abuse.invisible"),
    ],
)
def test_size_rules(config: SizeConfig, messages: list[ChatMessage], rule_id: str) -> None:
    [verdict] = SizeGuard(config).check_input(messages)
    assert verdict.rule_id == rule_id and verdict.stage == "input"


def test_size_allows_normal_requests() -> None:
    text = " ".join(f"word{i}" for i in range(400))
    assert SizeGuard().check_input(_msgs("Hello, how are you?", text)) == []
