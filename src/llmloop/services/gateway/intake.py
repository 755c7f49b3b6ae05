"""What the gateway reads off a request before running it: its text for the trace, a token
estimate for limits, and whether the target's engine can honour it (a 400 naming the parameter
when not). Nothing here runs a request (``service.py``).
"""

from __future__ import annotations

import orjson

from llmloop.core.chat import GenerationRequest
from llmloop.engines.base import Engine
from llmloop.errors import BadRequestError


def request_text(req: GenerationRequest) -> str:
    if req.prompt_ids is not None:
        return " ".join(map(str, req.prompt_ids))
    if req.prompt is not None:
        return req.prompt
    assert req.messages is not None
    # core.traces.join_turns's format, written inline: on every request, without its tuples
    return "\n".join(f"{m.role}: {m.content}" for m in req.messages)


def estimate_prompt_tokens(req: GenerationRequest) -> int:
    """~4 characters a token (token-id prompts: their length), tools included."""
    if req.prompt_ids is not None:
        return len(req.prompt_ids)
    chars = len(request_text(req))
    if req.tools:
        chars += len(orjson.dumps(req.tools))
    return chars // 4 + 1


def estimate_tokens(req: GenerationRequest, n: int = 1) -> int:
    """A cheap upper-ish estimate for limits: the prompt's plus the output cap (once per
    choice)."""
    return estimate_prompt_tokens(req) + n * req.sampling.max_tokens


def require_capable(engine: Engine, req: GenerationRequest, deployment: str) -> None:
    """Refuse (400) tools, a JSON response format, token-id prompts or media parts that the
    target's engine cannot honour."""
    media = req.messages is not None and any(m.parts for m in req.messages)
    if not (req.wants_tools or media) and req.response_format is None and req.prompt_ids is None:
        return
    caps = engine.capabilities
    if media and not caps.multimodal:
        raise BadRequestError(f"model '{deployment}' ({engine.kind} engine) takes text only: "
                              "no image, audio or file parts", param="messages")  # fmt: skip
    if req.prompt_ids is not None and not caps.token_prompts:
        raise BadRequestError(f"model '{deployment}' ({engine.kind} engine) takes prompts as "
                              "text, not token ids", param="prompt")  # fmt: skip
    if req.wants_tools and not caps.tools:
        raise BadRequestError(f"model '{deployment}' ({engine.kind} engine) does not support "
                              "tools", param="tools")  # fmt: skip
    if req.response_format is not None and not caps.structured_output:
        raise BadRequestError(f"model '{deployment}' ({engine.kind} engine) does not support "
                              "response_format " + repr(req.response_format.get("type")),
                              param="response_format")  # fmt: skip
