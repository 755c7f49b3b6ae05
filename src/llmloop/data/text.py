"""Text measures shared by the profile and the cleaning steps: tokens, languages, toxicity.

Each wraps one library and loads it lazily: a ``tokenizers`` tokenizer from a local file (never
a hub), ``py3langid`` for languages (its model ships inside the package), and
``alt-profanity-check`` for toxicity. Missing optional libraries give ``MissingExtraError``
(or, for the profile, a note instead of a number).

Batch paths keep per-row Python out of the hot loop: the regex tokenizer counts ASCII rows with
numpy over the batch's UTF-8 bytes (``batchtext``; non-ASCII rows with the regex), and toxicity
from pre-split words (lists of ``str``, or UTF-8 words in one flat list as ``batchtext`` makes
them) evaluates alt-profanity-check's stored weights with numpy (``toxicity_weights``; no
scikit-learn import).
Languages live in ``languages`` (re-exported here).

It does not decide anything about rows; the profile and the steps do.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llmloop.data.batchtext import _REGEX_TOKEN as _REGEX_TOKEN
from llmloop.data.batchtext import BatchText
from llmloop.data.batchtext import column_values as column_values
from llmloop.data.batchtext import text_column as text_column
from llmloop.data.languages import detect_language as detect_language
from llmloop.data.languages import detect_languages as detect_languages
from llmloop.data.languages import prefetch_language_model as prefetch_language_model
from llmloop.data.toxicity_weights import toxicity_weights
from llmloop.errors import ConfigError, MissingExtraError

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
            return _regex_token_counts(texts)
        encodings = self._load().encode_batch(list(texts), add_special_tokens=False)
        return [len(e.ids) for e in encodings]


def _regex_token_counts(texts: Sequence[str]) -> list[int]:
    """``len(_REGEX_TOKEN.findall(t))`` of each text, counted in C for the ASCII rows."""
    return [int(c) for c in BatchText(list(texts)).regex_tokens().tolist()]


def toxicity_scores(texts: Sequence[str], words: Sequence[list[str]] | None = None) -> list[float]:
    """Probability that each text is offensive (alt-profanity-check's linear model), batched.

    ``words`` (lower-cased ``\\w+`` tokens of each text, as the profile already has them) skip
    the package's own tokenizer and scikit-learn: the same tf-idf features and calibrated linear
    model are evaluated with numpy from the package's stored weights (``ToxicityWeights``).
    """
    if not texts:
        return []
    weights = toxicity_weights() if words is not None else None
    if weights is not None and words is not None:
        return weights.scores(words).tolist()
    try:
        from profanity_check import predict_prob
    except ImportError:
        raise MissingExtraError("eval", "Toxicity scoring (alt-profanity-check)")
    return [float(p) for p in predict_prob([t[:TOXICITY_MAX_CHARS] for t in texts])]


def toxicity_scores_of_ids(
    texts: Sequence[str], words: Sequence[bytes], ids: Any, lengths: Any
) -> list[float]:
    """``toxicity_scores`` of ``texts`` given their words as ``BatchText.word_ids`` has them."""
    weights = toxicity_weights()
    if weights is None:
        return toxicity_scores(texts)
    return weights.scores_of_ids(words, ids, lengths).tolist()  # type: ignore[no-any-return]
