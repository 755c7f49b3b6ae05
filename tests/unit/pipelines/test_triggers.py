"""Pipeline triggers: a schedule fires when its period has passed, a new dataset version fires
once, an alert firing and a drift result fire; manual pipelines never run by themselves."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel

from llmloop.config import load_settings
from llmloop.core.datasets import DatasetVersionCreate
from llmloop.core.pipelines import PipelineSpec
from llmloop.hookspecs import hookimpl
from llmloop.plugins import build_registry
from llmloop.services.actors import local_actor
from llmloop.services.container import Container
from llmloop.store import tables as t
from llmloop.store.registry import utcnow

RUNS: list[str] = []


class Note:
    class Inputs(BaseModel):
        label: str

    cache_version: ClassVar[str] = "1"
    cacheable: ClassVar[bool] = False

    def run(self, inputs: Any, ctx: Any) -> dict[str, Any]:
        RUNS.append(inputs.label)
        return {"label": inputs.label}


class Plugin:
    @staticmethod
    @hookimpl
    def register_pipeline_steps(register: Any) -> None:
        register("note", Note)


def spec(name: str, trigger: dict[str, Any]) -> PipelineSpec:
    return PipelineSpec.model_validate(
        {
            "name": name,
            "triggers": [trigger],
            "steps": [{"id": "n", "uses": "note", "with": {"label": name}}],
        }
    )


@pytest.fixture
def container(tmp_path: Path) -> Iterator[Container]:
    RUNS.clear()
    c = Container(
        load_settings({"home": str(tmp_path)}, env={}),
        plugins=build_registry(extra_plugins=[Plugin]),
    )
    yield c
    c.close()


def test_schedule_and_manual(container: Container) -> None:
    svc, me = container.triggers, local_actor()
    every = spec("every-hour", {"kind": "schedule", "every_s": 3600})
    manual = spec("by-hand", {"kind": "manual"})
    assert [r.pipeline for r in svc.tick([every, manual], me)] == ["every-hour"]
    assert svc.tick([every, manual], me) == []
    later = datetime.now(UTC) + timedelta(hours=2)
    assert svc.due(every, now=later) == "schedule every 3600s"


def test_new_dataset_version_fires_once(container: Container) -> None:
    svc, me = container.triggers, local_actor()
    container.datasets.create_version("tickets", DatasetVersionCreate(rows=[{"t": 1}]), me)
    on_data = spec("retrain", {"kind": "dataset_version", "target": "tickets"})
    assert len(svc.tick([on_data], me)) == 1
    assert svc.tick([on_data], me) == []
    container.datasets.create_version("tickets", DatasetVersionCreate(rows=[{"t": 2}]), me)
    assert [r.status for r in svc.tick([on_data], me)] == ["finished"]
    assert RUNS == ["retrain", "retrain"]


def test_alert_and_drift_triggers(container: Container) -> None:
    from llmloop.core.alerts import AlertRuleCreate

    svc, me = container.triggers, local_actor()
    on_alert = spec("on-alert", {"kind": "alert", "target": "latency"})
    on_drift = spec("on-drift", {"kind": "drift", "target": "support"})
    assert svc.tick([on_alert, on_drift], me) == []
    rule = container.alerts.create(
        AlertRuleCreate.model_validate(
            {"name": "latency", "metric": "latency_p95", "comparison": ">", "threshold": 1.0}
        ),
        me,
    )
    with container.store.transaction() as tx:
        tx.insert(
            t.alert_events,
            {
                "rule_id": rule.id,
                "at": utcnow(),
                "state": "firing",
                "value": 9.0,
                "message": "p95 over 1",
                "delivered": True,
            },
        )
        tx.insert(
            t.drift_results,
            {
                "at": utcnow(),
                "deployment": "support",
                "model_version_id": None,
                "metric": "input_embedding",
                "test": "mmd",
                "statistic": 0.3,
                "p_value": 0.001,
                "drifted": True,
                "reference": {},
                "current": {},
                "details": {},
            },
        )
    assert sorted(r.pipeline for r in svc.tick([on_alert, on_drift], me)) == [
        "on-alert",
        "on-drift",
    ]
    assert svc.tick([on_alert, on_drift], me) == []


def test_broken_files_are_skipped(container: Container, tmp_path: Path) -> None:
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / "bad.yaml").write_text("name: [")
    (folder / "good.yaml").write_text(
        "name: good\ntriggers: [{kind: schedule, every_s: 60}]\n"
        "steps: [{id: n, uses: note, with: {label: good}}]\n"
    )
    assert [s.name for s in container.triggers.load_dir(folder)] == ["good"]
