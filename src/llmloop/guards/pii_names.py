"""Personal names, found by a token-classification (NER) model the user provides.

A regex cannot tell "Rose" the person from "rose" the flower, and a list of names flags ordinary
words, so names are found only when :class:`~llmloop.guards.pii.PiiConfig` names a model:
a local directory (or, where downloads are allowed, a hub id) of a Hugging Face
token-classification model such as a CoNLL-2003 NER model, run on CPU through
``transformers.pipeline("token-classification")`` with word-level aggregation. Entities whose
group is one of ``labels`` (``PER``/``PERSON`` by default) and that cover whole words become
``person`` findings with the model's score. Models load once per process and run batched.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from typing import Any

from llmloop.errors import ConfigError, require_extra

DEFAULT_LABELS = ("PER", "PERSON")
_lock = threading.Lock()


@functools.cache
def _pipeline(model: str) -> Any:
    require_extra("transformers", "hf", "PII name detection")
    from transformers import pipeline

    try:
        try:  # word-level: a word is a name or not as a whole (needs a fast tokenizer)
            return pipeline(
                "token-classification", model=model, aggregation_strategy="first", device="cpu"
            )
        except ValueError:
            return pipeline(
                "token-classification", model=model, aggregation_strategy="simple", device="cpu"
            )
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(
            f"PII name model '{model}' could not be loaded as a token-classification model "
            f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); give a local model "
            "directory (hub downloads are off on offline machines)"
        ) from None


class NameFinder:
    """``find_batch(texts)`` -> per text, a list of ``(start, end, score)`` for person names."""

    def __init__(
        self, model: str, labels: Sequence[str] = DEFAULT_LABELS, batch_size: int = 32
    ) -> None:
        self.model = model
        self.labels = {label.upper() for label in labels}
        self.batch_size = batch_size

    def load(self) -> None:
        """Load the model now (raises :class:`ConfigError` when it cannot)."""
        with _lock:
            _pipeline(self.model)

    def find_batch(self, texts: list[str]) -> list[list[tuple[int, int, float]]]:
        found: list[list[tuple[int, int, float]]] = [[] for _ in texts]
        todo = [i for i, text in enumerate(texts) if text.strip()]
        if not todo:
            return found
        with _lock:  # one pipeline per process; its tokenizer is not thread-safe
            ner = _pipeline(self.model)
            results = ner([texts[i] for i in todo], batch_size=self.batch_size)
        for index, entities in zip(todo, results, strict=True):
            text = texts[index]
            for ent in entities:
                group = str(ent.get("entity_group", ent.get("entity", ""))).upper()
                group = group.removeprefix("B-").removeprefix("I-")
                start, end = ent.get("start"), ent.get("end")
                if group not in self.labels or start is None or end is None:
                    continue
                # Trim what the tokenizer's offsets may include around the name.
                while start < end and not text[start].isalnum():
                    start += 1
                while end > start and not text[end - 1].isalnum():
                    end -= 1
                inside_word = (start > 0 and text[start - 1].isalnum()) or (
                    end < len(text) and text[end].isalnum()
                )
                if end > start and not inside_word:  # a piece of a word is no name
                    found[index].append((int(start), int(end), float(ent["score"])))
        for spans in found:  # adjacent pieces of one name ("Ana" "Lucia") become one span
            spans.sort()
            merged: list[tuple[int, int, float]] = []
            for start, end, score in spans:
                if merged and start - merged[-1][1] <= 1:
                    last = merged[-1]
                    merged[-1] = (last[0], end, min(last[2], score))
                else:
                    merged.append((start, end, score))
            spans[:] = merged
        return found
