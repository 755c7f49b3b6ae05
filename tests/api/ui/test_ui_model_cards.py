"""Dashboard page of a model version's card: the version's fields, intended use, training run and
data, metrics and the results of a real evaluation run; user text escaped; an unknown version is
the 404 page; the Markdown download; links to the card from the model and version pages; a
viewer may read it."""

from __future__ import annotations

import re
from html import unescape

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from llmloop.core.base import ArtifactRef
from llmloop.core.datasets import DatasetVersionCreate
from llmloop.core.models import ModelVersionCreate
from llmloop.core.runs import RunCreate, RunInput
from llmloop.services.actors import local_actor
from llmloop.services.container import Container
from llmloop.services.model_cards import build_card, render_markdown

ME = local_actor("alice")
HOSTILE = "<script>alert(1)</script>"
ROWS = [
    {"id": "q1", "input": "Where is my order?", "reference": "Your order ships today."},
    {"id": "q2", "input": "How do I reset my password?", "reference": "Open settings and reset."},
]
SUITE = """
name: support-quality
evaluators:
  - name: rouge
  - name: exact_match
"""
CARD = "/ui/models/bot/versions/1/card"


def seed(c: Container) -> dict[str, str]:
    """bot v1: trained on tickets-train by a fine-tune run, then evaluated for real on
    support-eval; bot v2: nothing recorded but its base (v1)."""
    train = c.datasets.create_version(
        "tickets-train", DatasetVersionCreate(rows=[{"prompt": "a", "response": "b"}]), ME
    )
    c.datasets.create_version("support-eval", DatasetVersionCreate(rows=ROWS), ME)
    run = c.runs.create(
        RunCreate(
            name="sft/bot",
            kind="finetune",
            params={"learning_rate": 0.0002, "lora": {"r": 8}, "note": HOSTILE},
            inputs=[RunInput(id=train.id, role="train")],
        ),
        ME,
    )
    c.runs.finish(run.id, "finished", ME)
    replies = {r["input"]: r["reference"] for r in ROWS}
    v1 = c.models.create_version(
        "bot",
        ModelVersionCreate(
            base_model="Qwen/Qwen2.5-0.5B",
            format="echo",
            run_id=run.id,
            inputs=[train.id],
            metrics={"eval_loss": 1.25},
            params={
                "replies": replies,
                "intended_use": f"Answer support tickets.\n\nNot {HOSTILE} medical advice.",
                "limitations": "English only.",
            },
            description=f"Support bot {HOSTILE}",
            artifact=ArtifactRef(uri="file:///art/bot-1", sha256="ab" * 32, size=1234),
        ),
        ME,
    )
    c.models.set_alias("bot", "champion", 1, ME)
    outcome = c.evaluation.evaluate(SUITE, "bot", "support-eval", ME, ref=1)
    v2 = c.models.create_version("bot", ModelVersionCreate(format="echo", base_model=v1.id), ME)
    return {"run": run.id, "v1": v1.id, "v2": v2.id, "eval": outcome.run_id}


def section(html: str, title: str) -> str:
    """The page between the ``<h2>`` titled ``title`` and the next one."""
    found = re.search(rf"<h2[^>]*>{re.escape(title)}</h2>(.*?)(?=<h2|</main>)", html, re.S)
    assert found, title
    return found.group(1)


def test_the_card_shows_the_version_training_data_and_eval_results(
    ui: TestClient, c: Container
) -> None:
    ids = seed(c)
    page = ui.get(CARD)
    assert page.status_code == 200
    html = page.text
    assert "Model card: bot" in html and ids["v1"] in html
    assert '<span class="badge alias">champion</span>' in html
    assert "Qwen/Qwen2.5-0.5B" in html and "echo" in html and "ab" * 32 in html
    assert "Answer support tickets." in section(html, "Intended use")
    assert "English only." in section(html, "Limitations")
    training = section(html, "Training")
    assert f'href="/ui/runs/{ids["run"]}">sft/bot</a>' in training
    assert "learning_rate" in training and "0.0002" in training
    assert "{&#34;r&#34;: 8}" in training or "{&quot;r&quot;: 8}" in training
    data = section(html, "Training data")
    assert 'href="/ui/datasets/tickets-train/versions/1">tickets-train v1</a>' in data
    assert "support-eval" not in data  # the eval data scored the model, it did not train it
    assert "eval_loss" in section(html, "Metrics") and "1.25" in section(html, "Metrics")
    evaluations = section(html, "Evaluations")
    run = c.runs.get(ids["eval"])
    assert f'href="/ui/runs/{ids["eval"]}">eval/support-quality/bot</a>' in evaluations
    assert '<span class="badge finished">finished</span>' in evaluations
    assert {"rougeL", "exact_match"} <= set(run.latest_metrics)
    for key, value in run.latest_metrics.items():
        assert f'<span class="muted">{key}</span>' in evaluations, key
        assert f'title="{value}"' in evaluations, key


def test_user_text_is_escaped(ui: TestClient, c: Container) -> None:
    seed(c)
    html = ui.get(CARD).text
    assert "<script>alert" not in html
    assert "Support bot &lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Not &lt;script&gt;alert(1)&lt;/script&gt; medical advice." in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in section(html, "Training")


def test_a_bare_version_says_what_was_not_recorded(ui: TestClient, c: Container) -> None:
    seed(c)
    html = ui.get("/ui/models/bot/versions/2/card").text
    for title in ("Description", "Intended use", "Limitations", "Training", "Training data",
                  "Metrics", "Evaluations"):  # fmt: skip
        assert "Not recorded." in section(html, title), title
    assert 'href="/ui/models/bot/versions/1">bot v1</a>' in html  # its base, in the registry


def test_an_alias_leads_to_the_numbered_card(ui: TestClient, c: Container) -> None:
    seed(c)
    assert ui.get("/ui/models/bot/versions/champion/card").headers["location"] == CARD
    latest = ui.get("/ui/models/bot/versions/latest/card")
    assert latest.headers["location"] == "/ui/models/bot/versions/2/card"


@pytest.mark.parametrize(
    "url",
    [
        "/ui/models/nope/versions/1/card",
        "/ui/models/bot/versions/9/card",
        "/ui/models/bot/versions/0/card",
        "/ui/models/bot/versions/99999999999999999999/card",
        "/ui/models/bot/versions/nobody/card",
        "/ui/models/bot/versions/9/card.md",
        "/ui/models/bot/versions/nobody/card.md",
        "/ui/models/nope/versions/1/card.md",
    ],
)
def test_an_unknown_version_is_the_404_page(ui: TestClient, c: Container, url: str) -> None:
    seed(c)
    response = ui.get(url)
    assert response.status_code == 404, url
    assert response.headers["content-type"].startswith("text/html")
    assert "Traceback" not in response.text and '<section class="card narrow">' in response.text


def test_the_markdown_download(ui: TestClient, c: Container) -> None:
    seed(c)
    html = ui.get(CARD).text
    assert '<a href="/ui/models/bot/versions/1/card.md" download>' in html
    response = ui.get("/ui/models/bot/versions/1/card.md")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/markdown; charset=utf-8"
    assert response.headers["content-disposition"] == 'attachment; filename="bot-v1-card.md"'
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.text == render_markdown(build_card(c, "bot", 1))
    assert "<script>" not in response.text and "| rougeL |" in response.text
    champion = ui.get("/ui/models/bot/versions/champion/card.md")
    assert champion.headers["content-disposition"] == 'attachment; filename="bot-v1-card.md"'


def test_the_model_and_version_pages_link_to_the_card(ui: TestClient, c: Container) -> None:
    seed(c)
    model = ui.get("/ui/models/bot").text
    row = model[model.index(">v1</strong>") :]
    href = re.search(r'href="([^"]*/card)"', row)
    assert href and href.group(1) == CARD
    version = ui.get("/ui/models/bot/versions/1").text
    assert f'href="{CARD}"' in version and f'href="{CARD}.md"' in version
    assert "Answer support tickets." in unescape(ui.get(href.group(1)).text)


def test_a_viewer_reads_the_card_and_a_visitor_signs_in(
    app: FastAPI, viewer_ui: TestClient, c: Container
) -> None:
    seed(c)
    assert viewer_ui.get(CARD).status_code == 200
    assert viewer_ui.get(f"{CARD}.md").status_code == 200
    with TestClient(app, follow_redirects=False) as anonymous:
        for url in (CARD, f"{CARD}.md"):
            response = anonymous.get(url)
            assert response.status_code == 303
            assert response.headers["location"].startswith("/ui/login?next=")
