"""The context window of a local engine: how many tokens an answer may take, and OpenAI's 400
``context_length_exceeded`` (vLLM's wording) when a request cannot fit.

The rule is vLLM's: a ``max_tokens`` the client chose must fit beside the prompt, or the request is
refused; a chat without one may take all the room the prompt leaves, and a completion's default
(OpenAI's 16; ``max_tokens`` not in the sampling's ``model_fields_set``) is capped at that room.
Only a prompt that leaves no room at all is refused. The error names the parameter to shorten:
``messages`` for a chat, ``prompt`` for a completion, ``input`` for embeddings. It counts no
tokens itself.
"""

from __future__ import annotations

from llmloop.core.chat import GenerationRequest
from llmloop.errors import ContextLengthExceededError


def answer_budget(req: GenerationRequest, prompt_tokens: int, limit: int) -> int:
    """The most tokens the answer to ``req`` may take in a context of ``limit`` tokens."""
    asked = req.sampling.max_tokens
    chosen = "max_tokens" in req.sampling.model_fields_set
    if prompt_tokens < limit and not (chosen and prompt_tokens + asked > limit):
        if chosen:
            return asked
        if req.messages is not None:  # a chat without max_tokens may fill the context (vLLM)
            return limit - prompt_tokens
        return min(asked, limit - prompt_tokens)  # completions: OpenAI's default of 16
    where = "messages" if req.messages is not None else "prompt"
    head = f"This model's maximum context length is {limit} tokens. However, "
    if chosen:
        detail = (f"{head}you requested {prompt_tokens + asked} tokens ({prompt_tokens} in the "
                  f"{where}, {asked} in the completion). Please reduce the length of the {where} "
                  "or completion.")  # fmt: skip
    else:
        detail = (f"{head}your {where} resulted in {prompt_tokens} tokens, which leaves no room "
                  f"for the completion. Please reduce the length of the {where}.")  # fmt: skip
    raise ContextLengthExceededError(detail, param=where)


def check_inputs_fit(token_counts: list[int], limit: int) -> None:
    """Refuse an embedding input longer than the context (truncating it would hide that)."""
    for i, count in enumerate(token_counts):
        if count > limit:
            raise ContextLengthExceededError(
                f"This model's maximum context length is {limit} tokens. However, input {i} has "
                f"{count} tokens. Please reduce the length of the input.",
                param="input",
            )
