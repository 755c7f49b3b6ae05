"""OpenAI wire format: generation values rendered as response bodies (plain dicts for orjson).

Chat and completion answers (with logprobs in OpenAI's two shapes and tool calls), embeddings
(float or base64) and the model list. Parsing requests is ``schemas.py``; streamed chunks are
``sse.py``.
"""

from __future__ import annotations

import base64
import sys
from array import array
from typing import Any

from llmloop.core.chat import EmbeddingResult, GenerationResult, TokenLogprob, ToolCall

OPENAI_FINISH = {"stop": "stop", "length": "length", "content_filter": "content_filter",
                 "error": "stop", "cancelled": "stop", "tool_calls": "tool_calls"}  # fmt: skip


def usage_dict(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}  # fmt: skip


def logprob_entries(items: list[TokenLogprob]) -> list[dict[str, Any]]:
    """Tokens' log-probabilities as OpenAI's entries (token, logprob, bytes, top_logprobs): chat's
    ``logprobs.content`` and the Responses API's ``output_text.logprobs`` alike."""
    entries = []
    for lp in items:
        top = [{"token": t, "logprob": v, "bytes": list(t.encode())}
               for t, v in (lp.top or {}).items()]  # fmt: skip
        logprob = lp.logprob if lp.logprob is not None else 0.0
        raw = lp.bytes if lp.bytes is not None else list(lp.token.encode())
        entries.append({"token": lp.token, "logprob": logprob, "bytes": raw,
                        "top_logprobs": top})  # fmt: skip
    return entries


def chat_logprobs(items: list[TokenLogprob] | None) -> dict[str, Any] | None:
    return None if items is None else {"content": logprob_entries(items)}


def completion_logprobs(items: list[TokenLogprob] | None, start: int = 0) -> dict[str, Any] | None:
    """OpenAI's legacy shape: tokens, token_logprobs, top_logprobs, text_offset (counted from
    ``start`` when the engine gives no offsets: a streamed chunk's, after the text before it)."""
    if items is None:
        return None
    use_engine_offsets = any(lp.offset for lp in items)
    offsets, pos = [], start
    for lp in items:
        offsets.append(lp.offset if use_engine_offsets else pos)
        pos += len(lp.token)
    return {
        "tokens": [lp.token for lp in items],
        "token_logprobs": [lp.logprob for lp in items],
        "top_logprobs": [dict(lp.top) if lp.top is not None else None for lp in items],
        "text_offset": offsets,
    }


def tool_call_dicts(calls: list[ToolCall]) -> list[dict[str, Any]]:
    return [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in calls]  # fmt: skip


def _message(result: GenerationResult) -> dict[str, Any]:
    if not result.tool_calls:
        return {"role": "assistant", "content": result.text}
    return {"role": "assistant", "content": result.text or None,
            "tool_calls": tool_call_dicts(result.tool_calls)}  # fmt: skip


def chat_response(
    results: list[GenerationResult], model: str, trace_id: str, created: int
) -> dict[str, Any]:
    """One choice per answer (OpenAI's ``n``); usage counts the prompt once."""
    return {
        "id": f"chatcmpl-{trace_id}", "object": "chat.completion", "created": created,
        "model": model,
        "choices": [{"index": i, "message": _message(r),
                     "logprobs": chat_logprobs(r.logprobs),
                     "finish_reason": OPENAI_FINISH[r.finish_reason]}
                    for i, r in enumerate(results)],
        "usage": usage_dict(results[0].usage.prompt_tokens,
                            sum(r.usage.completion_tokens for r in results)),
        "system_fingerprint": None, "trace_id": trace_id,
    }  # fmt: skip


def completion_response(
    results: list[GenerationResult], model: str, trace_ids: list[str], created: int, n: int = 1
) -> dict[str, Any]:
    """``n`` choices per prompt, in prompt order (choice ``prompt_index * n + j``, as OpenAI
    numbers them); usage counts each prompt once and sums the completions; every prompt's
    trace id."""
    body = {
        "id": f"cmpl-{trace_ids[0]}", "object": "text_completion", "created": created,
        "model": model,
        "choices": [{"index": i, "text": r.text, "logprobs": completion_logprobs(r.logprobs),
                     "finish_reason": OPENAI_FINISH[r.finish_reason]}
                    for i, r in enumerate(results)],
        "usage": usage_dict(sum(r.usage.prompt_tokens for r in results[::n]),
                            sum(r.usage.completion_tokens for r in results)),
        "system_fingerprint": None, "trace_id": trace_ids[0],
    }  # fmt: skip
    if len(trace_ids) > 1:
        body["trace_ids"] = trace_ids
    return body


def _b64_floats(vector: list[float]) -> str:
    """OpenAI's base64 encoding: little-endian float32."""
    packed = array("f", vector)
    if sys.byteorder != "little":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode()


def embeddings_response(
    result: EmbeddingResult, model: str, trace_id: str, as_base64: bool = False
) -> dict[str, Any]:
    return {
        "object": "list", "model": model,
        "data": [{"object": "embedding", "index": i,
                  "embedding": _b64_floats(v) if as_base64 else v}
                 for i, v in enumerate(result.vectors)],
        "usage": {"prompt_tokens": result.usage.prompt_tokens,
                  "total_tokens": result.usage.prompt_tokens},
        "trace_id": trace_id,
    }  # fmt: skip


def models_response(models: list[tuple[str, int]]) -> dict[str, Any]:
    return {"object": "list", "data": [
        {"id": name, "object": "model", "created": created, "owned_by": "llmloop"}
        for name, created in models]}  # fmt: skip
