"""OpenAI Responses API wire format: request bodies -> generation values.

A ``POST /v1/responses`` body becomes the same :class:`GenerationRequest` a chat completion does
(``instructions`` as the system turn, ``input`` items as turns, function tools and ``text.format``
in their chat shapes), so every engine, guard, limit, cache and trace serves it unchanged. The
answer is rendered by ``responses_render.py`` and streamed by ``responses_sse.py``; the route is
``routes.py``. Only function tools exist here (no hosted tools: web or file search, computer
use, code interpreter), and ``background`` and ``conversation`` are refused with a 400.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llmloop.api.gateway.schemas import (
    FUNCTION_NAME,
    MAX_TOOLS,
    _chat_message,
    _content,
    _flag,
    _generation_request,
    _response_format,
    _sampling,
    _string,
    _tool_call,
    _tool_choice,
    bad,
    check_metadata,
)
from llmloop.core.chat import ChatMessage, GenerationRequest
from llmloop.core.prompts import PromptVersionPublic
from llmloop.errors import BadRequestError

DEFAULT_MAX_OUTPUT_TOKENS = 1024  # as chat's default (limits estimate from it)
INPUT_ROLES = frozenset(("user", "system", "developer", "assistant"))
LOGPROBS_INCLUDE = "message.output_text.logprobs"
#: Responses tool choices that are chat's as they are.
PLAIN_CHOICES = frozenset(("none", "auto", "required"))


#: Sampling fields a registry prompt version's ``params`` may set, under the names they take.
PROMPT_PARAMS = {"max_tokens": ("max_output_tokens", "max_tokens"),
                 "temperature": ("temperature",), "top_p": ("top_p",)}  # fmt: skip


@dataclass(frozen=True)
class PromptAsk:
    """OpenAI's reusable ``prompt``: here a prompt of llmloop's registry by name, at a version
    number or label (``production`` when left out), with its template's variables."""

    name: str
    ref: str
    variables: dict[str, str]


@dataclass
class ResponseAsk:
    """What a Responses request asks beyond the generation itself: how to answer and what the
    answer echoes back (the request's own ``tools``, ``tool_choice``, ``text`` and settings)."""

    model: str
    instructions: str | None = None
    stream: bool = False
    store: bool = True
    previous_response_id: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    echo: dict[str, Any] = field(default_factory=dict)
    input: list[ChatMessage] = field(default_factory=list)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    logprobs: int | None = None
    sampling_body: dict[str, Any] = field(default_factory=dict)
    user: str | None = None
    prompt: PromptAsk | None = None
    prompt_text: str | None = None  # the registry prompt, rendered (see ``use_prompt``)

    def use_prompt(self, version: PromptVersionPublic, text: str) -> None:
        """Answer under a registry prompt version: its rendered ``text`` leads the system
        turns, its ``params`` are defaults for the sampling fields the request left out."""
        self.prompt_text = text
        for name, keys in PROMPT_PARAMS.items():
            value = next((version.params[k] for k in keys if k in version.params), None)
            if self.sampling_body.get(name) is None and value is not None:
                self.sampling_body[name] = value
        assert self.prompt is not None
        self.echo["prompt"] = {"id": version.prompt_name, "version": str(version.version),
                               "variables": self.prompt.variables}  # fmt: skip

    def request(self, history: tuple[ChatMessage, ...] = ()) -> GenerationRequest:
        """The generation request: the registry prompt and the instructions, then the stored
        ``history``, then the input."""
        texts = (self.prompt_text, self.instructions)
        system = [_chat_message(role="system", content=t) for t in texts if t is not None]
        try:
            sampling = _sampling(self.sampling_body, DEFAULT_MAX_OUTPUT_TOKENS)
        except BadRequestError as exc:
            raise responses_error(exc) from None
        return _generation_request(
            model=self.model, messages=[*system, *history, *self.input], prompt=None,
            sampling=sampling, logprobs=self.logprobs, echo=False, adapter=None, user=self.user,
            request_id="", tools=self.tools, tool_choice=self.tool_choice,
            parallel_tool_calls=self.parallel_tool_calls, response_format=self.response_format,
            passthrough=None,
        )  # fmt: skip


#: Chat's request fields under their Responses names (what a 400's ``param`` names).
RESPONSES_NAMES = {"max_tokens": "max_output_tokens", "response_format": "text.format",
                   "messages": "input"}  # fmt: skip


def responses_error(exc: BadRequestError) -> BadRequestError:
    """A 400 raised on the chat path (parsing, engine capabilities, context length) naming the
    Responses field instead of chat's: ``input``, not ``messages``; ``text.format``, not
    ``response_format``. The same class, so the code stays (``context_length_exceeded``)."""
    param = exc.extra.get("param")
    if not isinstance(param, str):
        return exc
    head, dot, rest = param.partition(".")
    name = RESPONSES_NAMES.get(head)
    if name is None:
        return exc
    detail = exc.detail
    for old, new in RESPONSES_NAMES.items():
        detail = detail.replace(f"'{old}'", f"'{new}'").replace(f" {old} ", f" {new} ")
    where = name if head == "messages" else name + dot + rest  # input items are not messages
    return type(exc)(detail, **{**exc.extra, "param": where})


def parse_responses(body: dict[str, Any]) -> ResponseAsk:
    """The :class:`ResponseAsk` of a ``/v1/responses`` body (400 naming the parameter)."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad("you must provide a model parameter", "model")
    if body.get("background"):
        raise bad("background responses are not supported here; send the request without "
                  "'background' (and stream it if it is long)", "background")  # fmt: skip
    if body.get("conversation") is not None:
        raise bad("conversations are not supported here; continue with "
                  "'previous_response_id' or send the history in 'input'",
                  "conversation")  # fmt: skip
    ask = ResponseAsk(model=model)
    ask.instructions = _string(body, "instructions")
    ask.stream = _flag(body, "stream")
    ask.store = _flag(body, "store", default=True)
    ask.previous_response_id = _string(body, "previous_response_id")
    ask.metadata = check_metadata(body.get("metadata"))
    ask.user = _string(body, "safety_identifier") or _string(body, "user")
    ask.prompt = _prompt(body.get("prompt"))
    raw_input = body.get("input")
    ask.input = [] if raw_input is None and ask.prompt is not None else _input(raw_input)
    ask.tools, ask.tool_choice = _tools(body.get("tools"), body.get("tool_choice"))
    parallel = body.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise bad("'parallel_tool_calls' must be a boolean", "parallel_tool_calls")
    ask.parallel_tool_calls = parallel
    ask.response_format = _text_format(body.get("text"))
    ask.logprobs = _logprobs(body)
    ask.sampling_body = {
        "max_tokens": body.get("max_output_tokens"),
        "temperature": body.get("temperature"),
        "top_p": body.get("top_p"),
    }
    ask.echo = {
        "instructions": ask.instructions, "max_output_tokens": body.get("max_output_tokens"),
        "temperature": body.get("temperature", 1.0), "top_p": body.get("top_p", 1.0),
        "tools": body.get("tools") or [], "tool_choice": body.get("tool_choice", "auto"),
        "parallel_tool_calls": True if parallel is None else parallel,
        "text": body.get("text") or {"format": {"type": "text"}},
        "top_logprobs": body.get("top_logprobs"), "user": body.get("user"),
        "safety_identifier": body.get("safety_identifier"),
        "reasoning": body.get("reasoning"), "truncation": body.get("truncation", "disabled"),
        "previous_response_id": ask.previous_response_id, "store": ask.store,
        "metadata": ask.metadata, "background": False, "service_tier": "default",
        "prompt_cache_key": body.get("prompt_cache_key"),
    }  # fmt: skip
    return ask


def _prompt(value: Any) -> PromptAsk | None:
    """``prompt``: ``{"id": name, "version": number or label, "variables": {...}}``; a
    variable is a string or an ``input_text`` part."""
    if value is None:
        return None
    name = value.get("id") if isinstance(value, dict) else None
    if not isinstance(name, str) or not name:
        raise bad("'prompt' must be an object with the prompt's name in 'id'", "prompt.id")
    ref = value.get("version") or "production"
    if not isinstance(ref, str | int) or isinstance(ref, bool):
        raise bad("'prompt.version' must be a version number or a label", "prompt.version")
    raw = value.get("variables") or {}
    if not isinstance(raw, dict):
        raise bad("'prompt.variables' must be an object", "prompt.variables")
    variables = {}
    for key, var in raw.items():
        if isinstance(var, dict) and var.get("type") == "input_text":
            var = var.get("text")
        if not isinstance(var, str):
            raise bad("prompt variables are strings or input_text parts here",
                      f"prompt.variables.{key}")  # fmt: skip
        variables[str(key)] = var
    return PromptAsk(name, str(ref), variables)


def _logprobs(body: dict[str, Any]) -> int | None:
    include = body.get("include") or []
    if not isinstance(include, list) or not all(isinstance(i, str) for i in include):
        raise bad("'include' must be an array of strings", "include")
    top = body.get("top_logprobs")
    bad_top = isinstance(top, bool) or not isinstance(top, int) or not 0 <= top <= 20
    if top is not None and bad_top:
        raise bad("'top_logprobs' must be an integer from 0 to 20", "top_logprobs")
    if LOGPROBS_INCLUDE in include:
        return top or 0
    return None


# -- input -----------------------------------------------------------------------------------


def _input(value: Any) -> list[ChatMessage]:
    """``input``: a string (one user turn) or a list of items (messages, function calls and
    their outputs; reasoning items are skipped)."""
    if isinstance(value, str):
        return [_chat_message(role="user", content=value)]
    if not isinstance(value, list) or not value:
        raise bad("'input' must be a string or a non-empty array of input items", "input")
    out: list[ChatMessage] = []
    for i, item in enumerate(value):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise bad("each input item must be an object", where)
        kind = item.get("type", "message")
        if kind == "message":
            out.append(_message(item, where))
        elif kind == "function_call":
            _append_call(out, item, where)
        elif kind == "function_call_output":
            call_id = item.get("call_id")
            if not isinstance(call_id, str) or not call_id:
                raise bad("a 'function_call_output' needs a 'call_id' string", f"{where}.call_id")
            output = item.get("output")
            if not isinstance(output, str | list):
                raise bad("'output' must be a string or an array of parts", f"{where}.output")
            text, _ = _content(_parts(output, f"{where}.output"), i)
            out.append(_chat_message(role="tool", content=text, tool_call_id=call_id))
        elif kind == "reasoning":
            continue  # a reasoning model's own notes: nothing a local model reads back
        elif kind == "item_reference":
            raise bad("item references are not supported here; send the item itself, or "
                      "continue with 'previous_response_id'", f"{where}.type")  # fmt: skip
        else:
            raise bad(f"input items of type {kind!r} are not supported here (message, "
                      "function_call and function_call_output are)", f"{where}.type")  # fmt: skip
    if not out:
        raise bad("'input' holds no message", "input")
    return out


def _message(item: dict[str, Any], where: str) -> ChatMessage:
    role = item.get("role")
    if role not in INPUT_ROLES:
        raise bad(f"invalid role {role!r}", f"{where}.role")
    content = item.get("content")
    if not isinstance(content, str | list):
        raise bad("a message's 'content' must be a string or an array of parts",
                  f"{where}.content")  # fmt: skip
    text, parts = _content(_parts(content, f"{where}.content"), 0)
    return _chat_message(role=role, content=text, parts=parts)


def _append_call(out: list[ChatMessage], item: dict[str, Any], where: str) -> None:
    """A ``function_call`` item joins the assistant turn before it (calls made together are
    one turn in chat), or starts one."""
    call_id, name, args = item.get("call_id"), item.get("name"), item.get("arguments", "{}")
    if not isinstance(call_id, str) or not call_id:
        raise bad("a 'function_call' needs a 'call_id' string", f"{where}.call_id")
    if not isinstance(name, str) or not name:
        raise bad("a 'function_call' needs a 'name' string", f"{where}.name")
    if not isinstance(args, str):
        raise bad("'arguments' must be a JSON string", f"{where}.arguments")
    call = _tool_call(id=call_id, name=name, arguments=args)
    last = out[-1] if out else None
    if last is not None and last.role == "assistant":
        out[-1] = last.model_copy(update={"tool_calls": [*(last.tool_calls or []), call]})
    else:
        out.append(_chat_message(role="assistant", content="", tool_calls=[call]))


def _parts(value: Any, where: str) -> Any:
    """Responses content parts as chat's (``input_text`` as ``text``, ``input_image`` as
    ``image_url``, ...); a string stays a string."""
    if isinstance(value, str) or not isinstance(value, list):
        return value
    out: list[dict[str, Any]] = []
    for j, part in enumerate(value):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text"):
            out.append({"type": "text", "text": str(part.get("text", ""))})
        elif kind == "refusal":
            out.append({"type": "text", "text": str(part.get("refusal", ""))})
        elif kind == "input_image" and isinstance(part.get("image_url"), str):
            image = {"url": part["image_url"], "detail": part.get("detail") or "auto"}
            out.append({"type": "image_url", "image_url": image})
        elif kind == "input_file" and (part.get("file_data") or part.get("file_url")):
            keys = ("file_data", "filename", "file_url")
            out.append({"type": "file", "file": {k: part[k] for k in keys if k in part}})
        elif kind == "input_audio" and isinstance(part.get("input_audio"), dict):
            out.append({"type": "input_audio", "input_audio": part["input_audio"]})
        else:
            raise bad("content parts are input_text, output_text, refusal, input_image (with "
                      "an image_url), input_file (with file_data or file_url) or input_audio; "
                      "files by file_id are not supported here", f"{where}[{j}]")  # fmt: skip
    return out


# -- tools and formats -----------------------------------------------------------------------


def _tools(tools: Any, choice: Any) -> tuple[list[dict[str, Any]] | None, str | None]:
    """Responses function tools (flat: ``{type, name, parameters, ...}``) in chat's nested
    shape, and ``tool_choice`` as chat's."""
    if tools is None or tools == []:
        if choice not in (None, "none", "auto"):
            raise bad("'tool_choice' is only allowed when 'tools' are specified", "tool_choice")
        return None, None
    if not isinstance(tools, list):
        raise bad("'tools' must be an array", "tools")
    if len(tools) > MAX_TOOLS:
        raise bad(f"at most {MAX_TOOLS} tools per request", "tools")
    out, names = [], set()
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else None
            raise bad(f"only function tools are supported here, not {kind!r}", f"tools[{i}]")
        name = tool.get("name")
        if not isinstance(name, str) or not FUNCTION_NAME.match(name):
            raise bad("a function name is 1-64 letters, digits, '_' or '-'", f"tools[{i}].name")
        params = tool.get("parameters")
        if params is not None and not isinstance(params, dict):
            raise bad("'parameters' must be a JSON Schema object", f"tools[{i}].parameters")
        fn = {k: tool[k] for k in ("name", "description", "parameters", "strict") if k in tool}
        out.append({"type": "function", "function": fn})
        names.add(name)
    if isinstance(choice, dict) and choice.get("type") == "function" and "function" not in choice:
        choice = {"type": "function", "function": {"name": choice.get("name")}}
    if choice is not None and not isinstance(choice, dict) and choice not in PLAIN_CHOICES:
        raise bad("'tool_choice' must be 'none', 'auto', 'required' or "
                  "{'type': 'function', 'name': ...}", "tool_choice")  # fmt: skip
    return out, _tool_choice(choice, names)


def _text_format(text: Any) -> dict[str, Any] | None:
    """``text.format`` as chat's ``response_format`` (``json_schema`` nests its schema)."""
    if text is None:
        return None
    if not isinstance(text, dict):
        raise bad("'text' must be an object", "text")
    fmt = text.get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict):
        raise bad("'text.format' must be an object", "text.format")
    if fmt.get("type") == "json_schema":
        spec = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        chat: dict[str, Any] = {"type": "json_schema", "json_schema": spec}
    else:
        chat = {"type": fmt.get("type")}
    try:
        return _response_format({"response_format": chat})
    except BadRequestError as exc:
        raise bad(exc.detail.replace("response_format.json_schema", "text.format")
                  .replace("response_format", "text.format"), "text.format") from None  # fmt: skip
