"""Languages of texts (py3langid), with its model loaded once per process, optionally from a
decompressed copy kept in a cache folder.

py3langid ships its model as an LZMA-compressed npz (about 68 MB once decompressed): unpacking
it costs 0.3-0.5 s of CPU in every new process, more than profiling 100,000 short rows. With a
``cache_dir`` the decompressed arrays are written there once as plain ``.npy`` files (a folder
named by the compressed file's size and modification time, renamed into place whole) and later
processes memory-map them (milliseconds, no copy); the arrays, and so every classification,
are the same. Texts are classified in batches with numpy (``classify_batch``), from the model's
arrays (``_BatchModel``) rather than through py3langid's per-text API. Loading starts in a
background thread (``prefetch_language_model``) so that it overlaps reading the rows.

It does not choose which rows to classify: the profile samples them.
"""

from __future__ import annotations

import itertools
import lzma
import os
import shutil
import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llmloop.errors import MissingExtraError

_PREFETCH: list[threading.Thread] = []
_LOCK = threading.Lock()
_MODEL: list[_BatchModel | None] = []
_DTYPES = {2: "uint16", 4: "uint32", 8: "uint64"}
_ARRAYS = ("ptc", "pc", "classes", "nextmove", "nextmove_row", "out_feat")


def prefetch_language_model(cache_dir: str | None = None) -> None:
    """Start loading py3langid's model in a background thread (its LZMA decompression runs
    without the GIL), so that it overlaps reading the rows; no-op if missing or started."""
    if _PREFETCH:
        return

    def load() -> None:
        try:
            load_language_model(cache_dir)
        except Exception:  # reported by detect_languages on use
            pass

    thread = threading.Thread(target=load, name="llmloop-langid-load", daemon=True)
    _PREFETCH.append(thread)
    thread.start()


def load_language_model(cache_dir: str | None = None) -> None:
    """Load the language model (once per process), from ``cache_dir`` if given."""
    with _LOCK:
        if _MODEL:
            return
        if cache_dir is not None:
            try:
                _MODEL.append(_BatchModel(_cached_arrays(Path(cache_dir))))
                return
            except Exception:  # an unexpected package layout or an unwritable folder
                pass
        from py3langid import langid

        identifier = langid._get_identifier()
        try:
            _MODEL.append(_BatchModel(_identifier_arrays(identifier)))
        except (AttributeError, TypeError, ValueError):
            _MODEL.append(None)  # unexpected internals: py3langid's own per-text path


def _cached_arrays(cache_dir: Path) -> dict[str, Any]:
    """The model's arrays, memory-mapped from plain ``.npy`` files (written once)."""
    import numpy as np
    from py3langid import langid

    source = Path(langid.MODEL_DIR) / langid.MODEL_FILE
    stat = source.stat()
    cached = cache_dir / f"py3langid-{stat.st_size}-{stat.st_mtime_ns}"
    if not cached.is_dir():
        _write_cache(source, cached)
    # No decompression, no zip CRC pass over 68 MB and no copy: pages are read as touched.
    return {name: np.load(cached / f"{name}.npy", mmap_mode="r") for name in _ARRAYS}


def _identifier_arrays(identifier: Any) -> dict[str, Any]:
    import numpy as np

    if identifier.min_confidence is not None:
        raise ValueError("a confidence floor needs the per-text path")
    nextmove = identifier.tk_nextmove
    return {
        "ptc": identifier.nb_ptc,
        "pc": identifier.nb_pc,
        "classes": identifier.nb_classes,
        "nextmove": np.frombuffer(nextmove, dtype=_DTYPES[nextmove.itemsize]),
        "nextmove_row": identifier.tk_row,
        "out_feat": identifier.tk_output,
    }


def _write_cache(source: Path, cached: Path) -> None:
    import tempfile

    import numpy as np

    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f"{cached.name}.", dir=cached.parent))
    try:
        with lzma.open(source) as src, (partial / "model.npz").open("wb") as dst:
            shutil.copyfileobj(src, dst, length=1 << 20)
        with np.load(partial / "model.npz", allow_pickle=False) as data:
            for name in _ARRAYS:
                np.save(partial / f"{name}.npy", data[name], allow_pickle=False)
        (partial / "model.npz").unlink()
        os.replace(partial, cached)  # readers never see a half-written copy
    except OSError:
        if not cached.is_dir():  # lost a race to another process: its copy is as good
            raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def detect_language(text: str) -> str:
    """ISO 639-1 code of the language of ``text`` (``und`` when it has no letters)."""
    return classify_batch([text])[0]


def _classify_one(text: str) -> str:
    """py3langid's own per-text path (when its internals are not as expected)."""
    import py3langid

    return str(py3langid.classify(text)[0]) if any(ch.isalpha() for ch in text) else "und"


def detect_languages(texts: Sequence[str]) -> tuple[dict[str, float], list[str]]:
    """Share of each language over ``texts`` and notes on anything not measured."""
    if not texts:
        return {}, []
    try:
        counts = Counter(classify_batch(texts))
    except MissingExtraError as exc:
        return {}, [f"languages not measured: {exc.detail}"]
    total = sum(counts.values())
    return {code: n / total for code, n in counts.most_common()}, []


def classify_batch(texts: Sequence[str]) -> list[str]:
    """``detect_language`` of each text, the texts classified together.

    py3langid walks a byte-level automaton per text in Python and scores each text with its own
    small product (about 0.1 ms a short text). Here the automaton steps every text at once with
    numpy (texts sorted longest first, so the ones still walking are a prefix), feature counts
    come from one ``np.unique`` and each text's scores from one product over the same weights:
    the same features, counts and argmax as ``py3langid.classify`` (an exact tie between two
    languages, which float rounding could order differently, aside). Falls back to the per-text
    path when the package's internals are not as expected.
    """
    try:
        import py3langid  # noqa: F401 -- is it installed?
    except ImportError:
        raise MissingExtraError("data", "Language detection (py3langid)")
    for thread in _PREFETCH:
        thread.join()  # one model load, not two racing ones
    load_language_model()
    model = _MODEL[0]
    if model is None:
        return [_classify_one(text) for text in texts]
    letters = [any(ch.isalpha() for ch in text) for text in texts]
    found = iter(model.classify([t for t, ok in zip(texts, letters, strict=True) if ok]))
    return [next(found) if ok else "und" for ok in letters]


class _BatchModel:
    """py3langid's model as numpy arrays (its automaton, feature map and weights)."""

    def __init__(self, arrays: dict[str, Any]) -> None:
        import numpy as np
        from py3langid.langid import LanguageIdentifier

        self.encode = LanguageIdentifier._encode  # case and NFC as py3langid prepares text
        self.nextmove = np.asarray(arrays["nextmove"])
        self.rowbase = np.asarray(arrays["nextmove_row"], dtype=np.int64) << 8
        self.output = np.asarray(arrays["out_feat"], dtype=np.int64)
        # Plain views: indexing a memory-mapped array pays its subclass's bookkeeping per call.
        self.ptc = np.asarray(arrays["ptc"])
        self.pc = np.asarray(arrays["pc"], dtype=np.float32)
        self.classes = [str(c) for c in np.asarray(arrays["classes"]).tolist()]
        features = int(self.output.max()) + 1
        if self.ptc.shape != (features, len(self.classes)) or len(self.pc) != len(self.classes):
            raise ValueError("unexpected model shapes")

    def classify(self, texts: Sequence[str]) -> list[str]:
        import numpy as np

        if not texts:
            return []
        encoded = [self.encode(text) for text in texts]
        lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        order = np.argsort(-lengths, kind="stable")  # longest first: the walking ones lead
        ordered = lengths[order]
        width = int(ordered[0])
        data = np.zeros((len(encoded), max(width, 1)), dtype=np.int64)
        for row, index in enumerate(order.tolist()):
            data[row, : ordered[row]] = np.frombuffer(encoded[index], dtype=np.uint8)
        walking = np.searchsorted(-ordered, -np.arange(width), side="left").tolist()
        state = np.zeros(len(encoded), dtype=np.int64)
        rows, features = [], []
        for position, k in enumerate(walking):
            active = self.nextmove[self.rowbase[state[:k]] + data[:k, position]]
            state[:k] = active
            feature = self.output[active]
            hit = np.flatnonzero(feature >= 0)
            rows.append(hit)
            features.append(feature[hit])
        best = self._best(np.concatenate(rows), np.concatenate(features), len(encoded))
        labels = [""] * len(encoded)
        for row, index in enumerate(order.tolist()):
            labels[index] = self.classes[best[row]]
        return labels

    def _best(self, rows: Any, features: Any, count: int) -> Any:
        """Index of the best-scoring class of each row from its (row, feature) visits."""
        import numpy as np

        # A row with no features scores the floor everywhere: class 0, as py3langid says.
        best = np.zeros(count, dtype=np.int64)
        keys, visits = np.unique(rows * len(self.ptc) + features, return_counts=True)
        if not len(keys):
            return best
        row, feature = np.divmod(keys, len(self.ptc))
        weight = np.log1p(visits.astype(np.float32))
        bounds = np.flatnonzero(np.r_[True, row[1:] != row[:-1], True]).tolist()
        ptc, pc = self.ptc, self.pc
        for start, end in itertools.pairwise(bounds):  # one BLAS product per row, as py3langid
            best[row[start]] = int((weight[start:end] @ ptc[feature[start:end]] + pc).argmax())
        return best
