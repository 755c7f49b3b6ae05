"""Forced tool calls: ``tool_choice`` "required" or a named function, enforced by a grammar.

A request that offers tools and sets ``tool_choice`` to "required" (any of the tools) or to a
function name (only that one) must be answered with tool calls. :func:`request_grammar` turns
such a request into a :class:`ToolGrammarSpec`: an xgrammar structural tag that writes the calls
in the engine's tool-parser format, with each call's arguments following its tool's
``parameters`` JSON schema (strict, like a ``json_schema`` response format, with the same fixed
separators and no free whitespace; no ``parameters``: any object), compiled and applied through
the same ``Grammars`` cache and per-row masking as ``response_format`` (``structured.py``). The
exact text, one call shown per format:

- ``hermes``: ``<tool_call>\\n{"name": "f", "arguments": {..}}\\n</tool_call>``, several joined
  by ``\\n``;
- ``llama3_json``: ``{"name": "f", "parameters": {..}}``, several joined by ``; ``;
- ``mistral``: ``[TOOL_CALLS][{"name": "f", "arguments": {..}}]``, several inside the one list.

``parallel_tool_calls`` true or unset allows one or more calls, false exactly one. Once the
grammar is complete only a stop token is allowed, so the row ends there.

Markers are matched as text, so a marker the tokenizer holds as one token (Qwen's non-special
``<tool_call>``, or a special token such as Mistral's ``[TOOL_CALLS]`` or Hermes'
``<tool_call>``) may be written either as that single token or spelled out in ordinary ones.
The hf decoder skips special tokens, which would drop a special marker from the answer, so rows
under a tool grammar are decoded with special tokens kept (vLLM does the same for its hermes
parser): the text is exactly what the grammar matched, and the tool parser finds the markers.
A marker split over several special tokens is not supported (none of the three formats has one).

With a forced tool the tool choice wins: ``response_format`` is ignored, the answer is tool
calls, not a JSON document. Without xgrammar (the ``structured`` extra), or without a tool
parser, a forced choice is not enforced: the tools are shown as before and the model may still
answer in prose (no error). ``tool_choice`` "auto" or "none", and requests without tools, never
get a tool grammar. This module does not render prompts (``chat_template.py``) or parse answers
(``tool_parsers.py``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, ClassVar

from llmloop.core.chat import GenerationRequest
from llmloop.engines.structured import (
    ANY_OBJECT,
    GrammarSource,
    grammar_spec,
    structured_available,
    xgrammar_reason,
)
from llmloop.engines.tool_parsers import (
    HERMES_CLOSE,
    HERMES_OPEN,
    MISTRAL_TAG,
    ToolParserName,
)
from llmloop.errors import BadRequestError, InvalidInputError


@dataclass(frozen=True)
class _Layout:
    """How one parser's answer is laid out around ``{"name": .., "<key>": <arguments>}``."""

    key: str  # the arguments' key
    before: str = ""  # text before each call
    after: str = ""  # text after each call
    separator: str = ""  # between two calls
    head: str = ""  # before the first call
    tail: str = ""  # after the last call


_LAYOUTS: dict[str, _Layout] = {
    "hermes": _Layout(
        key="arguments", before=f"{HERMES_OPEN}\n", after=f"\n{HERMES_CLOSE}", separator="\n"
    ),
    "llama3_json": _Layout(key="parameters", separator="; "),
    "mistral": _Layout(key="arguments", separator=", ", head=f"{MISTRAL_TAG}[", tail="]"),
}


@dataclass(frozen=True)
class ToolArguments:
    """One callable tool: its name and the JSON schema (text) its arguments follow."""

    name: str
    schema: str
    strict: bool


@dataclass(frozen=True)
class ToolGrammarSpec:
    """A forced answer: one or more calls (or exactly one) of ``tools``, in ``parser``'s format."""

    param: ClassVar[str] = "tools"
    parser: ToolParserName
    tools: tuple[ToolArguments, ...]
    parallel: bool

    @property
    def digest(self) -> str:
        tools = [[t.name, t.schema, t.strict] for t in self.tools]
        key = json.dumps(["tools", self.parser, self.parallel, tools], separators=(",", ":"))
        return hashlib.sha256(key.encode()).hexdigest()

    def compile(self, compiler: Any) -> Any:
        """Runs in a worker thread: the structural tag, checked and compiled by xgrammar."""
        tag = {"type": "structural_tag", "format": structural_format(self)}
        try:
            return compiler.compile_structural_tag(tag)
        except (RuntimeError, ValueError) as exc:
            raise _bad(f"cannot enforce tool_choice: {xgrammar_reason(exc)}") from None


def forces_tool(req: GenerationRequest) -> bool:
    """Whether ``req`` offers tools and its ``tool_choice`` demands a call."""
    return req.wants_tools and (req.tool_choice == "required" or req.forced_tool is not None)


def request_grammar(req: GenerationRequest, parser: ToolParserName | None) -> GrammarSource | None:
    """What a row's tokens must follow: a forced tool choice wins over ``response_format``.

    ``parser`` is the engine's tool parser for this request (None when it has none, or the
    request is not a chat with tools). Without xgrammar a forced choice is left unenforced.
    """
    if parser is not None and forces_tool(req) and structured_available():
        return tool_grammar_spec(req, parser)
    return grammar_spec(req.response_format)


def tool_grammar_spec(req: GenerationRequest, parser: ToolParserName) -> ToolGrammarSpec:
    """The grammar of ``req``'s forced tool calls; bad tools: 400."""
    forced = req.forced_tool
    tools = [_tool_arguments(i, tool) for i, tool in enumerate(req.tools or [])]
    chosen = tuple(t for t in tools if t is not None and forced in (None, t.name))
    if forced is not None and not chosen:
        raise InvalidInputError(f"tool_choice names '{forced}', which is not among the tools")
    if not chosen:
        raise _bad("tool_choice 'required' needs at least one function tool")
    return ToolGrammarSpec(parser, chosen, parallel=req.parallel_tool_calls is not False)


def _tool_arguments(index: int, tool: dict[str, Any]) -> ToolArguments | None:
    """A function tool's name and argument schema; None for other kinds of tools."""
    if tool.get("type", "function") != "function":
        return None
    function = tool.get("function")
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(function, dict) or not isinstance(name, str) or not name:
        raise _bad(f"tools[{index}] needs a 'function' with a 'name'")
    parameters = function.get("parameters")
    if parameters is None:
        return ToolArguments(name, ANY_OBJECT, strict=False)
    if not isinstance(parameters, dict):
        raise _bad(f"tools[{index}].function.parameters must be a JSON Schema object")
    schema = json.dumps(parameters, sort_keys=True, separators=(",", ":"))
    return ToolArguments(name, schema, strict=True)


def structural_format(spec: ToolGrammarSpec) -> dict[str, Any]:
    """The xgrammar structural-tag format of ``spec``'s answers (needs xgrammar)."""
    layout = _LAYOUTS[spec.parser]
    calls = [_call_format(layout, tool) for tool in spec.tools]
    one = calls[0] if len(calls) == 1 else {"type": "or", "elements": calls}
    more = {"type": "star", "content": _sequence(_text(layout.separator), one)}
    return _sequence(_text(layout.head), one, more if spec.parallel else None, _text(layout.tail))


def _call_format(layout: _Layout, tool: ToolArguments) -> dict[str, Any]:
    """One call of ``tool``: fixed text around its arguments' JSON grammar."""
    import xgrammar as xgr

    try:
        arguments = xgr.Grammar.from_json_schema(
            tool.schema, any_whitespace=False, strict_mode=tool.strict
        )
    except (RuntimeError, ValueError) as exc:
        reason = xgrammar_reason(exc)
        raise _bad(f"tool '{tool.name}' has parameters xgrammar cannot use: {reason}") from None
    opening = f'{layout.before}{{"name": {json.dumps(tool.name)}, "{layout.key}": '
    grammar = {"type": "grammar", "grammar": str(arguments)}
    return _sequence(_text(opening), grammar, _text(f"}}{layout.after}"))


def _sequence(*elements: dict[str, Any] | None) -> dict[str, Any]:
    return {"type": "sequence", "elements": [e for e in elements if e is not None]}


def _text(value: str) -> dict[str, Any] | None:
    """A fixed string (None for an empty one: xgrammar wants no empty constants)."""
    return {"type": "const_string", "value": value} if value else None


def _bad(detail: str) -> BadRequestError:
    return BadRequestError(detail, param="tools")
