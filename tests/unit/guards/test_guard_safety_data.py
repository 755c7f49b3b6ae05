"""Loading shipped safety resources, and the precision/recall/threshold helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmloop.errors import InvalidInputError, NotFoundError
from llmloop.guards.safety_data import (
    calibrate_threshold,
    precision_recall,
    read_jsonl,
    read_labelled,
    safety_path,
)


def test_shipped_files_resolve_and_missing_ones_do_not() -> None:
    assert safety_path("redteam_probes.yaml").is_file()
    with pytest.raises(NotFoundError):
        safety_path("nope.jsonl")


def test_bad_jsonl_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"text": "a", "label": 1}\n\nnot json\n')
    with pytest.raises(InvalidInputError, match=r"x.jsonl:3"):
        read_jsonl(path)
    path.write_text("[1, 2]\n")
    with pytest.raises(InvalidInputError, match="expected an object"):
        read_jsonl(path)
    path.write_text('{"text": "a", "label": 2}\n')
    with pytest.raises(InvalidInputError, match="0/1"):
        read_labelled(path)


def test_split_filter(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text(
        '{"text": "a", "label": 1, "split": "calib"}\n{"text": "b", "label": 0, "split": "eval"}\n'
    )
    assert read_labelled(path, split="eval") == (["b"], [0])


def test_precision_recall() -> None:
    assert precision_recall([True, True, False, False], [1, 0, 1, 0]) == (0.5, 0.5)
    assert precision_recall([False, False], [0, 0]) == (1.0, 1.0)
    with pytest.raises(InvalidInputError):
        precision_recall([True], [1, 0])


def test_calibrate_threshold_separates_classes() -> None:
    threshold = calibrate_threshold([0.1, 0.2, 0.35, 0.8, 0.9], [0, 0, 0, 1, 1])
    assert 0.35 < threshold < 0.8
    with pytest.raises(InvalidInputError):
        calibrate_threshold([], [])
