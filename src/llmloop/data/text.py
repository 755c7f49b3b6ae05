"""Text measures shared by the profile and the cleaning steps: tokens, languages, toxicity.

Each wraps one library and loads it lazily: a ``tokenizers`` tokenizer from a local file (never
a hub), ``py3langid`` for languages (its model ships inside the package), and
``alt-profanity-check`` for toxicity. Missing optional libraries give ``MissingExtraError``
(or, for the profile, a note instead of a number).

Batch paths keep per-row Python out of the hot loop: the regex tokenizer counts ASCII rows with
numpy over the batch's UTF-8 bytes (``batchtext``; non-ASCII rows with the regex), and toxicity
from pre-split words (lists of ``str``, or UTF-8 words in one flat list as ``batchtext`` makes
them) evaluates alt-profanity-check's stored weights with numpy (no scikit-learn import).
Languages live in ``languages`` (re-exported here).

It does not decide anything about rows; the profile and the steps do.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain, repeat
from pathlib import Path
from typing import Any

from llmloop.data.batchtext import _REGEX_TOKEN as _REGEX_TOKEN
from llmloop.data.batchtext import BatchText
from llmloop.data.batchtext import column_values as column_values
from llmloop.data.batchtext import text_column as text_column
from llmloop.data.languages import detect_language as detect_language
from llmloop.data.languages import detect_languages as detect_languages
from llmloop.data.languages import prefetch_language_model as prefetch_language_model
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
    model are evaluated with numpy from the package's stored weights (``_ToxicityWeights``).
    """
    if not texts:
        return []
    weights = _toxicity_weights() if words is not None else None
    if weights is not None and words is not None:
        return weights.scores(words).tolist()
    try:
        from profanity_check import predict_prob
    except ImportError:
        raise MissingExtraError("eval", "Toxicity scoring (alt-profanity-check)")
    return [float(p) for p in predict_prob([t[:TOXICITY_MAX_CHARS] for t in texts])]


class _ToxicityWeights:
    """alt-profanity-check's model as arrays: tf-idf (l2) -> 5 linear SVCs -> sigmoid, averaged.

    Importing ``profanity_check`` imports scikit-learn (about a second); the weights are read
    from the package's joblib files with stand-ins for the scikit-learn classes instead, and
    the features are built with numpy (``test_fast_toxicity_features_match_the_package``).
    """

    def __init__(self, vocabulary: dict[str, int], idf: Any, models: list[tuple[Any, ...]]):
        import numpy as np

        self.vocabulary = vocabulary
        self._utf8: dict[bytes, int] | None = None
        self.idf = np.asarray(idf, dtype=np.float64)
        self.coef = np.stack([np.ravel(m[0]) for m in models])  # (models, vocabulary)
        self.intercept = np.array([float(np.ravel(m[1])[0]) for m in models])
        self.a = np.array([float(m[2]) for m in models])
        self.b = np.array([float(m[3]) for m in models])

    def scores(self, words: Sequence[list[str]]) -> Any:
        import numpy as np

        lengths = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
        return self.scores_of_flat(list(chain.from_iterable(words)), lengths, self.vocabulary)

    def scores_of_utf8(self, flat: Sequence[bytes], lengths: Any) -> Any:
        """``scores`` from all rows' words as UTF-8 in one list and a count per row."""
        if self._utf8 is None:
            self._utf8 = {word.encode(): i for word, i in self.vocabulary.items()}
        return self.scores_of_flat(flat, lengths, self._utf8)

    def scores_of_flat(self, flat: Sequence[Any], lengths: Any, vocabulary: dict[Any, int]) -> Any:
        import numpy as np

        # TfidfVectorizer(token_pattern=r"\b\w\w+\b", lowercase) == lower-cased \w+ tokens of
        # 2+ characters; single characters and stop words are absent from its vocabulary.
        n = len(lengths)
        ids = np.fromiter(map(vocabulary.get, flat, repeat(-1)), dtype=np.int64, count=len(flat))
        rows = np.repeat(np.arange(n, dtype=np.int64), lengths)
        known = ids >= 0
        keys, counts = np.unique(rows[known] * len(self.idf) + ids[known], return_counts=True)
        row, col = np.divmod(keys, len(self.idf))
        values = counts * self.idf[col]
        norms = np.sqrt(np.bincount(row, values * values, minlength=n))
        norms[norms == 0] = 1.0
        decision = (
            np.stack([np.bincount(row, values * c[col], minlength=n) for c in self.coef])
            / norms[None, :]
            + self.intercept[:, None]
        )
        # sklearn's _SigmoidCalibration: p = 1 / (1 + exp(a * f + b)); the ensemble averages.
        probability = 1.0 / (1.0 + np.exp(self.a[:, None] * decision + self.b[:, None]))
        return probability.mean(axis=0)


def toxicity_scores_of_utf8(
    texts: Sequence[str], flat: Sequence[bytes], lengths: Any
) -> list[float]:
    """``toxicity_scores`` of ``texts`` given their words as ``BatchText.words`` has them."""
    weights = _toxicity_weights()
    if weights is None:
        return toxicity_scores(texts)
    return weights.scores_of_utf8(flat, lengths).tolist()  # type: ignore[no-any-return]


_WEIGHTS: list[_ToxicityWeights | None] = []


def _toxicity_weights() -> _ToxicityWeights | None:
    """The model's arrays, loaded once; ``None`` when the package or its format is unexpected."""
    if not _WEIGHTS:
        try:
            _WEIGHTS.append(_load_toxicity_weights())
        except Exception:  # an unexpected format: the package's own path still works
            _WEIGHTS.append(None)
    return _WEIGHTS[0]


def _load_toxicity_weights() -> _ToxicityWeights:
    from importlib.util import find_spec

    from joblib import numpy_pickle

    # find_spec locates the package without running its __init__ (which loads the model).
    spec = find_spec("profanity_check")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("alt-profanity-check is not installed")
    data = Path(next(iter(spec.submodule_search_locations))) / "data"

    class Stand_in:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

        def __setstate__(self, state: dict[str, Any]) -> None:
            self.__dict__.update(state)

    class Unpickler(numpy_pickle.NumpyUnpickler):
        def find_class(self, module: str, name: str) -> Any:
            if module.split(".")[0] == "sklearn":
                return type(name, (Stand_in,), {})
            return super().find_class(module, name)

    def load(name: str) -> Any:
        path = data / name
        # joblib's private helper undoes its compression; a changed API falls back above.
        validate = numpy_pickle._validate_fileobject_and_memmap
        with open(str(path), "rb") as raw, validate(raw, str(path), None) as (handle, _):
            unpickler = Unpickler(str(path), handle, mmap_mode=None, ensure_native_byte_order=True)
            return unpickler.load()

    vectorizer, model = load("vectorizer.joblib"), load("model.joblib")
    if (vectorizer.norm, vectorizer.sublinear_tf, vectorizer.binary) != ("l2", False, False):
        raise ValueError("unexpected vectorizer settings")
    if list(model.classes_) != [0, 1] or model.method != "sigmoid":
        raise ValueError("unexpected model")
    models = [
        (c.estimator.coef_, c.estimator.intercept_, c.calibrators[0].a_, c.calibrators[0].b_)
        for c in model.calibrated_classifiers_
    ]
    return _ToxicityWeights(vectorizer.vocabulary_, vectorizer._tfidf.idf_, models)
