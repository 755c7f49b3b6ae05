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
    """Counts tokens: a local ``tokenizers`` file if a path is given, else words and punctuation."""

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


def toxicity_scores(texts: Sequence[str], words: Sequence[list[str]] | None = None) -> list[float]:
    """Probability that each text is offensive (alt-profanity-check's linear model), batched.

    ``words`` (lower-cased ``\\w+`` tokens of each text, as the profile already has them) skip
    the package's own tokenizer: the features are the same, built faster.
    """
    if not texts:
        return []
    try:
        from profanity_check import predict_prob, profanity_check
    except ImportError:
        raise MissingExtraError("eval", "Toxicity scoring (alt-profanity-check)")
    model = getattr(profanity_check, "model", None)
    vectorizer = getattr(profanity_check, "vectorizer", None)
    if words is None or model is None or not hasattr(vectorizer, "idf_"):
        return [float(p) for p in predict_prob([t[:TOXICITY_MAX_CHARS] for t in texts])]
    return _scores_from_words(words, model, vectorizer)


def _scores_from_words(words: Sequence[list[str]], model: Any, vectorizer: Any) -> list[float]:
    # TfidfVectorizer(token_pattern=r"\b\w\w+\b", lowercase) == lower-cased \w+ tokens of 2+
    # characters; stop words are simply absent from its vocabulary.
    import numpy as np
    from scipy import sparse

    vocabulary: dict[str, int] = vectorizer.vocabulary_
    indices: list[int] = []
    indptr = [0]
    for row_words in words:
        indices.extend(i for i in map(vocabulary.get, row_words) if i is not None)
        indptr.append(len(indices))
    data = np.ones(len(indices), dtype=np.float64)
    shape = (len(words), len(vocabulary))
    counts = sparse.csr_matrix((data, np.asarray(indices, dtype=np.int64), indptr), shape=shape)
    counts.sum_duplicates()
    tfidf = counts.multiply(vectorizer.idf_).tocsr()
    norms = np.sqrt(np.asarray(tfidf.multiply(tfidf).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    tfidf = sparse.csr_matrix(sparse.diags(1.0 / norms) @ tfidf)
    return [float(p) for p in model.predict_proba(tfidf)[:, 1]]
