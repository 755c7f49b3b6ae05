"""Tool-call parsers: each format whole and streamed (split at every character), malformed and
unterminated blocks kept as content, text around calls, several calls, unique ids, detection."""

from __future__ import annotations

import itertools
import json

import pytest

from llmloop.core.chat import ToolCall
from llmloop.engines.tool_parsers import (
    TOOL_PARSERS,
    ParsedOutput,
    ToolCallStreamParser,
    ToolParserName,
    detect_tool_parser,
    parse_tool_calls,
)

WEATHER = '{"name": "get_weather", "arguments": {"city": "Paris", "unit": "°C"}}'
TIME = '{"name": "get_time", "arguments": {"zone": "UTC+1 {x}", "list": [1, "]"]}}'
WEATHER_ARGS = '{"city":"Paris","unit":"°C"}'
TIME_ARGS = '{"zone":"UTC+1 {x}","list":[1,"]"]}'

# (format, raw answer, expected content, expected [(name, arguments)])
CASES: list[tuple[ToolParserName, str, str, list[tuple[str, str]]]] = [
    ("hermes", f"<tool_call>\n{WEATHER}\n</tool_call>", "", [("get_weather", WEATHER_ARGS)]),
    (
        "hermes",
        f"Let me check.\n<tool_call>{WEATHER}</tool_call>\n<tool_call>\n{TIME}\n</tool_call>\n",
        "Let me check.",
        [("get_weather", WEATHER_ARGS), ("get_time", TIME_ARGS)],
    ),
    (
        "hermes",
        f"Before <tool_call>{WEATHER}</tool_call> and after.",
        "Before and after.",
        [("get_weather", WEATHER_ARGS)],
    ),
    ("hermes", "A <tool_call>{bad json</tool_call> B", "A <tool_call>{bad json</tool_call> B", []),
    (
        "hermes",
        f'<tool_call>{{"arguments": {{}}}}</tool_call>\n<tool_call>{WEATHER}</tool_call>',
        '<tool_call>{"arguments": {}}</tool_call>',
        [("get_weather", WEATHER_ARGS)],
    ),
    ("hermes", f"Hi <tool_call>{WEATHER}", f"Hi <tool_call>{WEATHER}", []),
    ("hermes", "1 < 2 and <tool", "1 < 2 and <tool", []),
    ("hermes", "No calls here.\n\n", "No calls here.\n\n", []),
    (
        "hermes",
        '<tool_call>{"name": "f", "arguments": "{\\"a\\": 1}"}</tool_call>',
        "",
        [("f", '{"a": 1}')],
    ),
    ("llama3_json", WEATHER, "", [("get_weather", WEATHER_ARGS)]),
    (
        "llama3_json",
        '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris", "unit": "°C"}}; '
        + TIME,
        "",
        [("get_weather", WEATHER_ARGS), ("get_time", TIME_ARGS)],
    ),
    ("llama3_json", f" The answer is {WEATHER}", f" The answer is {WEATHER}", []),
    ("llama3_json", '{"answer": 42} done', '{"answer": 42} done', []),
    ("llama3_json", '{"name": "f", "parameters": ', '{"name": "f", "parameters": ', []),
    ("llama3_json", f"{WEATHER}\nThat is all.", "That is all.", [("get_weather", WEATHER_ARGS)]),
    (
        "hermes",
        f"Checking.\n<tool_call>{WEATHER}</tool_call>\n\n<tool_call>{TIME}</tool_call>\nDone.\n",
        "Checking.\nDone.\n",
        [("get_weather", WEATHER_ARGS), ("get_time", TIME_ARGS)],
    ),
    ("llama3_json", "{{ not json", "{{ not json", []),
    (
        "mistral",
        f"Sure. [TOOL_CALLS] [{WEATHER}, {TIME}]",
        "Sure.",
        [("get_weather", WEATHER_ARGS), ("get_time", TIME_ARGS)],
    ),
    ("mistral", f"[{WEATHER}]", "", [("get_weather", WEATHER_ARGS)]),
    ("mistral", f"[TOOL_CALLS][{WEATHER}] Done.", "Done.", [("get_weather", WEATHER_ARGS)]),
    ("mistral", "[1] first point", "[1] first point", []),
    ("mistral", "[TOOLS are nice]", "[TOOLS are nice]", []),
    ("mistral", '[TOOL_CALLS] [{"name": 3}]', '[TOOL_CALLS] [{"name": 3}]', []),
    ("mistral", f"[TOOL_CALLS] [{WEATHER}", f"[TOOL_CALLS] [{WEATHER}", []),
]


def calls_of(parsed: ParsedOutput) -> list[tuple[str, str]]:
    return [(c.name, c.arguments) for c in parsed.tool_calls]


def parse_in_pieces(text: str, parser: ToolParserName, cuts: list[int]) -> ParsedOutput:
    stream = ToolCallStreamParser(parser)
    content: list[str] = []
    calls: list[tuple[str, str]] = []
    bounds = [0, *cuts, len(text)]
    pieces = [stream.feed(text[a:b]) for a, b in itertools.pairwise(bounds)]
    for piece in [*pieces, stream.finish()]:
        content.append(piece.content)
        calls.extend((d.name or "", d.arguments) for d in piece.tool_calls)
    return ParsedOutput(
        content="".join(content),
        tool_calls=[
            ToolCall(id=f"call_{i}", name=n, arguments=a) for i, (n, a) in enumerate(calls)
        ],
    )


@pytest.mark.parametrize(("parser", "text", "content", "calls"), CASES)
def test_whole_text_parse(
    parser: ToolParserName, text: str, content: str, calls: list[tuple[str, str]]
) -> None:
    parsed = parse_tool_calls(text, parser)
    assert parsed.content == content
    assert calls_of(parsed) == calls
    for call in parsed.tool_calls:
        assert call.id.startswith("call_") and len(call.id) > 10
        json.loads(call.arguments)


@pytest.mark.parametrize(("parser", "text", "content", "calls"), CASES)
def test_streaming_split_anywhere_equals_whole_parse(
    parser: ToolParserName, text: str, content: str, calls: list[tuple[str, str]]
) -> None:
    for cut in range(len(text) + 1):
        parsed = parse_in_pieces(text, parser, [cut])
        assert (parsed.content, calls_of(parsed)) == (content, calls), cut
    one_char = parse_in_pieces(text, parser, list(range(1, len(text))))
    assert (one_char.content, calls_of(one_char)) == (content, calls)


def test_without_calls_the_content_is_the_text_exactly() -> None:
    texts = [" lead and trail \n", "", "\n\n", "<tool_call> only an opener", "[TOOL", "{", ";"]
    for parser in TOOL_PARSERS:
        for text in texts:
            parsed = parse_tool_calls(text, parser)
            if not parsed.tool_calls:
                assert parsed.content == text, (parser, text)


def test_content_is_released_at_once_unless_it_may_start_a_marker() -> None:
    stream = ToolCallStreamParser("hermes")
    assert stream.feed("Hello wor").content == "Hello wor"
    assert stream.feed("ld <tool").content == "ld"  # " <tool" may open a call
    assert stream.feed("box>").content == " <toolbox>"
    piece = stream.feed(f"<tool_call>{WEATHER}</tool_call>")
    assert piece.content == "" and [d.name for d in piece.tool_calls] == ["get_weather"]
    assert piece.tool_calls[0].index == 0
    assert stream.calls_made == 1


def test_streamed_deltas_come_one_per_call_with_increasing_index() -> None:
    stream = ToolCallStreamParser("mistral")
    piece = stream.feed(f"[TOOL_CALLS] [{WEATHER}, {TIME}, {WEATHER}]")
    assert [d.index for d in piece.tool_calls] == [0, 1, 2]
    assert all(d.id and d.name for d in piece.tool_calls)
    assert stream.finish().content == ""


def test_tool_call_ids_are_unique() -> None:
    text = "\n".join(f"<tool_call>{WEATHER}</tool_call>" for _ in range(50))
    ids = [c.id for _ in range(20) for c in parse_tool_calls(text, "hermes").tool_calls]
    assert len(ids) == 1000 and len(set(ids)) == 1000


def test_unknown_parser_is_refused() -> None:
    with pytest.raises(ValueError, match="hermes"):
        ToolCallStreamParser("xml")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{% for tool in tools %}<tool_call>{{ tool | tojson }}</tool_call>{% endfor %}", "hermes"),
        ("[AVAILABLE_TOOLS]{{ tools | tojson }}[/AVAILABLE_TOOLS] ... [TOOL_CALLS]", "mistral"),
        ("{%- if builtin_tools is defined %}<|python_tag|>{% endif %}", "llama3_json"),
        (
            "Given the following functions, please respond with a JSON for a function call "
            "with its proper arguments",
            "llama3_json",
        ),
        ("{% for message in messages %}{{ message['content'] }}{% endfor %}", None),
        ("", None),
    ],
)
def test_detect_tool_parser(template: str, expected: str | None) -> None:
    assert detect_tool_parser(template) == expected
