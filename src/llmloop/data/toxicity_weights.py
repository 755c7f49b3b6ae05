"""alt-profanity-check's toxicity model as numpy arrays, loaded once per process, optionally
from a copy kept in a cache folder.

The package stores a scikit-learn ``TfidfVectorizer`` and a ``CalibratedClassifierCV`` in
joblib pickles; importing ``profanity_check`` imports scikit-learn (about a second), and even
unpickling the files with stand-ins for the scikit-learn classes runs joblib's pure-Python
unpickler (about 0.2 s, more than the profile spends scoring 100,000 rows). So the arrays are
read once with the stand-ins and, with a ``cache_dir``, written there as one plain ``.npz`` (a
file named by the package files' sizes and modification times, renamed into place whole);
later processes read that in milliseconds. The arrays, and so every score, are the same.

It scores words it is given; tokenising and choosing rows are the callers' (``text``,
``profile``).
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Sequence
from itertools import chain, repeat
from pathlib import Path
from typing import Any

_ARRAYS = ("words", "ids", "idf", "coef", "intercept", "a", "b")
_LOCK = threading.Lock()
_WEIGHTS: list[ToxicityWeights | None] = []


class ToxicityWeights:
    """alt-profanity-check's model as arrays: tf-idf (l2) -> 5 linear SVCs -> sigmoid, averaged.

    Importing ``profanity_check`` imports scikit-learn (about a second); the weights are read
    from the package's joblib files with stand-ins for the scikit-learn classes instead, and
    the features are built with numpy (``test_fast_toxicity_features_match_the_package``).
    """

    def __init__(self, vocabulary: dict[str, int], idf: Any, coef: Any, calibration: Any):
        import numpy as np

        self.vocabulary = vocabulary
        self._utf8: dict[bytes, int] | None = None
        self.idf = np.asarray(idf, dtype=np.float64)
        self.coef = np.asarray(coef, dtype=np.float64)  # (models, vocabulary)
        self.intercept, self.a, self.b = (np.asarray(c, dtype=np.float64) for c in calibration)

    @classmethod
    def from_models(
        cls, vocabulary: dict[str, int], idf: Any, models: list[tuple[Any, ...]]
    ) -> ToxicityWeights:
        """From each fold's (coef, intercept, sigmoid a, sigmoid b) as scikit-learn holds them."""
        import numpy as np

        coef = np.stack([np.ravel(m[0]) for m in models])
        intercept = [float(np.ravel(m[1])[0]) for m in models]
        sigmoid = ([float(m[2]) for m in models], [float(m[3]) for m in models])
        return cls(vocabulary, idf, coef, (intercept, *sigmoid))

    def scores(self, words: Sequence[list[str]]) -> Any:
        import numpy as np

        lengths = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
        return self.scores_of_flat(list(chain.from_iterable(words)), lengths, self.vocabulary)

    def scores_of_ids(self, words: Sequence[bytes], ids: Any, lengths: Any) -> Any:
        """``scores`` from all rows' words as indices into ``words`` (distinct, UTF-8), as
        ``BatchText.word_ids`` has them, and a count per row."""
        import numpy as np

        if self._utf8 is None:
            self._utf8 = {word.encode(): i for word, i in self.vocabulary.items()}
        known = np.fromiter(
            map(self._utf8.get, words, repeat(-1)), dtype=np.int64, count=len(words)
        )
        return self._scores(known[ids] if len(known) else np.zeros(0, dtype=np.int64), lengths)

    def scores_of_flat(self, flat: Sequence[Any], lengths: Any, vocabulary: dict[Any, int]) -> Any:
        import numpy as np

        ids = np.fromiter(map(vocabulary.get, flat, repeat(-1)), dtype=np.int64, count=len(flat))
        return self._scores(ids, lengths)

    def _scores(self, ids: Any, lengths: Any) -> Any:
        """Probabilities from each word's vocabulary index (-1: not in it) and words per row."""
        import numpy as np

        # TfidfVectorizer(token_pattern=r"\b\w\w+\b", lowercase) == lower-cased \w+ tokens of
        # 2+ characters; single characters and stop words are absent from its vocabulary.
        n = len(lengths)
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


def _package_data() -> Path:
    from importlib.util import find_spec

    # find_spec locates the package without running its __init__ (which loads the model).
    spec = find_spec("profanity_check")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("alt-profanity-check is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _from_package(data: Path) -> ToxicityWeights:
    from joblib import numpy_pickle

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
    return ToxicityWeights.from_models(vectorizer.vocabulary_, vectorizer._tfidf.idf_, models)


def toxicity_weights(cache_dir: str | None = None) -> ToxicityWeights | None:
    """The model's arrays, loaded once per process (from ``cache_dir`` when given); ``None``
    when the package is missing or its format is unexpected (callers fall back to it)."""
    with _LOCK:
        if not _WEIGHTS:
            try:
                _WEIGHTS.append(_load(cache_dir))
            except Exception:  # an unexpected format: the package's own path still works
                _WEIGHTS.append(None)
        return _WEIGHTS[0]


def _load(cache_dir: str | None) -> ToxicityWeights:
    data = _package_data()
    if cache_dir is None:
        return _from_package(data)
    stamp = "-".join(
        f"{s.st_size}-{s.st_mtime_ns}"
        for s in (os.stat(data / n) for n in ("vectorizer.joblib", "model.joblib"))
    )
    cached = Path(cache_dir) / f"profanity-check-{stamp}.npz"
    try:
        return _read_cache(cached)
    except Exception:  # missing, damaged or from another layout: rebuilt from the package
        pass
    weights = _from_package(data)
    try:
        _write_cache(weights, cached)
    except OSError:  # an unwritable folder: the weights are still right
        pass
    return weights


def _read_cache(path: Path) -> ToxicityWeights:
    import numpy as np

    with np.load(path, allow_pickle=False) as stored:
        arrays = {name: stored[name] for name in _ARRAYS}
    words = arrays["words"].tobytes().decode("utf-8").split("\n")
    vocabulary = dict(zip(words, arrays["ids"].tolist(), strict=True))
    calibration = (arrays["intercept"], arrays["a"], arrays["b"])
    return ToxicityWeights(vocabulary, arrays["idf"], arrays["coef"], calibration)


def _write_cache(weights: ToxicityWeights, path: Path) -> None:
    import numpy as np

    words = list(weights.vocabulary)
    if any("\n" in word for word in words):
        raise OSError("a vocabulary word holds a newline: not cached")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=f"{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            np.savez(
                out,
                words=np.frombuffer("\n".join(words).encode("utf-8"), dtype=np.uint8),
                ids=np.fromiter(weights.vocabulary.values(), dtype=np.int64, count=len(words)),
                idf=weights.idf,
                coef=weights.coef,
                intercept=weights.intercept,
                a=weights.a,
                b=weights.b,
            )
        os.replace(partial, path)  # readers never see a half-written file
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
