"""Precision and recall of every safety detector on the shipped held-out sets, pinned in JSON.

The expected figures live in ``resources/safety/expected_metrics.json`` and are quoted in
``docs/safety.md``; a drop of more than two points fails. Run this file as a script to print
the current figures (``.venv/bin/python tests/unit/evaluators/test_safety_metrics.py``).
"""

from __future__ import annotations

import json

import pytest

from llmloop.evaluators.redteam.detectors import is_refusal
from llmloop.guards.canary import CanaryConfig, CanaryGuard
from llmloop.guards.injection import InjectionConfig, InjectionDetector
from llmloop.guards.links import LinksConfig, LinksGuard
from llmloop.guards.safety_data import (
    calibrate_threshold,
    precision_recall,
    read_jsonl,
    read_labelled,
    safety_path,
)
from llmloop.guards.toxicity import DEFAULT_TOXICITY_THRESHOLD, ProfanityCheckClassifier

CANARY = "llmloop-canary-5e1f0c3a9b7d2468"
TOLERANCE = 0.02


def _output_set(detector: str) -> tuple[list[str], list[int]]:
    rows = [
        r for r in read_jsonl(safety_path("output_safety_eval.jsonl")) if r["detector"] == detector
    ]
    return [r["text"] for r in rows], [int(r["label"]) for r in rows]


def measure() -> dict[str, dict[str, float]]:
    """Current precision/recall/n of each detector on its held-out evaluation set."""
    out: dict[str, dict[str, float]] = {}

    def record(name: str, predicted: list[bool], labels: list[int]) -> None:
        p, r = precision_recall(predicted, labels)
        out[name] = {"precision": round(p, 4), "recall": round(r, 4), "n": len(labels)}

    texts, labels = read_labelled(safety_path("toxicity_labelled.jsonl"), split="eval")
    scores = ProfanityCheckClassifier().scores(texts)
    record("toxicity", [s >= DEFAULT_TOXICITY_THRESHOLD for s in scores], labels)

    texts, labels = read_labelled(safety_path("injection_eval.jsonl"))
    for name, cfg in [
        ("injection", InjectionConfig()),
        ("injection.heuristics", InjectionConfig(use_classifier=False)),
        ("injection.classifier", InjectionConfig(use_heuristics=False)),
    ]:
        detector = InjectionDetector(cfg)
        record(name, [detector.find(t) is not None for t in texts], labels)

    texts, labels = _output_set("canary")
    guard = CanaryGuard(CanaryConfig(tokens=[CANARY]))
    record("canary", [guard.find(t) is not None for t in texts], labels)
    texts, labels = _output_set("links")
    links = LinksGuard(LinksConfig(ansi=False))
    record("links", [bool(links.find(t)) for t in texts], labels)
    texts, labels = _output_set("ansi")
    ansi = LinksGuard(LinksConfig())
    record("ansi", [any(f.rule_id == "ansi.escape" for f in ansi.find(t)) for t in texts], labels)
    texts, labels = _output_set("refusal")
    record("refusal", [is_refusal(t) for t in texts], labels)
    return out


@pytest.fixture(scope="module")
def current() -> dict[str, dict[str, float]]:
    return measure()


EXPECTED = json.loads(safety_path("expected_metrics.json").read_text("utf-8"))["detectors"]


@pytest.mark.parametrize("detector", sorted(EXPECTED))
def test_detector_does_not_regress(detector: str, current: dict[str, dict[str, float]]) -> None:
    want, got = EXPECTED[detector], current[detector]
    assert got["n"] == want["n"], "the evaluation set changed: re-record expected_metrics.json"
    assert got["precision"] >= want["precision"] - TOLERANCE
    assert got["recall"] >= want["recall"] - TOLERANCE


def test_every_detector_is_pinned(current: dict[str, dict[str, float]]) -> None:
    assert set(current) == set(EXPECTED)


def test_toxicity_threshold_is_the_calibrated_one() -> None:
    texts, labels = read_labelled(safety_path("toxicity_labelled.jsonl"), split="calib")
    threshold = calibrate_threshold(ProfanityCheckClassifier().scores(texts), labels)
    assert abs(threshold - DEFAULT_TOXICITY_THRESHOLD) < 0.02


def test_calibration_and_eval_splits_do_not_overlap() -> None:
    calib, _ = read_labelled(safety_path("toxicity_labelled.jsonl"), split="calib")
    held, _ = read_labelled(safety_path("toxicity_labelled.jsonl"), split="eval")
    train, _ = read_labelled(safety_path("injection_labelled.jsonl"))
    test, _ = read_labelled(safety_path("injection_eval.jsonl"))
    assert not set(calib) & set(held)
    assert not set(train) & set(test)


if __name__ == "__main__":
    print(json.dumps(measure(), indent=2))
