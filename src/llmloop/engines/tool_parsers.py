"""Tool-call parsers: a model's raw answer turned into content plus tool calls.

Open models write function calls as text in one of a few formats (vLLM calls these "tool
parsers"); this module knows three:

- ``hermes`` (Hermes, Qwen2.5, Qwen3): ``<tool_call>{"name": .., "arguments": {..}}</tool_call>``
  blocks anywhere in the answer;
- ``llama3_json`` (Llama 3.1/3.2 JSON tool calling): the answer *is* a JSON object
  ``{"name": .., "parameters"|"arguments": {..}}``, optionally after ``<|python_tag|>``, several
  separated by ``;``;
- ``mistral``: ``[TOOL_CALLS]`` followed by a JSON list of ``{name, arguments}``. Engines that
  decode with ``skip_special_tokens`` drop that control token (and ``<|python_tag|>``), so a bare
  JSON list at the very start of the answer counts too.

:class:`ToolCallStreamParser` is fed text pieces and gives back content and finished calls;
:func:`parse_tool_calls` runs it over a whole text, so a stream and a whole answer are parsed
alike. Content is released as soon as it cannot be part of a call marker; whitespace next to a
call block is dropped unless it joins content on both sides (so it is held until the next
character decides). A malformed or unterminated block comes back as content, never lost. The
stream and result wrappers used by the engines live in :mod:`llmloop.engines.tool_results`.
Nothing here renders prompts or constrains decoding.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from llmloop.core.chat import ToolCall, ToolCallDelta

ToolParserName = Literal["hermes", "llama3_json", "mistral"]
TOOL_PARSERS: tuple[ToolParserName, ...] = ("hermes", "llama3_json", "mistral")

HERMES_OPEN, HERMES_CLOSE = "<tool_call>", "</tool_call>"
PYTHON_TAG = "<|python_tag|>"
MISTRAL_TAG = "[TOOL_CALLS]"


@dataclass(frozen=True)
class _Format:
    """Where call blocks may open and how their body ends."""

    anywhere: tuple[str, ...]  # markers opening a block anywhere in the text (consumed)
    at_start: tuple[str, ...]  # markers valid only at the start or right after a call (consumed)
    bare: str  # a JSON opener that starts a block at the start of the answer ("" for none)
    body: Literal["tagged", "object", "list"]
    separators: str = ""  # characters skipped between two calls, besides whitespace
    plain_after_text: bool = False  # once content appeared, nothing else can be a call


_FORMATS: dict[str, _Format] = {
    "hermes": _Format(anywhere=(HERMES_OPEN,), at_start=(), bare="", body="tagged"),
    "llama3_json": _Format(
        anywhere=(),
        at_start=(PYTHON_TAG,),
        bare="{",
        body="object",
        separators=";",
        plain_after_text=True,
    ),
    "mistral": _Format(anywhere=(MISTRAL_TAG,), at_start=(), bare="[", body="list"),
}


def detect_tool_parser(chat_template: str) -> ToolParserName | None:
    """The tool-call format a chat template teaches its model, from the template text."""
    if HERMES_OPEN in chat_template:
        return "hermes"
    if MISTRAL_TAG in chat_template:
        return "mistral"
    if PYTHON_TAG in chat_template or "respond with a JSON for a function call" in chat_template:
        return "llama3_json"
    return None


def known_tool_parser(name: str) -> ToolParserName | None:
    """``name`` as a parser name when it is one (engine options also allow "auto" and "none")."""
    return next((p for p in TOOL_PARSERS if p == name), None)


#: The ``tool_parser`` option of the engines that parse tool calls themselves (hf, vllm).
ToolParserOption = Literal["auto", "hermes", "llama3_json", "mistral", "none"]
TOOL_PARSER_HELP = (
    "Tool-call format of answers to requests with tools: 'auto' detects it from the chat "
    "template; 'none' returns the raw text (and no tools capability)."
)


def configured_tool_parser(option: str, chat_template: str | None) -> ToolParserName | None:
    """The parser an engine uses once its tokenizer is loaded: the named one, or for 'auto'
    the one its chat template teaches."""
    if option == "auto":
        return detect_tool_parser(chat_template or "")
    return known_tool_parser(option)


def new_tool_call_id() -> str:
    """A fresh call id, ``call_`` and 24 random hex digits (OpenAI's shape)."""
    return "call_" + uuid.uuid4().hex[:24]


@dataclass(frozen=True)
class ParsedOutput:
    """What a whole answer holds: its content and the calls it made."""

    content: str
    tool_calls: list[ToolCall]


@dataclass
class ParsedPiece:
    """What one fed piece released: content text and finished calls (one delta a call)."""

    content: str = ""
    tool_calls: list[ToolCallDelta] = field(default_factory=list)


def parse_tool_calls(text: str, parser: ToolParserName) -> ParsedOutput:
    """Split a whole answer into content and tool calls."""
    stream = ToolCallStreamParser(parser)
    first, last = stream.feed(text), stream.finish()
    calls = [
        ToolCall(id=d.id or new_tool_call_id(), name=d.name or "", arguments=d.arguments)
        for d in [*first.tool_calls, *last.tool_calls]
    ]
    return ParsedOutput(content=first.content + last.content, tool_calls=calls)


def _call_from(obj: object) -> tuple[str, str] | None:
    """``(name, arguments JSON text)`` of one call object, or None when it is not one."""
    if not isinstance(obj, dict):
        return None
    name = obj.get("name")
    args: Any = obj.get("arguments", obj.get("parameters", {}))
    if not isinstance(name, str) or not name:
        return None
    if isinstance(args, str):  # some models write the arguments as JSON text already
        return name, args
    if not isinstance(args, dict):
        return None
    return name, json.dumps(args, separators=(",", ":"), ensure_ascii=False)


def _calls_in(block: str, body: str) -> list[tuple[str, str]] | None:
    """The calls a complete block body holds, or None when it is malformed."""
    try:
        value = json.loads(block)
    except ValueError:
        return None
    items = value if body == "list" and isinstance(value, list) else [value]
    calls = [_call_from(item) for item in items]
    if not calls or any(c is None for c in calls):
        return None
    return [c for c in calls if c is not None]


class _JsonEnd:
    """Finds where one JSON object or list ends in a growing text, scanning each char once."""

    def __init__(self, kind: Literal["object", "list"]) -> None:
        self.opener, self.first_inside = ("{", '"') if kind == "object" else ("[", "{")
        self.pos = 0
        self.depth = 0
        self.in_string = False
        self.escaped = False
        self.checked_first = False

    def scan(self, text: str) -> tuple[Literal["more", "end", "bad"], int]:
        """``("end", i)``: the value ends before ``i``; ``("bad", i)``: char ``i`` cannot be."""
        while self.pos < len(text):
            ch, i = text[self.pos], self.pos
            self.pos += 1
            if self.in_string:
                if self.escaped:
                    self.escaped = False
                elif ch == "\\":
                    self.escaped = True
                elif ch == '"':
                    self.in_string = False
                continue
            if ch.isspace():
                continue
            if self.depth == 0:  # before the value: only its opener may come
                if ch != self.opener:
                    return "bad", i
                self.depth = 1
                continue
            if not self.checked_first:  # a call object starts with a key; a call list with {
                self.checked_first = True
                if ch != self.first_inside:
                    return "bad", i
            if ch == '"':
                self.in_string = True
            elif ch in "{[":
                self.depth += 1
            elif ch in "}]":
                self.depth -= 1
                if self.depth == 0:
                    return "end", i + 1
        return "more", len(text)


@dataclass
class _Block:
    """An open call block: what opened it (to give back if it fails) and its body so far."""

    lead: str  # whitespace dropped before the opener
    opener: str  # the consumed marker ("" when the body's own bracket opened it)
    body: str = ""
    searched: int = 0  # tagged bodies: where to look for the closing tag next
    json_end: _JsonEnd | None = None


class ToolCallStreamParser:
    """Incremental tool-call parsing: feed text pieces, then call :meth:`finish` once."""

    def __init__(self, parser: ToolParserName) -> None:
        if parser not in _FORMATS:
            raise ValueError(f"unknown tool parser '{parser}'; known: {', '.join(TOOL_PARSERS)}")
        self._fmt = _FORMATS[parser]
        self._buf = ""  # text not yet released nor put into a block
        self._block: _Block | None = None
        self._at_start = True  # the bare opener and start markers are still possible
        self._after_call = False  # skipping the separators after a call
        self._plain = False  # the rest is content, no more calls possible
        self._said = False  # some content was released
        self._gap = ""  # whitespace skipped after the last call
        self._count = 0

    @property
    def calls_made(self) -> int:
        return self._count

    def feed(self, piece: str) -> ParsedPiece:
        """Take the next piece of the answer; return what can be released now."""
        out = ParsedPiece()
        if self._plain:
            self._emit(out, piece)
            return out
        if self._block is not None:
            self._block.body += piece
        else:
            self._buf += piece
        self._advance(out)
        return out

    def finish(self) -> ParsedPiece:
        """The answer ended: an unfinished block and held text come back as content."""
        out = ParsedPiece()
        block, self._block = self._block, None
        if block is not None:
            self._emit(out, block.lead + block.opener + block.body)
        self._emit(out, self._buf)
        self._buf = ""
        return out

    def _emit(self, out: ParsedPiece, content: str) -> None:
        out.content += content
        self._said = self._said or bool(content)

    # -- the state machine ---------------------------------------------------------------------
    def _advance(self, out: ParsedPiece) -> None:
        while True:
            if self._block is not None:
                if not self._close_block(out):
                    return
            elif self._plain:
                self._emit(out, self._buf)
                self._buf = ""
                return
            elif not self._scan_text(out):
                return

    def _open(self, lead: str, opener: str, body: str) -> None:
        kind = self._fmt.body
        json_end = None if kind == "tagged" else _JsonEnd(kind)
        self._block = _Block(lead=lead, opener=opener, body=body, json_end=json_end)
        self._buf = ""

    def _scan_text(self, out: ParsedPiece) -> bool:
        """Release content or open a block; False when more text is needed."""
        fmt = self._fmt
        if self._after_call:  # skip separators; whitespace only joins content on both sides
            buf, at = self._buf, 0
            while at < len(buf) and (buf[at].isspace() or buf[at] in fmt.separators):
                at += 1
            self._gap += "".join(ch for ch in buf[:at] if ch.isspace())
            self._buf = buf[at:]
            if not self._buf:
                return False
            if self._said:
                self._buf = self._gap + self._buf
            self._after_call, self._gap = False, ""
        if self._at_start:
            text = self._buf.lstrip()
            lead = self._buf[: len(self._buf) - len(text)]
            if not text:
                return False
            markers = fmt.at_start + fmt.anywhere
            for marker in markers:
                if text.startswith(marker):
                    self._open(lead, marker, text[len(marker) :])
                    return True
            if any(m.startswith(text) for m in markers):
                return False  # still a possible marker prefix
            if fmt.bare and text.startswith(fmt.bare):
                self._open(lead, "", text)
                return True
            self._at_start = False
            if fmt.plain_after_text:
                self._plain = True
                return True
        return self._scan_anywhere(out)

    def _scan_anywhere(self, out: ParsedPiece) -> bool:
        buf = self._buf
        hits = [(buf.find(m), m) for m in self._fmt.anywhere if m in buf]
        if hits:
            at, marker = min(hits)
            before = buf[:at]
            content = before.rstrip()
            self._emit(out, content)
            self._open(before[len(content) :], marker, buf[at + len(marker) :])
            return True
        hold = max((_prefix_overlap(buf, m) for m in self._fmt.anywhere), default=0)
        released = buf[: len(buf) - hold]
        content = released.rstrip()  # trailing whitespace waits: it may precede a marker
        self._emit(out, content)
        self._buf = buf[len(content) :]
        return False

    def _close_block(self, out: ParsedPiece) -> bool:
        """Finish the open block if its end is in; False when more text is needed."""
        block = self._block
        assert block is not None
        if block.json_end is None:
            at = block.body.find(HERMES_CLOSE, block.searched)
            if at < 0:
                block.searched = max(0, len(block.body) - len(HERMES_CLOSE) + 1)
                return False
            end = at + len(HERMES_CLOSE)
            inner, rest = block.body[:at], block.body[end:]
        else:
            state, end = block.json_end.scan(block.body)
            if state == "more":
                return False
            inner, rest = block.body[:end], block.body[end:]
            if state == "bad":  # not a call after all: give the text back
                self._fail(out, block, block.lead + block.opener + inner, rest)
                return True
        calls = _calls_in(inner, self._fmt.body)
        if calls is None:
            self._fail(out, block, block.lead + block.opener + block.body[:end], rest)
            return True
        for name, arguments in calls:
            delta = ToolCallDelta(
                index=self._count, id=new_tool_call_id(), name=name, arguments=arguments
            )
            out.tool_calls.append(delta)
            self._count += 1
        self._block, self._buf = None, rest
        self._at_start = self._after_call = True
        return True

    def _fail(self, out: ParsedPiece, block: _Block, text: str, rest: str) -> None:
        self._emit(out, text)
        self._block, self._buf = None, rest
        self._at_start = False
        self._plain = self._fmt.plain_after_text


def _prefix_overlap(text: str, marker: str) -> int:
    """Length of the longest tail of ``text`` that is a proper prefix of ``marker``."""
    for k in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:k]):
            return k
    return 0
