"""Personal names through a token-classification model: spans, batches, policy, guard, errors.

The model is a tiny BERT trained here on a few names (``build_tiny_ner``): it exercises the real
loading and span code offline; a real deployment points ``name_model`` at a real NER model.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from llmloop.errors import ConfigError
from llmloop.guards.pii import (
    PiiConfig,
    PiiDetector,
    PiiGuard,
    PiiGuardConfig,
    PseudonymVault,
    apply_pii_policy,
    find_in_batch,
)


@pytest.fixture(scope="module")
def ner_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("transformers")
    from llmloop.testing.tiny import build_tiny_ner

    return build_tiny_ner(tmp_path_factory.mktemp("tiny-ner"))


@pytest.fixture(scope="module")
def detector(ner_dir: Path) -> PiiDetector:
    return PiiDetector(PiiConfig(name_model=str(ner_dir)))


def test_names_are_found_beside_pattern_kinds(detector: PiiDetector) -> None:
    text = "Yesterday Grace Rossi wrote to grace@example.com and asked Hiro Kowalski to call."
    spans = detector.find(text)
    assert [(s.kind, s.text) for s in spans] == [
        ("person", "Grace Rossi"),
        ("email", "grace@example.com"),
        ("person", "Hiro Kowalski"),
    ]
    assert all(text[s.start : s.end] == s.text for s in spans)
    assert all(0.5 <= s.score <= 1.0 for s in spans)


def test_plain_sentences_hold_no_names(detector: PiiDetector) -> None:
    for text in ["The Router broke on Monday.", "Open Settings and choose Reset.", "", "  "]:
        assert detector.find(text) == []


def test_batches_find_names_in_rows_the_prefilter_skips(detector: PiiDetector) -> None:
    texts = ["nothing to see", "Thanks Elena Tanaka", "mail bob@example.org", ""]
    found = find_in_batch(detector, texts)
    assert sorted(found) == [1, 2]
    assert [(s.kind, s.text) for s in found[1]] == [("person", "Elena Tanaka")]
    assert [s.kind for s in found[2]] == ["email"]
    for index, spans in found.items():  # the batch path agrees with one text at a time
        assert spans == detector.find(texts[index])


def test_pseudonyms_of_a_name_are_consistent_and_reversible(detector: PiiDetector) -> None:
    vault = PseudonymVault()
    out = [
        apply_pii_policy(t, detector.find(t), "pseudonymise", key="k", vault=vault)
        for t in ["Dear Bob Garcia, your refund is approved.", "Ask Bob Garcia to call me."]
    ]
    token = out[0].split()[1].rstrip(",")
    assert "Bob Garcia" not in "".join(out) and token in out[1]
    assert vault.reveal(out[1]) == "Ask Bob Garcia to call me."


def test_without_a_model_names_are_not_looked_for() -> None:
    assert PiiDetector().find("Dear Bob Garcia, call me.") == []
    assert "person" in PiiConfig().kinds  # asked for by default, found only with a model


def test_a_model_that_cannot_load_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="could not be loaded as a token-classification model"):
        PiiDetector(PiiConfig(name_model=str(tmp_path / "no-such-model")))


def test_guard_redacts_names_in_generated_text(ner_dir: Path) -> None:
    guard = PiiGuard(PiiGuardConfig(name_model=str(ner_dir), action="redact"))
    verdicts = guard.check_output("Please forward this to Jonas Silva today.", final=True)
    assert [v.rule_id for v in verdicts] == ["pii.person"]
    assert verdicts[0].redacted == "Please forward this to [PERSON] today."


def test_recipe_and_profile_take_the_name_model(ner_dir: Path) -> None:
    from llmloop.data.profile import ProfileConfig, profile_rows
    from llmloop.data.recipes import apply_recipe

    rows = [
        {"text": "Dear Carmen Okafor, your refund is approved."},
        {"text": "The Router broke on Monday."},
        {"text": "Ask Dmitri Novak to call me before Friday."},
    ]
    recipe = {"steps": [{"pii": {"action": "redact", "name_model": str(ner_dir)}}]}
    out, report = apply_recipe(recipe, [rows])
    assert [r["text"] for r in out] == [
        "Dear [PERSON], your refund is approved.",
        "The Router broke on Monday.",
        "Ask [PERSON] to call me before Friday.",
    ]
    assert report.steps[0].rows_changed == 2
    profile = profile_rows([rows], ProfileConfig(pii_name_model=str(ner_dir)))
    assert profile.pii_counts == {"person": 2}
    assert profile_rows([rows]).pii_counts == {}  # without the model, names are not counted
