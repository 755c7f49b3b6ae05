"""Runs: tracked work with params, metric series over steps, artifacts, status and inputs.

Inputs (dataset, prompt, model versions) become lineage edges into the run. A finished run
accepts no more metrics; params are fixed at creation except for keys not yet set.
"""

from __future__ import annotations

import builtins
import math
from typing import Any

from llmloop.core.base import ArtifactRef
from llmloop.core.ids import entity_of, new_id
from llmloop.core.runs import (
    TERMINAL_STATUSES,
    MetricPoint,
    RunArtifact,
    RunCreate,
    RunInput,
    RunPublic,
)
from llmloop.errors import ConflictError, InvalidInputError, NotFoundError
from llmloop.services.actors import Actor
from llmloop.store import tables as t
from llmloop.store.registry import Row, Store, Tx, utcnow

INPUT_ENTITIES = {"dataset_version", "prompt_version", "model_version", "run", "trace"}


def check_input_ids(tx: Tx, ids: list[str]) -> None:
    """Every id must name an existing dataset, prompt or model version (or run)."""
    tables = {
        "dataset_version": t.dataset_versions,
        "prompt_version": t.prompt_versions,
        "model_version": t.model_versions,
        "run": t.runs,
    }
    for ident in ids:
        entity = entity_of(ident)
        if entity not in INPUT_ENTITIES:
            raise InvalidInputError(f"'{ident}' is not a dataset, prompt or model version id")
        if entity in tables and tx.get(tables[entity], id=ident) is None:
            raise NotFoundError(f"no {entity.replace('_', ' ')} with id '{ident}'")


class RunService:
    def __init__(self, store: Store) -> None:
        self.store = store

    def _run(self, tx: Tx, run_id: str, for_update: bool = False) -> Row:
        row = tx.get(t.runs, for_update=for_update, id=run_id)
        if row is None:
            raise NotFoundError(f"no run with id '{run_id}'")
        return row

    def _public(self, tx: Tx, row: Row) -> RunPublic:
        inputs = [
            RunInput(id=e["source_id"], role=e["relation"])
            for e in tx.select(t.lineage_edges, {"target_id": row["id"]})
            if entity_of(e["source_id"]) != "run"
        ]
        artifacts = [
            RunArtifact(
                name=a["name"],
                artifact=ArtifactRef(uri=a["uri"], sha256=a["sha256"], size=a["size"]),
            )
            for a in tx.select(t.run_artifacts, {"run_id": row["id"]}, order_by="name")
        ]
        return RunPublic(
            id=row["id"],
            name=row["name"],
            kind=row["kind"],
            status=row["status"],
            params=row["params"],
            parent_id=row["parent_id"],
            inputs=inputs,
            tags=row["tags"],
            created_at=row["created_at"],
            ended_at=row["ended_at"],
            latest_metrics=tx.latest_metrics([row["id"]])[row["id"]],
            artifacts=artifacts,
            created_by=row["created_by"],
        )

    def create(self, spec: RunCreate, actor: Actor) -> RunPublic:
        actor.require("editor")
        row: Row = {
            "id": new_id("run"),
            "name": spec.name,
            "kind": spec.kind,
            "status": "running",
            "params": spec.params,
            "parent_id": spec.parent_id,
            "tags": spec.tags,
            "ended_at": None,
            "created_at": utcnow(),
            "created_by": actor.name,
        }
        with self.store.transaction() as tx:
            if spec.parent_id is not None:
                self._run(tx, spec.parent_id)
            check_input_ids(tx, [i.id for i in spec.inputs])
            tx.insert(t.runs, row)
            if spec.parent_id:
                tx.add_edge(spec.parent_id, row["id"], "child")
            for item in spec.inputs:
                tx.add_edge(item.id, row["id"], item.role)
            tx.audit(actor.name, "run.create", "run", row["id"], None, row)
            return self._public(tx, row)

    def get(self, run_id: str) -> RunPublic:
        with self.store.read() as tx:
            return self._public(tx, self._run(tx, run_id))

    def list(
        self,
        kind: str | None = None,
        status: str | None = None,
        parent_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> builtins.list[RunPublic]:
        where: dict[str, Any] = {}
        for key, value in (("kind", kind), ("status", status), ("parent_id", parent_id)):
            if value is not None:
                where[key] = value
        with self.store.read() as tx:
            rows = tx.select(
                t.runs, where, order_by="created_at", descending=True, limit=limit, offset=offset
            )
            return [self._public(tx, r) for r in rows]

    def log_metrics(self, run_id: str, points: builtins.list[MetricPoint], actor: Actor) -> int:
        actor.require("editor")
        for point in points:
            if not math.isfinite(point.value):
                raise InvalidInputError(f"metric '{point.key}' is not a finite number")
        now = utcnow()
        with self.store.transaction() as tx:
            run = self._run(tx, run_id)
            if run["status"] in TERMINAL_STATUSES:
                raise ConflictError(f"run '{run_id}' is {run['status']}; it takes no more metrics")
            tx.insert_many(
                t.run_metrics,
                [
                    {
                        "run_id": run_id,
                        "key": p.key,
                        "step": p.step,
                        "value": p.value,
                        "at": p.timestamp or now,
                    }
                    for p in points
                ],
            )
        return len(points)

    def log_params(self, run_id: str, params: dict[str, Any], actor: Actor) -> RunPublic:
        """Add params not yet set; changing a set param is a conflict."""
        actor.require("editor")
        with self.store.transaction() as tx:
            run = self._run(tx, run_id, for_update=True)
            clash = [k for k, v in params.items() if k in run["params"] and run["params"][k] != v]
            if clash:
                raise ConflictError(f"params already set to other values: {', '.join(clash)}")
            merged = {**run["params"], **params}
            tx.update(t.runs, {"id": run_id}, {"params": merged})
            tx.audit(
                actor.name,
                "run.params",
                "run",
                run_id,
                {"params": run["params"]},
                {"params": merged},
            )
            return self._public(tx, {**run, "params": merged})

    def add_artifact(self, run_id: str, name: str, ref: ArtifactRef, actor: Actor) -> None:
        actor.require("editor")
        with self.store.transaction() as tx:
            self._run(tx, run_id)
            if tx.get(t.run_artifacts, run_id=run_id, name=name) is not None:
                raise ConflictError(f"run '{run_id}' already has an artifact named '{name}'")
            tx.insert(
                t.run_artifacts,
                {
                    "run_id": run_id,
                    "name": name,
                    "uri": ref.uri,
                    "sha256": ref.sha256,
                    "size": ref.size,
                },
            )
            tx.audit(
                actor.name,
                "run.artifact",
                "run",
                run_id,
                None,
                {"name": name, "sha256": ref.sha256},
            )

    def add_inputs(self, run_id: str, inputs: builtins.list[RunInput], actor: Actor) -> None:
        actor.require("editor")
        with self.store.transaction() as tx:
            self._run(tx, run_id)
            check_input_ids(tx, [i.id for i in inputs])
            for item in inputs:
                tx.add_edge(item.id, run_id, item.role)

    def finish(self, run_id: str, status: str, actor: Actor) -> RunPublic:
        actor.require("editor")
        if status not in TERMINAL_STATUSES:
            raise InvalidInputError(f"status must be one of {sorted(TERMINAL_STATUSES)}")
        with self.store.transaction() as tx:
            run = self._run(tx, run_id, for_update=True)
            if run["status"] in TERMINAL_STATUSES:
                raise ConflictError(f"run '{run_id}' is already {run['status']}")
            ended = utcnow()
            tx.update(t.runs, {"id": run_id}, {"status": status, "ended_at": ended})
            tx.audit(
                actor.name,
                "run.finish",
                "run",
                run_id,
                {"status": run["status"]},
                {"status": status},
            )
            return self._public(tx, {**run, "status": status, "ended_at": ended})

    def metric_series(
        self, run_id: str, key: str | None = None
    ) -> dict[str, builtins.list[dict[str, Any]]]:
        """key -> [{step, value, at}] ordered by step."""
        with self.store.read() as tx:
            self._run(tx, run_id)
            series: dict[str, builtins.list[dict[str, Any]]] = {}
            for r in tx.metric_series(run_id, key):
                series.setdefault(r["key"], []).append(
                    {"step": r["step"], "value": r["value"], "at": r["at"].isoformat()}
                )
            return series
