"""Perplexity of a causal language model on texts: the quality yardstick of training and export.

Token-weighted: the mean negative log-likelihood over every predicted token of every text,
exponentiated, so long texts weigh more than short ones. It does not load models (callers pass a
loaded model and tokenizer) and does not judge answers (that is the evaluators' job).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from llmloop.errors import InvalidInputError

__all__ = ["mean_nll", "perplexity"]


def mean_nll(model: Any, tokenizer: Any, texts: Sequence[str], max_length: int = 512) -> float:
    """Mean negative log-likelihood per predicted token of ``texts`` under ``model``."""
    import torch

    if not texts:
        raise InvalidInputError("perplexity needs at least one text")
    total_nll, total_tokens = 0.0, 0
    device = next(model.parameters()).device
    model.eval()
    with torch.no_grad():
        for text in texts:
            ids = tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt")
            input_ids = ids["input_ids"].to(device)
            predicted = input_ids.shape[1] - 1
            if predicted < 1:
                continue
            logits = model(input_ids=input_ids).logits[:, :-1, :].float()
            nll = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), input_ids[:, 1:].reshape(-1), reduction="sum"
            )
            total_nll += float(nll)
            total_tokens += predicted
    if total_tokens == 0:
        raise InvalidInputError("the texts are too short: no token to predict")
    return total_nll / total_tokens


def perplexity(model: Any, tokenizer: Any, texts: Sequence[str], max_length: int = 512) -> float:
    """``exp`` of :func:`mean_nll`: how many tokens the model hesitates between, on average."""
    return math.exp(min(mean_nll(model, tokenizer, texts, max_length), 50.0))
