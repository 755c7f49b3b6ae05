"""Dashboard pages of runs: the list with filters and paging, a run in full (params, metric
curves, artifacts, inputs by name, trials, an eval run's report and gate verdicts), the side by
side comparison and its validation, and closing a run left running."""

from __future__ import annotations

import re
from dataclasses import dataclass
from html import unescape

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from llmloop.core.datasets import DatasetVersionCreate
from llmloop.core.models import ModelVersionCreate
from llmloop.core.prompts import PromptVersionCreate
from llmloop.core.runs import MetricPoint, RunCreate, RunInput
from llmloop.services.actors import Actor, local_actor
from llmloop.services.container import Container
from llmloop.ui.pages.runs import lower_is_better

ROWS = [
    {"id": "q1", "input": "Where is my order?", "reference": "Your order ships today."},
    {"id": "q2", "input": "How do I reset my password?", "reference": "Open settings and reset."},
    {"id": "q3", "input": "Can I return shoes?", "reference": "Yes, within thirty days."},
]
SUITE = """
name: support-quality
evaluators:
  - name: rouge
  - name: exact_match
"""
HOSTILE = "<script>x</script> run/one"


@dataclass
class Seeded:
    sft: str
    sft2: str
    hpo: str
    trials: list[str]
    running: str
    eval_good: str
    eval_bad: str
    gate: str
    model_version: str


def _train(c: Container, me: Actor, name: str, lr: float, losses: list[float], **extra: str) -> str:
    """A fine-tune run as training records one: params, inputs, a loss curve, weights, finished."""
    dv = c.datasets.get_version("support-chat", "latest")
    pv = c.prompts.get_version("support-system", 1)
    base = c.models.get_version("base-llm", 1)
    run = c.runs.create(
        RunCreate(
            name=name,
            kind="finetune",
            params={"lr": lr, "epochs": 3, "lora": {"r": 8, "alpha": 16}, **extra},
            inputs=[
                RunInput(id=dv.id, role="train"),
                RunInput(id=pv.id, role="system_prompt"),
                RunInput(id=base.id, role="base"),
            ],
        ),
        me,
    )
    points = [MetricPoint(key="train_loss", value=v, step=i * 10) for i, v in enumerate(losses)]
    points += [MetricPoint(key="accuracy", value=1 - losses[-1] / 4, step=len(losses) * 10)]
    c.runs.log_metrics(run.id, points, me)
    ref = c.artifacts.put(b"weights of " + name.encode(), name="weights.bin")
    c.runs.add_artifact(run.id, "weights", ref, me)
    c.runs.finish(run.id, "finished", me)
    return run.id


def seed(c: Container) -> Seeded:
    me = local_actor("alice")
    c.datasets.create_version("support-chat", DatasetVersionCreate(rows=ROWS), me)
    c.prompts.create_version(
        "support-system", PromptVersionCreate(template="You help {{ customer }}."), me
    )
    replies = {r["input"]: r["reference"] for r in ROWS}
    c.models.create_version("base-llm", ModelVersionCreate(format="echo"), me)
    c.models.create_version(
        "bot", ModelVersionCreate(format="echo", params={"replies": replies}), me
    )
    c.models.create_version("bot", ModelVersionCreate(format="echo", params={"reply": "No."}), me)
    sft = _train(c, me, "sft/support-bot", 2e-4, [2.5, 1.9, 1.4, 1.1])
    sft2 = _train(c, me, "sft/support-bot", 1e-3, [2.4, 2.0, 1.8, 1.7], scheduler="cosine")
    mv = c.models.create_version("support-bot", ModelVersionCreate(format="echo", run_id=sft), me)
    hpo = c.runs.create(RunCreate(name="hpo/support-bot", kind="hpo", params={"n_trials": 3}), me)
    trials = []
    for i, lr in enumerate((1e-4, 3e-4, 1e-3)):
        trial = c.runs.create(
            RunCreate(name=f"trial-{i}", kind="trial", parent_id=hpo.id, params={"lr": lr}), me
        )
        c.runs.log_metrics(trial.id, [MetricPoint(key="eval_loss", value=1.5 - i / 10)], me)
        c.runs.finish(trial.id, "finished", me)
        trials.append(trial.id)
    c.runs.finish(hpo.id, "finished", me)
    good = c.evaluation.evaluate(SUITE, "bot", "support-chat", me, ref=1)
    bad = c.evaluation.evaluate(SUITE, "bot", "support-chat", me, ref=2)
    gate = c.evaluation.gate(["rougeL >= baseline - 0.01"], bad.run_id, good.run_id, me)
    running = c.runs.create(RunCreate(name="dpo/stuck", kind="dpo", params={"beta": 0.1}), me)
    c.runs.log_metrics(running.id, [MetricPoint(key="train_loss", value=0.7, step=5)], me)
    return Seeded(
        sft, sft2, hpo.id, trials, running.id, good.run_id, bad.run_id, gate.run_id, mv.id
    )


@pytest.fixture
def seeded(app: FastAPI) -> Seeded:
    return seed(app.state.container)


def text_of(html: str) -> str:
    """The page's visible text, tags dropped, whitespace collapsed."""
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))


# --- the list ------------------------------------------------------------------------------


def test_an_empty_list_says_how_runs_appear(ui: TestClient) -> None:
    page = ui.get("/ui/runs")
    assert page.status_code == 200
    assert "No runs yet." in page.text and "llmloop runs create" in page.text
    assert 'action="/ui/runs/compare"' not in page.text


def test_the_list_shows_runs_newest_first_with_key_params_and_metrics(
    ui: TestClient, seeded: Seeded
) -> None:
    page = ui.get("/ui/runs")
    assert page.status_code == 200
    html = page.text
    order = [html.index(f'value="{i}"') for i in (seeded.running, seeded.gate, seeded.sft)]
    assert order == sorted(order)  # newest first
    assert 'action="/ui/runs/compare"' in html and 'method="get"' in html
    assert html.count('type="checkbox" name="ids"') == 10
    assert '<span class="badge running">running</span>' in html
    assert '<span class="badge failed">gate failed</span>' in html
    assert '<th title="param lr">lr</th>' in html  # lr varies, so it is a column
    assert "train_loss" in html and "1.1" in text_of(html)
    assert "alice" not in text_of(html)  # who is on the run page, not the list


def test_the_list_filters_by_kind_status_and_parent(ui: TestClient, seeded: Seeded) -> None:
    evals = ui.get("/ui/runs?kind=eval").text
    assert seeded.eval_good in evals and seeded.gate in evals and seeded.sft not in evals
    assert '<option value="eval" selected>' in evals and "Clear filters" in evals
    running = ui.get("/ui/runs?status=running").text
    assert seeded.running in running and seeded.sft not in running
    trials = ui.get(f"/ui/runs?parent={seeded.hpo}").text
    assert all(t in trials for t in seeded.trials) and seeded.sft not in trials
    assert f'href="/ui/runs/{seeded.hpo}"' in trials
    none = ui.get("/ui/runs?kind=pretrain")
    assert none.status_code == 200 and "No runs match these filters yet." in none.text


def test_a_bad_filter_is_a_clear_422_page(ui: TestClient, seeded: Seeded) -> None:
    for query in ("kind=<b>nope</b>", "status=sleeping"):
        page = ui.get(f"/ui/runs?{query}")
        assert page.status_code == 422
        assert page.headers["content-type"].startswith("text/html")
        assert "must be one of" in page.text and "<b>nope" not in page.text


def test_the_list_pages(ui: TestClient, seeded: Seeded) -> None:
    first = ui.get("/ui/runs?kind=finetune&limit=1")
    assert seeded.sft2 in first.text and seeded.sft not in first.text
    assert "kind=finetune&amp;offset=1&limit=1" in first.text and "older" in first.text
    second = ui.get("/ui/runs?kind=finetune&limit=1&offset=1")
    assert seeded.sft in second.text and seeded.sft2 not in second.text
    assert "newer" in second.text
    assert "kind=finetune" in second.text  # paging keeps the filters
    bad = ui.get("/ui/runs?limit=0")
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("text/html")


# --- one run ---------------------------------------------------------------------------------


def test_a_run_page_shows_everything_recorded(app: FastAPI, ui: TestClient, seeded: Seeded) -> None:
    c: Container = app.state.container
    page = ui.get(f"/ui/runs/{seeded.sft}")
    assert page.status_code == 200
    html, text = page.text, text_of(page.text)
    assert "sft/support-bot" in text and "Started by alice" in text and "finetune" in text
    assert "<code>lr</code>" in html and "0.0002" in text
    assert '"alpha": 16' in unescape(html)  # nested params pretty-printed
    assert html.count('<svg class="chart"') == 1  # train_loss over 4 steps; accuracy is 1 point
    assert 'aria-label="train_loss"' in html and "accuracy" in text
    weights = c.runs.get(seeded.sft).artifacts[0].artifact
    assert weights.sha256[:12] in html and weights.uri in html and "bytes" in html
    dv = c.datasets.get_version("support-chat", 1)
    assert 'href="/ui/datasets/support-chat/versions/1"' in html and dv.id in html
    assert 'href="/ui/prompts/support-system"' in html and "system_prompt" in text
    assert 'href="/ui/models/base-llm/versions/1"' in html
    assert 'href="/ui/models/support-bot/versions/1"' in html and "produced" in text  # output
    assert "Close run" not in html  # finished runs cannot be closed again


def test_a_long_curve_is_thinned_but_keeps_its_last_point(app: FastAPI, ui: TestClient) -> None:
    c: Container = app.state.container
    me = local_actor()
    run = c.runs.create(RunCreate(name="long", kind="pretrain"), me)
    points = [MetricPoint(key="loss", value=10 / (s + 1), step=s) for s in range(1000)]
    c.runs.log_metrics(run.id, points, me)
    html = ui.get(f"/ui/runs/{run.id}").text
    path = re.search(r'<path d="([^"]+)"', html)
    assert path is not None
    drawn = path.group(1).split()
    assert 400 <= len(drawn) <= 502  # about 500 of 1000 points
    assert "1,000" in html  # the table still counts every step logged
    assert ">999</text>" in html  # the last step is drawn (the x axis ends there)


def test_an_hpo_run_lists_its_trials_and_a_trial_links_its_parent(
    ui: TestClient, seeded: Seeded
) -> None:
    parent = ui.get(f"/ui/runs/{seeded.hpo}").text
    assert "Child runs (trials)" in parent
    for trial in seeded.trials:
        assert f'name="ids" value="{trial}"' in parent
    assert 'action="/ui/runs/compare"' in parent and "eval_loss" in parent
    assert "eval_loss by child run" in parent and 'class="chart bars"' in parent
    chart = parent[parent.index("chart bars") :]
    assert chart.index(">trial-0<") < chart.index(">trial-2<")  # oldest trial first
    trial = ui.get(f"/ui/runs/{seeded.trials[0]}").text
    assert f'<a href="/ui/runs/{seeded.hpo}">hpo/support-bot</a>' in trial
    assert "Child runs (trials)" not in trial
    assert "Related runs" not in parent and "Related runs" not in trial  # not listed twice


def test_an_eval_run_shows_its_report_and_the_gates_that_judged_it(
    ui: TestClient, seeded: Seeded
) -> None:
    html = ui.get(f"/ui/runs/{seeded.eval_good}").text
    text = text_of(html)
    assert "Evaluation report" in text and "support-quality" in text
    assert "Metric summaries" in text and "rouge" in text and "exact_match" in text
    for row in ROWS:  # every case with its prompt, output and scores
        assert row["id"] in text and row["input"] in text and row["reference"] in text
    assert "exact_match.exact_match" in text
    assert "Gates that judged this evaluation" in text
    assert f'href="/ui/runs/{seeded.gate}"' in html
    assert '<span class="badge failed">failed</span>' in html and "rougeL &gt;= baseline" in html
    assert 'href="/ui/datasets/support-chat/versions/1"' in html  # eval_data input
    assert 'href="/ui/models/bot/versions/1"' in html and "candidate" in text
    bad = text_of(ui.get(f"/ui/runs/{seeded.eval_bad}").text)
    assert "No." in bad and "Gates that judged this evaluation" in bad


def test_a_gate_run_shows_its_verdict_and_the_runs_it_compared(
    ui: TestClient, seeded: Seeded
) -> None:
    html = ui.get(f"/ui/runs/{seeded.gate}").text
    assert "Gate verdict" in html and '<span class="badge failed">failed</span>' in html
    assert f'candidate: <a href="/ui/runs/{seeded.eval_bad}">' in html
    assert f'baseline: <a href="/ui/runs/{seeded.eval_good}">' in html
    assert "<code>rougeL &gt;= baseline - 0.01</code>" in html
    assert "no stored suite report" in html
    # each rule's outcome, from the gate result stored with the run
    rules = html.split("Gate verdict", 1)[1].split("<h2>", 1)[0]
    assert '<span class="badge failed">failed</span></td>' in rules
    # candidate, baseline and the threshold the baseline gives (1 - 0.01)
    assert '<td class="num">0</td><td class="num">1</td><td class="num">0.99</td>' in rules


def test_an_unknown_run_is_a_404_page_with_the_id_escaped(ui: TestClient) -> None:
    page = ui.get("/ui/runs/run_00000000000000000000000000")
    assert page.status_code == 404 and "no run with id" in page.text
    hostile = ui.get("/ui/runs/%3Cscript%3Ex%3C%2Fscript%3E")
    assert hostile.status_code == 404
    assert "<script>x" not in hostile.text and "&lt;script&gt;x" in hostile.text


def test_hostile_names_params_and_metric_keys_are_escaped(app: FastAPI, ui: TestClient) -> None:
    c: Container = app.state.container
    me = local_actor()
    run = c.runs.create(
        RunCreate(
            name=HOSTILE,
            params={"<img src=x>": "<b>bold</b>", "deep": {"<u>": "<u>"}},
            tags={"t": "<i>"},
        ),
        me,
    )
    points = [MetricPoint(key="<svg onload=1>", value=v, step=s) for s, v in ((0, 1.0), (1, 2))]
    c.runs.log_metrics(run.id, points, me)
    other = c.runs.create(RunCreate(name=HOSTILE, params={"<img src=x>": "plain"}), me)
    c.runs.log_metrics(other.id, [MetricPoint(key="<svg onload=1>", value=3, step=0)], me)
    pages = [
        ui.get("/ui/runs").text,
        ui.get(f"/ui/runs/{run.id}").text,
        ui.get(f"/ui/runs/compare?ids={run.id}&ids={other.id}").text,
    ]
    for html in pages:
        assert "<script>x" not in html and "<img src=x>" not in html
        assert "<svg onload" not in html and "<b>bold" not in html and "<i>" not in html
        assert "<u>" not in html
        assert "&lt;script&gt;x&lt;/script&gt; run/one" in html
    assert f'href="/ui/runs/{run.id}"' in pages[0]


# --- compare ---------------------------------------------------------------------------------


def test_compare_shows_runs_side_by_side(ui: TestClient, seeded: Seeded) -> None:
    page = ui.get(f"/ui/runs/compare?ids={seeded.sft}&ids={seeded.sft2}")
    assert page.status_code == 200
    html = page.text
    # Both are named sft/support-bot: the labels tell them apart by the end of their id.
    assert f"sft/support-bot ({seeded.sft[-6:]})" in html
    lr_row = re.search(r"<tr[^>]*><td><code>lr</code>.*?</tr>", html, re.S)
    assert lr_row and "differs" in lr_row.group(0) and "0.0002" in lr_row.group(0)
    epochs_row = re.search(r"<tr[^>]*><td><code>epochs</code>.*?</tr>", html, re.S)
    assert epochs_row and "differs" not in epochs_row.group(0)
    same = html.index("params with the same value in every run")
    assert html.index("<code>lr</code>") < same < html.index("<code>epochs</code>")
    assert "2 of 5 params differ" in text_of(html)  # lr, scheduler; lora.* and epochs agree
    assert "<code>lora.r</code>" in html  # nested params compare key by key
    sched = re.search(r"<code>scheduler</code>.*?</tr>", html, re.S)
    assert sched and "cosine" in sched.group(0) and "-" in sched.group(0)
    loss_row = re.search(r"<code>train_loss</code>.*?</tr>", html, re.S)
    assert loss_row is not None
    cells = re.findall(r"<td class=\"num( best)?\"", loss_row.group(0))
    assert cells == [" best", ""]  # 1.1 beats 1.7: lower loss is better
    acc_row = re.search(r"<code>accuracy</code>.*?</tr>", html, re.S)
    assert acc_row and re.findall(r"<td class=\"num( best)?\"", acc_row.group(0)) == [" best", ""]
    assert 'aria-label="train_loss"' in html and 'class="legend"' in html  # overlaid curves


def test_compare_eval_runs_draws_bars_for_single_values(ui: TestClient, seeded: Seeded) -> None:
    html = ui.get(f"/ui/runs/compare?ids={seeded.eval_good},{seeded.eval_bad}").text
    assert 'class="chart bars"' in html and 'aria-label="rougeL"' in html
    row = re.search(r"<code>rougeL</code>.*?</tr>", html, re.S)
    assert row and re.findall(r"<td class=\"num( best)?\"", row.group(0)) == [" best", ""]


def test_compare_marks_no_best_for_settings_and_counts(app: FastAPI, ui: TestClient) -> None:
    c: Container = app.state.container
    me = local_actor()
    ids = []
    for lr, loss in ((1e-3, 0.9), (1e-4, 0.8)):
        run = c.runs.create(RunCreate(name=f"lr-{lr}", kind="finetune"), me)
        keys = {"lr": lr, "train_tokens": 1000 * loss, "loss": loss}
        c.runs.log_metrics(run.id, [MetricPoint(key=k, value=v) for k, v in keys.items()], me)
        ids.append(run.id)
    html = ui.get(f"/ui/runs/compare?ids={ids[0]}&ids={ids[1]}").text
    for key in ("lr", "train_tokens"):
        row = re.search(rf"<code>{key}</code>.*?</tr>", html, re.S)
        assert row and "best" not in row.group(0) and "better" not in row.group(0), key
    loss = re.search(r"<code>loss</code>.*?</tr>", html, re.S)
    assert loss and re.findall(r"<td class=\"num( best)?\"", loss.group(0)) == ["", " best"]


def test_compare_marks_no_best_when_values_tie(ui: TestClient, seeded: Seeded) -> None:
    html = ui.get(f"/ui/runs/compare?ids={seeded.trials[0]}&ids={seeded.running}").text
    assert 'badge ok">best' not in html  # each metric logged by one run only


@pytest.mark.parametrize(
    "query", ["", "ids=", "ids={a}", "ids={a}&ids={a}", "ids=a,b,c,d,e,f,g,h,i"]
)
def test_compare_needs_two_to_eight_runs(ui: TestClient, seeded: Seeded, query: str) -> None:
    page = ui.get("/ui/runs/compare?" + query.format(a=seeded.sft))
    assert page.status_code == 422
    assert "Pick between 2 and 8 runs" in page.text and 'href="/ui/runs"' in page.text


def test_compare_with_an_unknown_run_is_a_404_page(ui: TestClient, seeded: Seeded) -> None:
    page = ui.get(f"/ui/runs/compare?ids={seeded.sft}&ids=%3Cb%3Enope")
    assert page.status_code == 404
    assert "no run with id" in page.text and "<b>nope" not in page.text
    assert "&lt;b&gt;nope" in page.text


# --- closing a run ---------------------------------------------------------------------------


def test_an_editor_closes_a_run_left_running(app: FastAPI, ui: TestClient, seeded: Seeded) -> None:
    c: Container = app.state.container
    page = ui.get(f"/ui/runs/{seeded.running}").text
    assert f'action="/ui/runs/{seeded.running}/finish"' in page and "data-confirm" in page
    response = ui.post(f"/ui/runs/{seeded.running}/finish", data={"status": "killed"})
    assert response.status_code == 303
    assert response.headers["location"] == f"/ui/runs/{seeded.running}"
    run = c.runs.get(seeded.running)
    assert run.status == "killed" and run.ended_at is not None
    after = ui.get(response.headers["location"]).text
    assert "Run marked killed." in after and "Close run" not in after
    again = ui.post(f"/ui/runs/{seeded.running}/finish", data={"status": "failed"})
    assert "already killed" in ui.get(again.headers["location"]).text
    assert c.runs.get(seeded.running).status == "killed"


def test_a_bad_status_changes_nothing(app: FastAPI, ui: TestClient, seeded: Seeded) -> None:
    for data in ({"status": "running"}, {"status": "<b>"}, {}):
        response = ui.post(f"/ui/runs/{seeded.running}/finish", data=data)
        assert response.status_code == 303
        page = ui.get(response.headers["location"]).text
        assert 'class="flash error"' in page and "Pick a status" in page
    assert app.state.container.runs.get(seeded.running).status == "running"
    assert ui.post("/ui/runs/run_00000000000000000000000000/finish").status_code == 404


def test_a_viewer_sees_runs_but_cannot_close_one(
    app: FastAPI, viewer_ui: TestClient, seeded: Seeded
) -> None:
    page = viewer_ui.get(f"/ui/runs/{seeded.running}")
    assert page.status_code == 200 and "Close run" not in page.text
    assert viewer_ui.get(f"/ui/runs/compare?ids={seeded.sft}&ids={seeded.sft2}").status_code == 200
    refused = viewer_ui.post(f"/ui/runs/{seeded.running}/finish", data={"status": "killed"})
    assert refused.status_code == 403 and "needs 'editor'" in unescape(refused.text)
    assert app.state.container.runs.get(seeded.running).status == "running"


def test_a_close_posted_from_another_site_is_refused(
    app: FastAPI, ui: TestClient, seeded: Seeded
) -> None:
    response = ui.post(
        f"/ui/runs/{seeded.running}/finish",
        data={"status": "killed"},
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 403
    assert app.state.container.runs.get(seeded.running).status == "running"


def test_pages_need_a_sign_in(app: FastAPI, seeded: Seeded) -> None:
    with TestClient(app, follow_redirects=False) as tc:
        for path in ("/ui/runs", f"/ui/runs/{seeded.sft}", "/ui/runs/compare?ids=a&ids=b"):
            assert tc.get(path).status_code == 303
        assert (
            tc.post(f"/ui/runs/{seeded.running}/finish", data={"status": "killed"}).status_code
            == 303
        )
    assert app.state.container.runs.get(seeded.running).status == "running"


LOWER_BETTER = ["train_loss", "eval_loss", "final_wall_time_s", "latency_ms", "cost_estimate"]
LOWER_BETTER += ["attack_success_rate", "asr.LLM01", "toxicity_rate", "failed_samples", "ppl"]
HIGHER_BETTER = ["accuracy", "rougeL", "bleu", "exact_match", "answer_relevancy", "gate_passed"]


def test_which_metrics_are_better_lower() -> None:
    assert all(lower_is_better(key) for key in LOWER_BETTER)
    assert not any(lower_is_better(key) for key in [*HIGHER_BETTER, "precision", "f1"])


def test_a_nested_param_s_summary_reads_as_written(app: FastAPI, ui: TestClient) -> None:
    # Its one-line summary was tojson: "\u003cs\u003e" on the page, and "1 keys".
    params = {"chat": {"stop": "<s>", "greeting": "don't"}, "tags": ["a"]}
    run = app.state.container.runs.create(RunCreate(name="p", params=params), local_actor())
    page = ui.get(f"/ui/runs/{run.id}").text
    assert "\\u00" not in page
    text = unescape(page)
    assert '2 keys: {"greeting": "don\'t", "stop": "<s>"}</summary>' in text
    assert '1 item: ["a"]</summary>' in text
