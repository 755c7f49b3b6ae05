"""Text measures shared by the profile and the cleaning steps: tokens, languages, toxicity.

Each wraps one library and loads it lazily: a ``tokenizers`` tokenizer from a local file (never
a hub), ``py3langid`` for languages (its model ships inside the package), and
``alt-profanity-check`` for toxicity. Missing optional libraries give ``MissingExtraError``
(or, for the profile, a note instead of a number).

It does not decide anything about rows; the profile and the steps do.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llmloop.errors import ConfigError, MissingExtraError

_REGEX_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)
TOXICITY_MAX_CHARS = 2000


class TextTokenizer:
    """Counts tokens: a local ``tokenizers`` file when a path is given, else words and punctuation."""

    def __init__(self, path: str | None = None) -> None:
        self.name = "regex:\\w+|[^\\w\\s]" if path is None else str(path)
        self._path = path
        self._tokenizer: Any = None

    def _load(self) -> Any:
        if self._tokenizer is None:
            try:
                from tokenizers import Tokenizer
            except ImportError:
                raise MissingExtraError("hf", "Counting tokens with a named tokenizer")
            path = Path(str(self._path))
            file = path / "tokenizer.json" if path.is_dir() else path
            if not file.is_file():
                raise ConfigError(f"tokenizer file not found: {file} (give a local tokenizer.json)")
            try:
                self._tokenizer = Tokenizer.from_file(str(file))
            except Exception as exc:
                raise ConfigError(f"cannot load tokenizer {file}: {exc}")
        return self._tokenizer

    def count(self, texts: Sequence[str]) -> list[int]:
        """Token count of each text."""
        if self._path is None:
            return [len(_REGEX_TOKEN.findall(t)) for t in texts]
        encodings = self._load().encode_batch(list(texts), add_special_tokens=False)
        return [len(e.ids) for e in encodings]


def detect_language(text: str) -> str:
    """ISO 639-1 code of the language of ``text`` (``und`` when it has no letters)."""
    if not any(ch.isalpha() for ch in text):
        return "und"
    try:
        import py3langid
    except ImportError:
        raise MissingExtraError("data", "Language detection (py3langid)")
    code, _ = py3langid.classify(text)
    return str(code)


def detect_languages(texts: Sequence[str]) -> tuple[dict[str, float], list[str]]:
    """Share of each language over ``texts`` and notes on anything not measured."""
    if not texts:
        return {}, []
    try:
        counts = Counter(detect_language(t) for t in texts)
    except MissingExtraError as exc:
        return {}, [f"languages not measured: {exc.detail}"]
    total = sum(counts.values())
    return {code: n / total for code, n in counts.most_common()}, []


def toxicity_scores(texts: Sequence[str]) -> list[float]:
    """Probability that each text is offensive (alt-profanity-check's linear model), batched."""
    if not texts:
        return []
    try:
        from profanity_check import predict_prob
    except ImportError:
        raise MissingExtraError("eval", "Toxicity scoring (alt-profanity-check)")
    return [float(p) for p in predict_prob([t[:TOXICITY_MAX_CHARS] for t in texts])]
