"""Model cards from the registry: a version with training data, a run, metrics, an evaluation
and intended use gives a card with all of them (CLI Markdown, CLI JSON, REST JSON and
``text/markdown``); a bare version says what was not recorded; user text cannot inject HTML,
links or table cells; an unknown model or version is a clear error."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from tests.cli.conftest import Invoke

from llmloop.api.app import create_app
from llmloop.config import load_settings
from llmloop.core.datasets import DatasetVersionCreate
from llmloop.core.governance import ApiKeyCreate
from llmloop.core.models import ModelVersionCreate
from llmloop.core.runs import MetricPoint, RunCreate, RunInput
from llmloop.services.actors import local_actor
from llmloop.services.container import Container
from llmloop.services.model_cards import build_card, md, render_markdown

HOSTILE = "Bot <script>alert(1)</script> | [click](http://evil) ![x](y.png) `code`"


def seed(home: Path) -> str:
    """A trained, evaluated version (v1) and a bare one (v2) of model 'bot'."""
    c = Container(load_settings({"home": str(home)}, env={}))
    actor = local_actor()
    try:
        train = c.datasets.create_version(
            "tickets-train", DatasetVersionCreate(rows=[{"prompt": "a", "response": "b"}]), actor
        )
        run = c.runs.create(
            RunCreate(
                name="finetune/bot",
                kind="finetune",
                params={"learning_rate": 0.01},
                inputs=[RunInput(id=train.id, role="train")],
            ),
            actor,
        )
        version = c.models.create_version(
            "bot",
            ModelVersionCreate(
                base_model="tiny",
                format="echo",
                run_id=run.id,
                inputs=[train.id],
                metrics={"eval_loss": 1.25},
                params={"intended_use": "Answer support tickets.", "limitations": "English only."},
                description=HOSTILE,
            ),
            actor,
        )
        c.models.set_alias("bot", "champion", 1, actor)
        ev = c.runs.create(
            RunCreate(
                name="eval/quality/bot",
                kind="eval",
                inputs=[RunInput(id=version.id, role="candidate")],
            ),
            actor,
        )
        c.runs.log_metrics(ev.id, [MetricPoint(key="rougeL", value=0.5)], actor)
        c.runs.finish(ev.id, "finished", actor)
        bare = ModelVersionCreate(base_model=version.id, format="echo")  # on v1 as its base
        c.models.create_version("bot", bare, actor)
        return version.id
    finally:
        c.close()


def test_a_full_card_has_data_run_metrics_evaluations_and_use(cli: Invoke, home: Path) -> None:
    seed(home)
    text = cli("models", "card", "bot", "--ref", "champion", ok=True).stdout
    assert text.startswith("# bot v1\n")
    assert "| train | tickets-train v1 | 1 |" in text
    assert "| learning_rate | 0.01 |" in text and "| eval_loss | 1.25 |" in text
    assert "### eval/quality/bot (finished" in text and "| rougeL | 0.5 |" in text
    assert "Answer support tickets." in text and "English only." in text
    card = cli("models", "card", "bot", "--ref", "1", "--json", ok=True).stdout
    assert '"intended_use": "Answer support tickets."' in card
    assert '"aliases": [\n    "champion"\n  ]' in card
    v2 = cli("models", "card", "bot", "--ref", "2", ok=True).stdout  # a base in the registry
    assert "| base model | bot v1 (mv_" in v2


def test_user_text_is_inert(cli: Invoke, home: Path, tmp_path: Path) -> None:
    seed(home)
    out = tmp_path / "card.md"
    cli("models", "card", "bot", "--ref", "1", "--out", str(out), ok=True)
    text = out.read_text()
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "[click](http" not in text and "\\[click\\](http" in text and "\\!\\[x\\]" in text
    assert "\\| " in text and "\\`code\\`" in text
    assert md("a\nb | c") == "a b \\| c"


def test_a_bare_version_says_what_was_not_recorded(cli: Invoke, home: Path) -> None:
    seed(home)
    text = cli("models", "card", "bot", ok=True).stdout  # latest: v2
    assert text.startswith("# bot v2\n")
    for section in ("Description", "Intended use", "Training", "Training data", "Evaluations"):
        assert f"## {section}\n\nNot recorded." in text, section


def test_unknown_model_or_version_is_a_clear_error(cli: Invoke, home: Path) -> None:
    seed(home)
    missing = cli("models", "card", "nope")
    assert missing.exit_code != 0 and "no model named 'nope'" in missing.output
    no_version = cli("models", "card", "bot", "--ref", "9")
    assert no_version.exit_code != 0 and "has no version 9" in no_version.output
    assert "Traceback" not in missing.output + no_version.output


def test_the_card_over_rest(home: Path) -> None:
    seed(home)
    app = create_app(load_settings({"home": str(home)}, env={}))
    container = app.state.container
    key = container.keys.create(ApiKeyCreate(name="v", role="viewer"), local_actor()).secret
    try:
        with TestClient(app, headers={"Authorization": f"Bearer {key}"}) as client:
            card = client.get("/api/models/bot/versions/champion/card")
            assert card.status_code == 200 and card.json()["training_data"][0]["role"] == "train"
            text = client.get("/api/models/bot/versions/1/card", params={"format": "markdown"})
            assert text.headers["content-type"].startswith("text/markdown")
            assert text.text == render_markdown(build_card(container, "bot", 1))
            missing = client.get("/api/models/bot/versions/7/card")
            assert missing.status_code == 404
            assert missing.headers["content-type"].startswith("application/problem+json")
            bad = client.get("/api/models/bot/versions/1/card", params={"format": "html"})
            assert bad.status_code in (400, 422)
    finally:
        container.close()
