"""Text measures shared by the profile and the cleaning steps: tokens, languages, toxicity.

Each wraps one library and loads it lazily: a ``tokenizers`` tokenizer from a local file (never
a hub), ``py3langid`` for languages (its model ships inside the package), and
``alt-profanity-check`` for toxicity. Missing optional libraries give ``MissingExtraError``
(or, for the profile, a note instead of a number).

Batch paths keep per-row Python out of the hot loop: the regex tokenizer counts ASCII rows with
numpy over the batch's UTF-8 bytes (non-ASCII rows with the regex), toxicity from pre-split
words evaluates alt-profanity-check's stored weights with numpy (no scikit-learn import), and
``prefetch_language_model`` decompresses py3langid's model in a thread while rows are read.

It does not decide anything about rows; the profile and the steps do.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Sequence
from itertools import chain, repeat
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
            return _regex_token_counts(texts)
        encodings = self._load().encode_batch(list(texts), add_special_tokens=False)
        return [len(e.ids) for e in encodings]


# ``_REGEX_TOKEN`` on ASCII text, byte by byte: Python's \w there is [A-Za-z0-9_], its \s
# [\t\n\v\f\r \x1c-\x1f]. Non-ASCII rows are counted by Python.
_WORD_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_SPACE_BYTES = frozenset(b"\t\n\x0b\x0c\r \x1c\x1d\x1e\x1f")


def _ascii_token_counts(column: Any) -> Any:
    """Tokens per row (right for the ASCII rows): word-byte runs plus other non-space bytes."""
    import numpy as np

    n = len(column)
    offsets = np.frombuffer(column.buffers()[1], dtype=np.int64)[
        column.offset : column.offset + n + 1
    ]
    data = np.frombuffer(column.buffers()[2], dtype=np.uint8)[: offsets[-1]]
    kind = np.zeros(256, dtype=np.uint8)  # 0 other, 1 word, 2 space
    kind[list(_WORD_BYTES)] = 1
    kind[list(_SPACE_BYTES)] = 2
    classes = kind[data]
    word, space = classes == 1, classes == 2
    starts = word.copy()
    starts[1:] &= ~word[:-1]
    first = offsets[:-1][offsets[:-1] < len(data)]
    starts[first] = word[first]  # a row's first byte starts a word even after the last row's
    tokens = starts | ~(word | space)
    totals = np.concatenate(([0], np.cumsum(tokens, dtype=np.int64)))
    return totals[offsets[1:]] - totals[offsets[:-1]]


def text_column(texts: Sequence[str]) -> Any:
    """``texts`` as a pyarrow ``large_string`` array, or ``None`` if one holds a lone surrogate.

    Built from buffers: ``pa.array(list)`` and ``to_numpy`` import pandas (about 0.4 s).
    """
    import numpy as np
    import pyarrow as pa

    try:
        encoded = [t.encode() for t in texts]
    except UnicodeEncodeError:
        return None
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)), out=offsets[1:])
    data = pa.py_buffer(b"".join(encoded))
    return pa.LargeStringArray.from_buffers(len(encoded), pa.py_buffer(offsets), data)


def column_values(array: Any) -> Any:
    """A numpy copy of a null-free boolean or integer pyarrow array (read from its buffers)."""
    import numpy as np
    import pyarrow as pa

    values = array.buffers()[1]
    if pa.types.is_boolean(array.type):
        bits = np.unpackbits(np.frombuffer(values, dtype=np.uint8), bitorder="little")
        return bits[array.offset : array.offset + len(array)].astype(bool)
    dtype = np.dtype(array.type.to_pandas_dtype())
    return np.frombuffer(values, dtype=dtype)[array.offset : array.offset + len(array)].copy()


def _regex_token_counts(texts: Sequence[str]) -> list[int]:
    """``len(_REGEX_TOKEN.findall(t))`` of each text, counted in C for the ASCII rows."""
    import numpy as np
    import pyarrow.compute as pc

    column = text_column(texts)
    if not texts or column is None:  # lone surrogates cannot become UTF-8: count in Python
        return [len(_REGEX_TOKEN.findall(t)) for t in texts]
    counts = _ascii_token_counts(column)
    ascii_rows = column_values(pc.string_is_ascii(column))
    for index in np.flatnonzero(~ascii_rows).tolist():
        counts[index] = len(_REGEX_TOKEN.findall(texts[index]))
    return [int(c) for c in counts.tolist()]


_PREFETCH: list[threading.Thread] = []


def prefetch_language_model() -> None:
    """Start loading py3langid's model in a background thread (LZMA decompression, about half a
    second, runs without the GIL), so that it overlaps reading the rows; no-op if missing."""
    if _PREFETCH:
        return

    def load() -> None:
        try:
            from py3langid import langid

            langid._get_identifier()
        except Exception:  # reported by detect_languages on use
            pass

    thread = threading.Thread(target=load, name="llmloop-langid-load", daemon=True)
    _PREFETCH.append(thread)
    thread.start()


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
    for thread in _PREFETCH:
        thread.join()  # one model load, not two racing ones
    try:
        counts = Counter(detect_language(t) for t in texts)
    except MissingExtraError as exc:
        return {}, [f"languages not measured: {exc.detail}"]
    total = sum(counts.values())
    return {code: n / total for code, n in counts.most_common()}, []


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
        self.idf = np.asarray(idf, dtype=np.float64)
        self.coef = np.stack([np.ravel(m[0]) for m in models])  # (models, vocabulary)
        self.intercept = np.array([float(np.ravel(m[1])[0]) for m in models])
        self.a = np.array([float(m[2]) for m in models])
        self.b = np.array([float(m[3]) for m in models])

    def scores(self, words: Sequence[list[str]]) -> Any:
        import numpy as np

        # TfidfVectorizer(token_pattern=r"\b\w\w+\b", lowercase) == lower-cased \w+ tokens of
        # 2+ characters; single characters and stop words are absent from its vocabulary.
        lengths = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
        flat = list(chain.from_iterable(words))
        ids = np.fromiter(
            map(self.vocabulary.get, flat, repeat(-1)), dtype=np.int64, count=len(flat)
        )
        rows = np.repeat(np.arange(len(words), dtype=np.int64), lengths)
        known = ids >= 0
        keys, counts = np.unique(rows[known] * len(self.idf) + ids[known], return_counts=True)
        row, col = np.divmod(keys, len(self.idf))
        values = counts * self.idf[col]
        norms = np.sqrt(np.bincount(row, values * values, minlength=len(words)))
        norms[norms == 0] = 1.0
        decision = (
            np.stack([np.bincount(row, values * c[col], minlength=len(words)) for c in self.coef])
            / norms[None, :]
            + self.intercept[:, None]
        )
        # sklearn's _SigmoidCalibration: p = 1 / (1 + exp(a * f + b)); the ensemble averages.
        probability = 1.0 / (1.0 + np.exp(self.a[:, None] * decision + self.b[:, None]))
        return probability.mean(axis=0)


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
