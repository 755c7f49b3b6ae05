"""The toxicity classifier contract, the alt-profanity-check default and the output guard."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from llmloop.errors import InvalidInputError
from llmloop.guards.toxicity import (
    ProfanityCheckClassifier,
    ToxicityConfig,
    ToxicityGuard,
    check_scores,
)


class RecordingClassifier:
    """Scores 1.0 when 'badword' is present; records what it was asked to score."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def scores(self, texts: Sequence[str]) -> list[float]:
        self.seen += list(texts)
        return [1.0 if "badword" in t else 0.0 for t in texts]


def test_fast_path_matches_the_library_probabilities() -> None:
    from profanity_check import predict_prob

    texts = ["you are a stupid idiot", "kill the process and restart", "have a nice day", ""]
    ours = ProfanityCheckClassifier().scores(texts)
    theirs = predict_prob(texts)
    assert ours == pytest.approx(list(theirs), abs=1e-9)


def test_guard_blocks_toxic_output_and_allows_clean_output() -> None:
    guard = ToxicityGuard()
    [verdict] = guard.check_output("Listen, you are a fucking idiot.", final=True)
    assert verdict.rule_id == "toxicity.output"
    assert verdict.action == "block"
    assert verdict.score is not None and verdict.score >= guard.config.threshold
    assert guard.check_output("Kill the worker process and restart the job.", final=True) == []


def test_guard_scores_only_its_window() -> None:
    classifier = RecordingClassifier()
    guard = ToxicityGuard(ToxicityConfig(window_chars=64), classifier=classifier)
    text = "clean words " * 500 + "badword "
    [verdict] = guard.check_output(text, final=False)
    assert verdict.action == "block"
    assert max(len(t) for t in classifier.seen) <= 64


def test_flag_action_and_input_check() -> None:
    classifier = RecordingClassifier()
    cfg = ToxicityConfig(action="flag", check_input=True)
    guard = ToxicityGuard(cfg, classifier=classifier)
    from llmloop.core.chat import ChatMessage

    [verdict] = guard.check_input([ChatMessage(role="user", content="a badword here")])
    assert (verdict.action, verdict.stage, verdict.rule_id) == ("flag", "input", "toxicity.input")
    assert (
        ToxicityGuard(classifier=classifier).check_input(
            [ChatMessage(role="user", content="badword")]
        )
        == []
    )


def test_hold_from_keeps_back_the_partial_word() -> None:
    guard = ToxicityGuard(classifier=RecordingClassifier())
    assert guard.hold_from("you are a fuc") == len("you are a ")
    assert guard.hold_from("x" * 200) == 200 - 48


def test_partial_words_are_not_judged_until_complete() -> None:
    guard = ToxicityGuard()
    assert guard.check_output("Rat", final=False) == []  # "Rates", not "rat"
    assert guard.check_output("Rates went up", final=True) == []


def test_bad_classifier_output_and_config_are_refused() -> None:
    with pytest.raises(InvalidInputError):
        check_scores([0.5], 2)
    with pytest.raises(InvalidInputError):
        check_scores([1.5], 1)
    with pytest.raises(ValueError):
        ToxicityConfig(threshold=2.0)
