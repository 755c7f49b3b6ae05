"""OpenAI request fields that reach a local engine only through ``GenerationRequest.passthrough``.

The gateway keeps the fields it does not read in ``passthrough`` (``openai`` upstreams get them as
sent). A local engine that ignored them would answer as if they had not been asked for, so the hf
engine reads the ones that change an answer: ``logit_bias`` is parsed and checked against the
vocabulary here (the worker adds it to the logits), while ``suffix`` and ``best_of`` > 1, which
it does not implement, are refused with a 400 naming the parameter; vLLM's ``min_tokens`` and
``ignore_eos`` (sent by load generators for answers of a fixed length) give the tokens before
which end-of-sequence may not be sampled. Values that ask for nothing
(``null``, ``""``, ``{}``, ``best_of: 1``) are accepted: SDKs send them as defaults. Fields that
do not change what is generated (``metadata``, ``store``, ...) are left alone. It applies nothing.
"""

from __future__ import annotations

import math
from typing import Any

from llmloop.core.chat import GenerationRequest
from llmloop.errors import BadRequestError

MAX_BIAS = 100.0  # OpenAI's range for a logit bias: -100 (ban) to 100 (force)


def refuse_unhonoured(req: GenerationRequest, engine: str) -> None:
    """A 400 naming ``suffix`` or ``best_of`` when the request asks for them."""
    extra = req.passthrough or {}
    suffix = extra.get("suffix")
    if suffix is not None and suffix != "":
        raise BadRequestError(
            f"the {engine} engine does not support 'suffix' (insertion after the completion)",
            param="suffix",
        )
    best_of = extra.get("best_of")
    if best_of is None:
        return
    if isinstance(best_of, bool) or not isinstance(best_of, int) or best_of < 1:
        raise BadRequestError("'best_of' must be a positive integer", param="best_of")
    if best_of > 1:
        raise BadRequestError(
            f"the {engine} engine does not support 'best_of' > 1; ask for 'n' choices instead",
            param="best_of",
        )


def logit_bias(req: GenerationRequest, vocab_size: int) -> dict[int, float] | None:
    """``logit_bias`` as {token id: bias}, checked as OpenAI checks it (None when absent)."""
    value: Any = (req.passthrough or {}).get("logit_bias")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadRequestError(
            "'logit_bias' must be an object mapping token ids to biases", param="logit_bias"
        )
    out: dict[int, float] = {}
    for key, bias in value.items():
        token = _token_id(key)
        if token is None or token >= vocab_size:
            raise BadRequestError(
                f"Invalid key in 'logit_bias': {key!r}. Keys are token ids of this model's "
                f"vocabulary (0 to {vocab_size - 1}).",
                param="logit_bias",
            )
        if (
            isinstance(bias, bool)
            or not isinstance(bias, int | float)
            or not math.isfinite(bias)
            or abs(bias) > MAX_BIAS
        ):
            raise BadRequestError(
                f"Invalid value for 'logit_bias' of token {key}: {bias!r}. Biases are numbers "
                f"from -{MAX_BIAS:g} to {MAX_BIAS:g}.",
                param="logit_bias",
            )
        out[token] = float(bias)
    return out or None


def _token_id(key: Any) -> int | None:
    if isinstance(key, int) and not isinstance(key, bool):
        return key if key >= 0 else None
    if isinstance(key, str) and key.isascii() and key.isdigit():
        return int(key)
    return None


def min_new_tokens(req: GenerationRequest, max_new_tokens: int) -> int:
    """How many tokens must come before end-of-sequence may (vLLM's ``min_tokens``;
    ``ignore_eos: true``: all of ``max_new_tokens``). Stop strings still stop."""
    extra = req.passthrough or {}
    ignore = extra.get("ignore_eos")
    if ignore is not None and not isinstance(ignore, bool):
        raise BadRequestError("'ignore_eos' must be a boolean", param="ignore_eos")
    least = extra.get("min_tokens")
    if least is None:
        least = 0
    if isinstance(least, bool) or not isinstance(least, int) or least < 0:
        raise BadRequestError("'min_tokens' must be a non-negative integer", param="min_tokens")
    chosen = req.sampling.max_tokens if "max_tokens" in req.sampling.model_fields_set else None
    if chosen is not None and least > chosen:
        raise BadRequestError(
            f"'min_tokens' ({least}) must be at most 'max_tokens' ({chosen})", param="min_tokens"
        )
    return max_new_tokens if ignore else min(least, max_new_tokens)
