"""OpenAI wire format -> generation values: parse request bodies.

Parsing is hand-written over the ``orjson``-decoded dict (no pydantic model per wire type) to
keep the hot path lean; the resulting :class:`GenerationRequest` still validates ranges, and any
problem becomes a 400 ``invalid_request_error`` naming the parameter, as OpenAI answers. Unknown
fields are kept for upstreams that read them (``passthrough``). Rendering answers is
``render.py``; this module knows nothing of routing, auth or streaming transport (``sse.py``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from llmloop.core.chat import (
    ChatMessage,
    GenerationRequest,
    SamplingParams,
    ToolCall,
)
from llmloop.errors import BadRequestError

DEFAULT_CHAT_MAX_TOKENS = 1024  # when the client sends no max_tokens (limits estimate from it)
ROLES = frozenset(("system", "user", "assistant", "tool", "developer"))
MAX_PROMPTS = 2048
MAX_N = 128  # choices per request, as OpenAI allows
MAX_CHOICES = 2048  # of a batched completion: prompts times n
_COMMON = ("model", "max_tokens", "temperature", "top_p", "top_k", "seed", "presence_penalty",
           "frequency_penalty", "repetition_penalty", "stop", "n", "user", "logprobs", "stream",
           "stream_options")  # fmt: skip
CHAT_FIELDS = frozenset((*_COMMON, "messages", "top_logprobs", "tools", "tool_choice",
                         "parallel_tool_calls", "response_format", "functions",
                         "function_call"))  # fmt: skip
COMPLETION_FIELDS = frozenset((*_COMMON, "prompt", "echo"))
MEDIA_PARTS = frozenset(("image_url", "input_audio", "file"))
FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_TOOLS = 128

M = TypeVar("M", bound=BaseModel)


def _maker(cls: type[M]) -> Callable[..., M]:
    """``cls.model_construct`` for the parsed (trusted) values of every request, without its
    search of each field's aliases: a third of the time (5.5 against 1.8 µs for a request).
    Fields left out take their defaults; the instance is the one ``model_construct`` builds
    (tests/unit/gateway/test_schemas_construct.py holds the two side by side, so a pydantic
    that changes its internals fails there, not in production)."""
    fields = cls.__pydantic_fields__
    if (
        cls.__pydantic_post_init__
        or cls.model_config.get("extra") == "allow"
        or any(f.alias is not None or f.validation_alias is not None for f in fields.values())
    ):
        raise TypeError(f"{cls.__name__} needs model_construct")  # import time: a code error
    names = tuple(fields)
    new, setattr_ = cls.__new__, object.__setattr__

    def make(**values: Any) -> M:
        given = set(values)
        if len(given) != len(names):
            for name in names:
                if name not in values:
                    values[name] = fields[name].get_default(call_default_factory=True)
        obj = new(cls)
        setattr_(obj, "__dict__", {name: values[name] for name in names})
        setattr_(obj, "__pydantic_fields_set__", given)
        setattr_(obj, "__pydantic_extra__", None)
        setattr_(obj, "__pydantic_private__", None)
        return obj

    return make


_chat_message = _maker(ChatMessage)
_generation_request = _maker(GenerationRequest)
_tool_call = _maker(ToolCall)


@dataclass(frozen=True)
class Delivery:
    """How the answer goes back: ``n`` choices (per prompt), streamed or whole, and whether a
    stream ends with a usage chunk."""

    n: int = 1
    stream: bool = False
    include_usage: bool = False


def bad(message: str, param: str | None = None) -> BadRequestError:
    return BadRequestError(message, param=param)


def load_body(raw: bytes) -> dict[str, Any]:
    """The JSON object of a request body; 400 for anything else."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise bad("We could not parse the JSON body of your request.") from None
    if not isinstance(body, dict):
        raise bad("The request body must be a JSON object.")
    return body


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad("you must provide a model parameter", "model")
    return model


def _content(value: Any, index: int) -> tuple[str, list[dict[str, Any]] | None]:
    """(the text, the parts when there is more than text) of a message's content."""
    if isinstance(value, str):
        return value, None
    if value is None:
        return "", None
    if isinstance(value, list):
        texts, rich = [], False
        for j, part in enumerate(value):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                texts.append(str(part.get("text", "")))
            elif kind == "refusal":  # an assistant turn's refusal, sent back as history
                texts.append(str(part.get("refusal", "")))
            elif kind in MEDIA_PARTS and isinstance(part.get(kind), dict):
                rich = True
            else:
                raise bad("content parts are text, refusal, image_url, input_audio or file objects",
                          f"messages.[{index}].content.[{j}]")  # fmt: skip
        return "".join(texts), value if rich else None
    raise bad("content must be a string or a list of parts", f"messages.[{index}].content")


def _messages(value: Any) -> list[ChatMessage]:
    if not isinstance(value, list) or not value:
        raise bad("'messages' must be a non-empty array", "messages")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict):
            raise bad("each message must be an object", f"messages.[{i}]")
        role = m.get("role")
        if role not in ROLES:
            raise bad(f"invalid role {role!r}", f"messages.[{i}].role")
        name = m.get("name")
        calls = _message_tool_calls(m.get("tool_calls"), i) if role == "assistant" else None
        call_id = m.get("tool_call_id")
        if role == "tool" and (not isinstance(call_id, str) or not call_id):
            raise bad("messages with role 'tool' need a 'tool_call_id' string",
                      f"messages.[{i}].tool_call_id")  # fmt: skip
        if m.get("content") is None and role != "assistant":
            raise bad(f"messages with role '{role}' must have 'content'",
                      f"messages.[{i}].content")  # fmt: skip
        content, parts = _content(m.get("content"), i)
        out.append(_chat_message(
            role=role, content=content, parts=parts,
            name=name if isinstance(name, str) else None, tool_calls=calls,
            tool_call_id=call_id if role == "tool" else None))  # fmt: skip
    return out


def _message_tool_calls(value: Any, index: int) -> list[ToolCall] | None:
    """An assistant turn's earlier calls: ``[{id, type, function: {name, arguments}}]``."""
    if value is None:
        return None
    where = f"messages.[{index}].tool_calls"
    if not isinstance(value, list):
        raise bad("'tool_calls' must be an array", where)
    calls = []
    for j, call in enumerate(value):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise bad("each tool call needs a 'function' with a 'name'", f"{where}.[{j}]")
        call_id, args = call.get("id"), fn.get("arguments", "{}")
        if not isinstance(call_id, str) or not call_id:
            raise bad("each tool call needs an 'id' string", f"{where}.[{j}].id")
        if not isinstance(args, str):
            raise bad("'arguments' must be a JSON string", f"{where}.[{j}].function.arguments")
        calls.append(_tool_call(id=call_id, name=fn["name"], arguments=args))
    return calls or None


def _tools(body: dict[str, Any]) -> tuple[list[dict[str, Any]] | None, str | None]:
    """(tools, tool_choice): OpenAI function tools, checked as OpenAI checks them."""
    if body.get("functions") is not None or body.get("function_call") is not None:
        raise bad("'functions' and 'function_call' are deprecated; send 'tools' and "
                  "'tool_choice' instead", "functions")  # fmt: skip
    tools, choice = body.get("tools"), body.get("tool_choice")
    if tools is None:
        if choice is not None:
            raise bad("'tool_choice' is only allowed when 'tools' are specified", "tool_choice")
        return None, None
    if not isinstance(tools, list) or not tools:
        raise bad("'tools' must be a non-empty array", "tools")
    if len(tools) > MAX_TOOLS:
        raise bad(f"at most {MAX_TOOLS} tools per request", "tools")
    names = set()
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(fn, dict):
            raise bad("each tool must be {'type': 'function', 'function': {...}}", f"tools.[{i}]")
        name = fn.get("name")
        if not isinstance(name, str) or not FUNCTION_NAME.match(name):
            raise bad("a function name is 1-64 letters, digits, '_' or '-'",
                      f"tools.[{i}].function.name")  # fmt: skip
        params = fn.get("parameters")
        if params is not None and not isinstance(params, dict):
            raise bad(
                "'parameters' must be a JSON Schema object", f"tools.[{i}].function.parameters"
            )
        names.add(name)
    return tools, _tool_choice(choice, names)


def _tool_choice(choice: Any, names: set[str]) -> str | None:
    if choice is None or choice in ("none", "auto", "required"):
        return choice  # type: ignore[no-any-return]
    fn = choice.get("function") if isinstance(choice, dict) else None
    if not isinstance(fn, dict) or choice.get("type") != "function":
        raise bad("'tool_choice' must be 'none', 'auto', 'required' or "
                  "{'type': 'function', 'function': {'name': ...}}", "tool_choice")  # fmt: skip
    if fn.get("name") not in names:
        raise bad(f"tool_choice names function {fn.get('name')!r}, which is not in 'tools'",
                  "tool_choice")  # fmt: skip
    return str(fn["name"])


def _response_format(body: dict[str, Any]) -> dict[str, Any] | None:
    value = body.get("response_format")
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind not in ("text", "json_object", "json_schema"):
        raise bad("'response_format.type' must be 'text', 'json_object' or 'json_schema'",
                  "response_format")  # fmt: skip
    if kind == "text":
        return None
    if kind == "json_schema":
        spec = value.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise bad("'response_format.json_schema' needs a 'name'", "response_format.json_schema")
        if not isinstance(spec.get("schema", {}), dict):
            raise bad("'response_format.json_schema.schema' must be an object",
                      "response_format.json_schema.schema")  # fmt: skip
    return dict(value)


def _sampling(body: dict[str, Any], default_max: int) -> SamplingParams:
    fields: dict[str, Any] = {}
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    fields["max_tokens"] = default_max if max_tokens is None else max_tokens
    for name in ("temperature", "top_p", "top_k", "seed", "presence_penalty",
                 "frequency_penalty", "repetition_penalty"):  # fmt: skip
        value = body.get(name)
        if value is not None:
            fields[name] = value
    stop = body.get("stop")
    if stop is not None:
        fields["stop"] = [stop] if isinstance(stop, str) else stop
    try:
        params = SamplingParams.model_validate(fields)
    except ValidationError as exc:
        raise _from_validation(exc) from None
    if max_tokens is None:  # our cap for local engines, not the client's choice
        params.__pydantic_fields_set__.discard("max_tokens")
    return params


def _n(body: dict[str, Any]) -> int:
    """How many choices: OpenAI's ``n``, an integer from 1 to MAX_N (1 when absent)."""
    n = body.get("n")
    if n is None:
        return 1
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_N:
        raise bad(f"'n' must be an integer from 1 to {MAX_N}", "n")
    return n


def _passthrough(body: dict[str, Any], known: frozenset[str]) -> dict[str, Any] | None:
    """The fields of ``body`` llmloop does not read, for upstreams that may (``metadata``
    checked as OpenAI checks it: the gateway also puts it on the trace)."""
    extra = {k: v for k, v in body.items() if k not in known}
    if "metadata" in extra:
        check_metadata(extra["metadata"])
    return extra or None


MAX_METADATA = 16


def check_metadata(value: Any) -> dict[str, str]:
    """OpenAI's ``metadata``: at most 16 pairs, keys up to 64 characters, values up to 512."""
    if value is None:
        return {}
    if (
        not isinstance(value, dict)
        or len(value) > MAX_METADATA
        or not all(isinstance(k, str) and 0 < len(k) <= 64 for k in value)
        or not all(isinstance(v, str) and len(v) <= 512 for v in value.values())
    ):
        raise bad(f"'metadata' must be an object of at most {MAX_METADATA} string values "
                  "(keys up to 64 characters, values up to 512)", "metadata")  # fmt: skip
    return value


def _from_validation(exc: ValidationError) -> BadRequestError:
    err = exc.errors()[0]
    param = ".".join(str(p) for p in err.get("loc", ())) or None
    return bad(f"Invalid value for '{param}': {err.get('msg', 'invalid')}", param)


def _string(body: dict[str, Any], name: str) -> str | None:
    """An optional string field (None when absent)."""
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise bad(f"'{name}' must be a string", name)
    return value


def _user(body: dict[str, Any]) -> str | None:
    return _string(body, "user")


def _flag(body: dict[str, Any], name: str, default: bool = False) -> bool:
    """An optional boolean field (``default`` when absent or null)."""
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise bad(f"'{name}' must be a boolean", name)
    return value


def parse_chat(body: dict[str, Any]) -> tuple[GenerationRequest, Delivery]:
    """(request, delivery) of a /v1/chat/completions body."""
    model = _model(body)
    messages = _messages(body.get("messages"))
    logprobs = None
    top = body.get("top_logprobs")
    if _flag(body, "logprobs"):
        top = top or 0
        if not isinstance(top, int) or isinstance(top, bool) or not 0 <= top <= 20:
            raise bad("'top_logprobs' must be an integer from 0 to 20", "top_logprobs")
        logprobs = top
    elif top is not None:
        raise bad("'logprobs' must be set to true when 'top_logprobs' is used", "top_logprobs")
    tools, tool_choice = _tools(body)
    parallel = body.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise bad("'parallel_tool_calls' must be a boolean", "parallel_tool_calls")
    req = _generation_request(
        model=model, messages=messages, prompt=None,
        sampling=_sampling(body, DEFAULT_CHAT_MAX_TOKENS), logprobs=logprobs, echo=False,
        adapter=None, user=_user(body), request_id="", tools=tools, tool_choice=tool_choice,
        parallel_tool_calls=parallel, response_format=_response_format(body),
        passthrough=_passthrough(body, CHAT_FIELDS),
    )  # fmt: skip
    stream = _flag(body, "stream")
    return req, Delivery(_n(body), stream, _include_usage(body, stream))


def _include_usage(body: dict[str, Any], stream: bool) -> bool:
    options = body.get("stream_options")
    if options is None:
        return False
    if not isinstance(options, dict):
        raise bad("'stream_options' must be an object", "stream_options")
    if not stream:
        raise bad("The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                  "stream_options")  # fmt: skip
    return bool(options.get("include_usage"))


def _token_ids(value: list[Any]) -> list[int] | None:
    """``value`` as token ids, or None when it is not a list of non-negative integers."""
    if value and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in value):
        return value
    return None


def _prompts(value: Any) -> list[str | list[int]]:
    """OpenAI's four prompt forms: text, [text, ...], token ids, [token ids, ...]."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        ids = _token_ids(value)
        if ids is not None:
            return [ids]
        out: list[str | list[int]] = []
        for item in value:
            one = (
                item
                if isinstance(item, str)
                else _token_ids(item)
                if isinstance(item, list)
                else None
            )
            if one is None:
                break
            out.append(one)
        else:
            if len(out) > MAX_PROMPTS:
                raise bad(f"at most {MAX_PROMPTS} prompts per request", "prompt")
            return out
    raise bad("'prompt' must be a string, an array of strings, an array of token ids or an "
              "array of token-id arrays", "prompt")  # fmt: skip


def parse_completion(body: dict[str, Any]) -> tuple[list[GenerationRequest], Delivery]:
    """(one request per prompt, delivery) of a /v1/completions body."""
    model = _model(body)
    prompts = _prompts(body.get("prompt"))
    stream, n = _flag(body, "stream"), _n(body)
    if stream and len(prompts) > 1:
        raise bad("streaming takes one prompt; send the others as separate requests", "prompt")
    if len(prompts) * n > MAX_CHOICES:
        raise bad(f"at most {MAX_CHOICES} choices per request (prompts times n)", "n")
    logprobs = body.get("logprobs")
    if logprobs is not None and (
        isinstance(logprobs, bool) or not isinstance(logprobs, int) or not 0 <= logprobs <= 20
    ):
        raise bad("'logprobs' must be an integer from 0 to 20", "logprobs")
    sampling, echo, user = _sampling(body, 16), _flag(body, "echo"), _user(body)
    extra = _passthrough(body, COMPLETION_FIELDS)
    reqs = [_generation_request(
        model=model, messages=None, prompt=p if isinstance(p, str) else "",
        prompt_ids=None if isinstance(p, str) else p, sampling=sampling, logprobs=logprobs,
        echo=echo, adapter=None, user=user, request_id="", passthrough=extra,
    ) for p in prompts]  # fmt: skip
    return reqs, Delivery(n, stream, _include_usage(body, stream))


@dataclass(frozen=True)
class EmbeddingsAsk:
    """A /v1/embeddings body: the texts, and how the vectors go back."""

    model: str
    texts: list[str]
    as_base64: bool = False
    dimensions: int | None = None


def parse_embeddings(body: dict[str, Any]) -> EmbeddingsAsk:
    """The :class:`EmbeddingsAsk` of a /v1/embeddings body."""
    model = _model(body)
    value = body.get("input")
    texts = [value] if isinstance(value, str) else value
    if isinstance(texts, list) and texts and all(isinstance(t, int | list) for t in texts):
        raise bad("'input' as token ids is not supported here: embeddings are made from text "
                  "(LangChain's OpenAIEmbeddings sends token ids unless given "
                  "check_embedding_ctx_length=False)", "input")  # fmt: skip
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise bad("'input' must be a string or a non-empty array of strings", "input")
    if len(texts) > 2048:
        raise bad("at most 2048 inputs per request", "input")
    fmt = body.get("encoding_format")
    if fmt not in (None, "float", "base64"):
        raise bad("encoding_format must be 'float' or 'base64'", "encoding_format")
    dims = body.get("dimensions")
    if dims is not None and (isinstance(dims, bool) or not isinstance(dims, int) or dims < 1):
        raise bad("'dimensions' must be a positive integer", "dimensions")
    return EmbeddingsAsk(model, texts, fmt == "base64", dims)
