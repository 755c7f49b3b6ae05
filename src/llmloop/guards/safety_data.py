"""The shipped safety resources (``resources/safety``): labelled sets, term lists, catalogues.

One place that knows where the files live and how to read JSON Lines and YAML from them, plus
the binary precision/recall/threshold helpers every detector is measured and calibrated with.
It does not train or score anything itself.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from llmloop.errors import InvalidInputError, NotFoundError


def safety_path(name: str) -> Path:
    """The path of a shipped file in ``llmloop/resources/safety``."""
    path = Path(str(resources.files("llmloop"))) / "resources" / "safety" / name
    if not path.is_file():
        raise NotFoundError(f"safety resource '{name}' is not shipped with this llmloop")
    return path


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a JSON Lines file; a malformed line raises InvalidInputError with its number."""
    rows: list[dict[str, Any]] = []
    with Path(path).open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidInputError(f"{path}:{number}: not JSON ({exc.msg})") from exc
            if not isinstance(row, dict):
                raise InvalidInputError(f"{path}:{number}: expected an object")
            rows.append(row)
    return rows


def read_labelled(path: str | Path, split: str | None = None) -> tuple[list[str], list[int]]:
    """Texts and 0/1 labels of a labelled set, optionally only rows of one ``split``."""
    texts: list[str] = []
    labels: list[int] = []
    for row in read_jsonl(path):
        if split is not None and row.get("split") != split:
            continue
        if not isinstance(row.get("text"), str) or row.get("label") not in (0, 1):
            raise InvalidInputError(f"{path}: each row needs a 'text' and a 0/1 'label'")
        texts.append(row["text"])
        labels.append(int(row["label"]))
    return texts, labels


def precision_recall(predicted: Sequence[bool], labels: Sequence[int]) -> tuple[float, float]:
    """Precision and recall of binary predictions (1.0 when there is nothing to get wrong)."""
    if len(predicted) != len(labels):
        raise InvalidInputError("predictions and labels differ in length")
    tp = sum(1 for p, y in zip(predicted, labels, strict=True) if p and y)
    fp = sum(1 for p, y in zip(predicted, labels, strict=True) if p and not y)
    fn = sum(1 for p, y in zip(predicted, labels, strict=True) if not p and y)
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    return precision, recall


def calibrate_threshold(scores: Sequence[float], labels: Sequence[int]) -> float:
    """The score threshold with the best F1 on a labelled set (the midpoint between neighbours)."""
    if not scores or len(scores) != len(labels):
        raise InvalidInputError("calibration needs as many labels as scores, and at least one")
    ordered = sorted(set(scores))
    candidates = [(a + b) / 2 for a, b in itertools.pairwise(ordered)] or ordered
    best, best_f1 = candidates[0], -1.0
    for threshold in candidates:
        p, r = precision_recall([s >= threshold for s in scores], labels)
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        if f1 > best_f1:
            best, best_f1 = threshold, f1
    return float(best)
