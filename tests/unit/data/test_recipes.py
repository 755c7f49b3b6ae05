"""Cleaning steps, recipe parsing and errors, the per-step report, and row diffs."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmloop.data.recipes import RecipeRunner, apply_recipe, build_steps, diff_rows, load_recipe
from llmloop.data.steps import STEPS, Step, StepConfig, builtin_deny_list, register_step
from llmloop.errors import ConfigError, InvalidInputError


def _run(steps: str, rows: list[dict[str, object]]) -> tuple[list[dict[str, object]], object]:
    return apply_recipe(f"steps:\n{steps}", [rows])


def texts(rows: list[dict[str, object]]) -> list[object]:
    return [r["text"] for r in rows]


def test_unicode_html_and_whitespace() -> None:
    rows = [
        {"text": "The cafÃ© is open"},
        {"text": "<p>Hello &amp; <b>bye</b></p><script>x()</script>"},
        {"text": "  many   spaces\n\n\n\nand lines  "},
        {"text": "e\u0301"},
    ]
    out, report = _run("  - fix_unicode\n  - strip_html\n  - whitespace: {max_newlines: 1}", rows)
    assert texts(out) == ["The café is open", "Hello & bye", "many spaces\nand lines", "é"]
    assert report.step("fix_unicode").rows_changed == 2
    assert report.step("strip_html").examples[0].after == "Hello & bye"


def test_filters() -> None:
    rows = [
        {"text": ""},
        {"text": "short"},
        {"text": "This English sentence is long enough to be detected reliably."},
        {"text": "Ceci est une phrase française assez longue pour être détectée."},
        {"text": "As an AI language model, I cannot do that for you today."},
        {"text": "Call now: buy cheap pills online, limited offer!!!"},
    ]
    out, report = _run(
        "  - drop_empty\n  - length_filter: {min: 10, max: 200}\n"
        "  - language_filter: {languages: [en]}\n  - deny_list: {builtin: [boilerplate]}\n"
        "  - regex_filter: {patterns: ['cheap pills'], ignore_case: true}",
        rows,
    )
    assert texts(out) == ["This English sentence is long enough to be detected reliably."]
    assert [s.rows_removed for s in report.steps] == [1, 1, 1, 1, 1]
    assert report.step("language_filter").examples[0].reason == "language fr"
    kept, _ = _run("  - regex_filter: {patterns: ['English'], mode: keep_matching}", rows)
    assert len(kept) == 1


def test_token_length_filter_and_toxicity() -> None:
    rows = [{"text": "one two three"}, {"text": "one"}, {"text": "you stupid fucking idiot"}]
    out, _ = _run(
        "  - length_filter: {unit: tokens, min: 2}\n  - toxicity_filter: {threshold: 0.8}", rows
    )
    assert texts(out) == ["one two three"]


def test_exact_and_near_dedup_across_batches() -> None:
    base = "the quick brown fox jumps over the lazy dog near the quiet river bank today"
    batches = [
        [{"text": base}, {"text": base.upper()}],
        [{"text": base + " again"}, {"text": "unrelated words"}],
    ]
    runner = RecipeRunner(load_recipe("steps: [exact_dedup, {near_dedup: {threshold: 0.7}}]"))
    out = [r for b in runner.run(batches) for r in b]
    assert texts(out) == [base, "unrelated words"]
    assert runner.report.step("exact_dedup").rows_removed == 1
    assert runner.report.step("near_dedup").examples[0].reason == "near duplicate of kept row #0"
    assert (runner.report.rows_in, runner.report.rows_out) == (4, 2)


def test_pii_actions_on_chat_rows() -> None:
    row = {
        "messages": [
            {"role": "user", "content": "I'm a@b.co"},
            {"role": "assistant", "content": "ok"},
        ]
    }
    out, _ = apply_recipe({"steps": [{"pii": {"action": "redact"}}]}, [[row]])
    assert out[0]["messages"][0]["content"] == "I'm [EMAIL]"
    runner = RecipeRunner(
        load_recipe({"steps": [{"step": "pii", "action": "pseudonymise", "key": "s3"}]})
    )
    pseud = [r for b in runner.run([[row]]) for r in b]
    token = pseud[0]["messages"][0]["content"].removeprefix("I'm ")
    assert runner.steps[0].vault.reveal(token) == "a@b.co"  # type: ignore[attr-defined]
    dropped, report = apply_recipe(
        {"steps": [{"pii": {"action": "drop", "kinds": ["email"]}}]}, [[row]]
    )
    assert dropped == [] and report.steps[0].examples[0].reason == "PII: email"


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        (
            "steps: [fix_unicode, {dedupe: {}}]",
            r"step 1: unknown step 'dedupe'; known steps: .*near_dedup",
        ),
        ("steps: [{near_dedup: {threshold: 1.5}}]", r"step 0 \(near_dedup\): threshold"),
        (
            "steps: [{near_dedup: {treshold: 0.5}}]",
            r"step 0 \(near_dedup\): treshold: Extra inputs",
        ),
        ("steps: [{pii: {action: pseudonymise}}]", r"step 0 \(pii\): .*needs a 'key'"),
        ("steps: [{regex_filter: {patterns: ['(']}}]", r"step 0 \(regex_filter\): .*bad pattern"),
        (
            "steps: [{deny_list: {builtin: [nope]}}]",
            r"no built-in deny-list 'nope'; known: \['boilerplate'\]",
        ),
        ("steps: [{deny_list: {}}]", r"needs 'terms' or 'builtin'"),
        ("steps: [{length_filter: {min: 5, max: 2}}]", r"max must be at least min"),
        ("steps: [{language_filter: {}}]", r"languages: Field required"),
        ("steps: [{whitespace: 3}]", r"config must be a mapping"),
        ("steps: [[1]]", r"step 0: write"),
        ("name: x", r"'steps' list"),
        ("steps: [", r"not valid YAML"),
    ],
)
def test_recipe_errors_name_the_step(recipe: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_steps(load_recipe(recipe))


def test_recipe_from_file_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("name: tidy\nsteps:\n  - whitespace: {}\n", encoding="utf-8")
    recipe = load_recipe(path)
    assert recipe.name == "tidy" and recipe.steps[0].step == "whitespace"
    assert load_recipe(str(path)) == recipe
    with pytest.raises(ConfigError, match="cannot read recipe"):
        load_recipe(tmp_path / "missing.yaml")


def test_registry_accepts_plugins() -> None:
    class ShoutConfig(StepConfig):
        pass

    class Shout(Step):
        name = "shout"
        config_cls = ShoutConfig

        def apply(
            self, batch: list[dict[str, object]]
        ) -> list[tuple[dict[str, object] | None, str]]:
            return [({**r, "text": str(r["text"]).upper()}, "") for r in batch]

    registry = {**STEPS, "shout": Shout}
    out, _ = apply_recipe("steps: [shout]", [[{"text": "hi"}]], registry=registry)
    assert out == [{"text": "HI"}]
    with pytest.raises(ConfigError, match="must be a Step subclass"):
        register_step("bad", dict)  # type: ignore[arg-type]
    assert "as an ai language model" in builtin_deny_list("boilerplate")


def test_diff_rows_by_key_and_by_content() -> None:
    old = [{"id": 1, "text": "a"}, {"id": 2, "text": "b"}, {"id": 3, "text": "c"}]
    new = [{"id": 1, "text": "a"}, {"id": 2, "text": "B"}, {"id": 4, "text": "d"}]
    by_key = diff_rows(old, new, key="id")
    assert (by_key.added, by_key.removed, by_key.changed, by_key.unchanged) == (1, 1, 1, 1)
    assert by_key.examples["changed"][0]["after"] == {"id": 2, "text": "B"}
    by_hash = diff_rows(old, new)
    assert (by_hash.added, by_hash.removed, by_hash.changed, by_hash.unchanged) == (2, 2, 0, 1)
    with pytest.raises(InvalidInputError, match="no key field 'id'"):
        diff_rows([{"text": "x"}], [], key="id")
