"""Languages of texts (py3langid), with its model loaded once per process, optionally from a
decompressed copy kept in a cache folder.

py3langid ships its model as an LZMA-compressed npz (about 68 MB once decompressed): unpacking
it costs 0.3-0.5 s of CPU in every new process, more than profiling 100,000 short rows. With a
``cache_dir`` the decompressed arrays are written there once as plain ``.npy`` files (a folder
named by the compressed file's size and modification time, renamed into place whole) and later
processes memory-map them (tens of ms); the arrays, and so every classification, are the same.
Loading starts in a background thread (``prefetch_language_model``) so that it overlaps reading
the rows.

It does not choose which rows to classify: the profile samples them.
"""

from __future__ import annotations

import lzma
import os
import shutil
import threading
from array import array
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llmloop.errors import MissingExtraError

_PREFETCH: list[threading.Thread] = []
_TYPECODES = {2: "H", 4: "I", 8: "L"}
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
    """Load py3langid's model into the package (once per process), from ``cache_dir`` if given."""
    from py3langid import langid

    if langid.IDENTIFIER is not None:
        return
    if cache_dir is not None:
        try:
            langid.IDENTIFIER = _cached_identifier(Path(cache_dir), langid)
            return
        except Exception:  # an unexpected package layout or an unwritable folder
            pass
    langid._get_identifier()


def _cached_identifier(cache_dir: Path, langid: Any) -> Any:
    import numpy as np

    source = Path(langid.MODEL_DIR) / langid.MODEL_FILE
    stat = source.stat()
    cached = cache_dir / f"py3langid-{stat.st_size}-{stat.st_mtime_ns}"
    if not cached.is_dir():
        _write_cache(source, cached)

    def to_array(values: Any) -> array[int]:  # as py3langid's own loader hands them over
        out = array(_TYPECODES[values.dtype.itemsize])
        out.frombytes(np.ascontiguousarray(values).data.cast("B"))
        return out

    # Plain .npy files, memory-mapped: no decompression and no zip CRC pass over 68 MB.
    arrays = {name: np.load(cached / f"{name}.npy", mmap_mode="r") for name in _ARRAYS}
    return langid.LanguageIdentifier(
        arrays["ptc"],
        np.asarray(arrays["pc"]),
        arrays["classes"].tolist(),
        to_array(arrays["nextmove"]),
        arrays["out_feat"].tolist(),
        tk_row=to_array(arrays["nextmove_row"]),
    )


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
