"""Forced tool-call grammars: which requests get one, and that each format's grammar accepts
exactly the calls its tool parser reads back (checked with xgrammar on a character vocabulary,
no model)."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
from hf_helpers import TRIP

from llmloop.core.chat import ChatMessage, GenerationRequest
from llmloop.engines.structured import GrammarSpec, structured_available
from llmloop.engines.tool_grammar import ToolGrammarSpec, forces_tool, request_grammar
from llmloop.engines.tool_parsers import TOOL_PARSERS, ToolParserName, parse_tool_calls
from llmloop.errors import BadRequestError, InvalidInputError

needs_xgrammar = pytest.mark.skipif(not structured_available(), reason="xgrammar not installed")

TOOLS = [
    {"type": "function", "function": {"name": "plan_trip", "parameters": TRIP}},
    {"type": "function", "function": {"name": "anything", "description": "No schema."}},
]
JSON_FORMAT = {"type": "json_object"}
VOCAB = [chr(i) for i in range(32, 127)] + ["\n", "</s>"]  # one character a token, then a stop
STOP = len(VOCAB) - 1


def request(**fields: Any) -> GenerationRequest:
    messages = [ChatMessage(role="user", content="Plan it")]
    return GenerationRequest(model="m", messages=messages, **{"tools": TOOLS, **fields})


def answer(parser: ToolParserName, calls: list[tuple[str, str]]) -> str:
    """The text a model following ``parser``'s format writes for ``calls`` (name, arguments)."""
    key = "parameters" if parser == "llama3_json" else "arguments"
    bodies = [f'{{"name": "{name}", "{key}": {args}}}' for name, args in calls]
    if parser == "hermes":
        return "\n".join(f"<tool_call>\n{body}\n</tool_call>" for body in bodies)
    if parser == "llama3_json":
        return "; ".join(bodies)
    return "[TOOL_CALLS][" + ", ".join(bodies) + "]"


@pytest.fixture(scope="module")
def compiler() -> Any:
    xgr = pytest.importorskip("xgrammar")
    info = xgr.TokenizerInfo(VOCAB, stop_token_ids=[STOP])
    return xgr.GrammarCompiler(info, cache_enabled=False)


def accepts(compiler: Any, spec: ToolGrammarSpec, text: str) -> bool:
    """Whether the grammar takes ``text`` whole and then lets the answer stop."""
    import xgrammar as xgr

    matcher = xgr.GrammarMatcher(spec.compile(compiler))
    return bool(matcher.accept_string(text)) and bool(matcher.accept_token(STOP))


def tool_spec(parser: ToolParserName = "hermes", **fields: Any) -> ToolGrammarSpec:
    spec = request_grammar(request(**fields), parser)
    assert isinstance(spec, ToolGrammarSpec)
    return spec


@needs_xgrammar
def test_only_required_or_named_choices_with_a_parser_get_a_tool_grammar() -> None:
    for choice in (None, "auto", "none"):
        assert request_grammar(request(tool_choice=choice), "hermes") is None
    assert request_grammar(request(tools=None, tool_choice="required"), "hermes") is None
    assert request_grammar(request(tool_choice="required"), None) is None  # no tool parser
    assert not forces_tool(request(tools=None, tool_choice="plan_trip"))
    assert forces_tool(request(tool_choice="required")) and forces_tool(request(tool_choice="x"))
    # Auto leaves response_format alone; a forced tool wins over it.
    auto = request_grammar(request(response_format=JSON_FORMAT), "hermes")
    assert isinstance(auto, GrammarSpec)
    forced = request_grammar(
        request(tool_choice="required", response_format=JSON_FORMAT), "mistral"
    )
    assert isinstance(forced, ToolGrammarSpec) and forced.parallel
    assert [t.name for t in forced.tools] == ["plan_trip", "anything"]
    named = tool_spec(tool_choice="plan_trip", parallel_tool_calls=False)
    assert [t.name for t in named.tools] == ["plan_trip"] and not named.parallel


def test_without_xgrammar_a_forced_choice_is_not_enforced(monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "xgrammar", None)  # as if the extra were not installed
        structured_available.cache_clear()
        assert request_grammar(request(tool_choice="required"), "hermes") is None
    structured_available.cache_clear()


@needs_xgrammar
@pytest.mark.parametrize("parser", TOOL_PARSERS)
def test_each_format_accepts_what_its_parser_reads(compiler: Any, parser: ToolParserName) -> None:
    trip, free = ("plan_trip", '{"city": "Rome", "days": 3}'), ("anything", '{"a": [1, "b"]}')
    named = tool_spec(parser, tool_choice="plan_trip")
    required = tool_spec(parser, tool_choice="required")
    single = tool_spec(parser, tool_choice="required", parallel_tool_calls=False)
    for spec, calls in [(named, [trip]), (named, [trip, trip]), (required, [free, trip])]:
        text = answer(parser, calls)
        assert accepts(compiler, spec, text), text
        parsed = parse_tool_calls(text, parser)
        assert parsed.content == ""
        assert [(c.name, json.loads(c.arguments)) for c in parsed.tool_calls] == [
            (name, json.loads(args)) for name, args in calls
        ]
    assert accepts(compiler, single, answer(parser, [free]))
    assert not accepts(compiler, single, answer(parser, [free, trip]))  # exactly one call
    assert not accepts(compiler, named, answer(parser, [free]))  # only the named function
    for bad in ('{"city": "Oslo", "days": 3}', '{"city": "Rome", "days": 30}', '{"city": "Rome"}'):
        assert not accepts(compiler, named, answer(parser, [("plan_trip", bad)]))
    assert not accepts(compiler, named, "I would rather not.")
    assert not accepts(compiler, named, "")  # at least one call


@needs_xgrammar
def test_the_digest_follows_what_shapes_the_grammar() -> None:
    base = tool_spec(tool_choice="required")
    described = [{**t, "function": {**t["function"], "description": "Other."}} for t in TOOLS]
    assert tool_spec(tool_choice="required", tools=described).digest == base.digest
    others = [
        tool_spec("mistral", tool_choice="required"),
        tool_spec(tool_choice="required", parallel_tool_calls=False),
        tool_spec(tool_choice="plan_trip"),
    ]
    assert len({base.digest, *(s.digest for s in others)}) == 4


@needs_xgrammar
def test_bad_tools_are_bad_requests(compiler: Any) -> None:
    def function(**fields: Any) -> list[dict[str, Any]]:
        return [{"type": "function", "function": {"name": "f", **fields}}]

    with pytest.raises(BadRequestError, match="must be a JSON Schema") as caught:
        tool_spec(tool_choice="required", tools=function(parameters=[1]))
    assert caught.value.to_dict()["param"] == "tools"
    with pytest.raises(BadRequestError, match="needs a 'function' with a 'name'"):
        tool_spec(tool_choice="required", tools=[{"type": "function", "function": {}}])
    with pytest.raises(BadRequestError, match="at least one function tool"):
        tool_spec(tool_choice="required", tools=[{"type": "web_search"}])
    with pytest.raises(InvalidInputError, match="'plan_it', which is not among"):
        tool_spec(tool_choice="plan_it")
    with pytest.raises(BadRequestError, match="colour") as caught:
        tool_spec(tool_choice="f", tools=function(parameters={"type": "colour"})).compile(compiler)
    assert caught.value.to_dict()["param"] == "tools"
