"""Every dashboard page over each store (SQLite and PostgreSQL), with a little of everything in it.

The pages' own tests run on SQLite; this runs the same pages on PostgreSQL too, where the
monitoring queries, the trace filters and the audit paging take other SQL paths.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from llmloop.api.app import create_app
from llmloop.core.alerts import AlertRuleCreate
from llmloop.core.datasets import DatasetVersionCreate
from llmloop.core.deployments import DeploymentSpec
from llmloop.core.feedback import FeedbackCreate, QueueCreate
from llmloop.core.governance import ApiKeyCreate
from llmloop.core.models import ModelVersionCreate
from llmloop.core.prompts import PromptVersionCreate
from llmloop.core.runs import MetricPoint, RunCreate
from llmloop.core.traces import TraceRecord, new_trace_id
from llmloop.services.actors import local_actor
from llmloop.services.container import Container
from llmloop.services.gateway.trace_table import TraceTable

ME = local_actor("ada")


def _seed(c: Container) -> dict[str, str]:
    c.datasets.create_version("tickets", DatasetVersionCreate(rows=[{"prompt": "hi"}]), ME)
    c.prompts.create_version("greet", PromptVersionCreate(template="Hi {{ who }}"), ME)
    c.prompts.set_label("greet", "production", 1, ME)
    run = c.runs.create(RunCreate(name="ft", kind="finetune", params={"lr": 0.1}), ME)
    points = [MetricPoint(key="loss", value=2.0 - i / 10, step=i) for i in range(5)]
    c.runs.log_metrics(run.id, points, ME)
    c.models.create_version("bot", ModelVersionCreate(format="echo", run_id=run.id), ME)
    c.models.set_alias("bot", "champion", 1, ME)
    spec = {"name": "chat", "targets": [{"engine": {"kind": "echo"}}]}
    c.deployments.apply(DeploymentSpec.model_validate(spec), ME)
    now = datetime.now(UTC)
    table = TraceTable(c.store, max_text=100_000)
    common = {"operation": "chat", "deployment": "chat", "request_model": "chat",
              "response_model": "echo", "target": "primary0:echo:echo", "input_tokens": 3,
              "output_tokens": 4}  # fmt: skip
    records = [
        TraceRecord(
            id=new_trace_id(),
            at=now - timedelta(minutes=i),
            request_text=f"user: question {i}",
            response_text=f"answer {i}",
            latency_ms=10.0 + i,
            status="error" if i == 3 else "ok",
            **common,
        )
        for i in range(12)
    ]
    table.insert([table.row(r) for r in records])
    c.feedback.add(records[0].id, FeedbackCreate(kind="thumbs", value=1), ME)
    rule = {"name": "slow", "metric": "latency_p95", "comparison": ">", "threshold": 1000.0}
    c.alerts.create(AlertRuleCreate.model_validate(rule), ME)
    schema = {"kind": "categorical", "name": "quality", "choices": ["good", "bad"]}
    c.annotation.create_queue(QueueCreate.model_validate({"name": "review",
                                                          "label_schema": schema}), ME)  # fmt: skip
    return {"run": run.id, "trace": records[0].id}


@pytest.fixture
def ui(container: Container) -> Iterator[tuple[TestClient, dict[str, str]]]:
    ids = _seed(container)
    key = container.keys.create(ApiKeyCreate(name="ada", role="admin"), ME).secret
    app = create_app(container=container)
    with TestClient(app, follow_redirects=False) as tc:
        assert tc.post("/ui/login", data={"key": key}).status_code == 303
        yield tc, ids


def test_every_page_renders_on_this_store(ui: tuple[TestClient, dict[str, str]]) -> None:
    tc, ids = ui
    pages = [
        "/ui/", "/ui/models", "/ui/models/bot", "/ui/models/bot/versions/1",
        "/ui/datasets", "/ui/datasets/tickets", "/ui/datasets/tickets/versions/1",
        "/ui/prompts", "/ui/prompts/greet", "/ui/prompts/greet/playground",
        "/ui/runs", f"/ui/runs/{ids['run']}", "/ui/deployments", "/ui/deployments/chat",
        "/ui/traces", "/ui/traces?status=error", "/ui/traces?since=1h&deployment=chat",
        f"/ui/traces/{ids['trace']}", "/ui/monitoring", "/ui/monitoring?window=7d",
        "/ui/monitoring?group_by=model_version", "/ui/alerts", "/ui/alerts/slow",
        "/ui/annotation", "/ui/annotation/review", "/ui/governance",
        "/ui/governance?limit=2", f"/ui/governance/lineage/{ids['run']}",
    ]  # fmt: skip
    for path in pages:
        page = tc.get(path)
        assert page.status_code == 200, (path, page.text[-2000:])
        assert "<h1" in page.text, path
    overview = tc.get("/ui/").text
    assert ">12</div>" in overview  # requests in the last 24 hours
    errors = tc.get("/ui/traces?status=error").text
    assert "question 3" in errors and "question 4" not in errors
    older = re.search(r'href="([^"]*before_id=\d+[^"]*)#audit"', tc.get(pages[-2]).text)
    assert older is not None and tc.get(older.group(1).replace("&amp;", "&")).status_code == 200
