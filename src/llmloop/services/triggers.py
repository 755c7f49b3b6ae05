"""Pipeline triggers: decide, on each tick, which declared pipelines are due — on a schedule,
after a new dataset version, when an alert fires, or when drift is detected — and run them.

State (what each trigger last saw) lives in the pipeline's own run records: a trigger fires when
something newer than its pipeline's last run exists. The server ticks this in the background
(``pipelines_dir`` and ``pipeline_tick_s`` settings); ``llmloop pipeline tick`` runs one tick.
Cron expressions are not parsed here: schedules use ``every_s``.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from llmloop.core.pipelines import PipelineSpec, Trigger
from llmloop.errors import ConfigError, LlmloopError
from llmloop.services.actors import Actor
from llmloop.services.periodic import PeriodicTask
from llmloop.services.pipelines import PipelineReport, load_pipeline

log = logging.getLogger("llmloop.triggers")


class TriggerService:
    def __init__(self, container: Any) -> None:
        self.c = container

    def load_dir(self, folder: Path) -> list[PipelineSpec]:
        """Every ``*.yaml`` pipeline in ``folder``; a broken file is logged and skipped."""
        specs = []
        for path in sorted(folder.glob("*.y*ml")):
            try:
                specs.append(load_pipeline(path))
            except ConfigError as exc:
                log.warning("pipeline %s skipped: %s", path, exc.detail)
        return specs

    def last_run_at(self, spec: PipelineSpec) -> datetime | None:
        runs = [r for r in self.c.runs.list(kind="pipeline", limit=1000) if r.name == spec.name]
        return max((r.created_at for r in runs), default=None)

    def due(self, spec: PipelineSpec, now: datetime | None = None) -> str | None:
        """The reason the pipeline should run now, or None."""
        now = now or datetime.now(UTC)
        last = self.last_run_at(spec)
        for trigger in spec.triggers:
            reason = self._check(trigger, last, now)
            if reason:
                return reason
        return None

    def _check(self, trigger: Trigger, last: datetime | None, now: datetime) -> str | None:
        if trigger.kind == "manual":
            return None
        if trigger.kind == "schedule":
            if trigger.every_s is None:
                raise ConfigError("a schedule trigger needs every_s (cron is not supported)")
            if last is None or now - last >= timedelta(seconds=trigger.every_s):
                return f"schedule every {trigger.every_s:g}s"
            return None
        if not trigger.target:
            raise ConfigError(f"a {trigger.kind} trigger needs a target")
        if trigger.kind == "dataset_version":
            version = self.c.datasets.get_version(trigger.target, "latest")
            if last is None or version.created_at > last:
                return f"new version {trigger.target} v{version.version}"
            return None
        if trigger.kind == "alert":
            events = [
                e
                for e in self.c.alerts.events(trigger.target, limit=50)
                if e.state == "firing" and (last is None or e.at > last)
            ]
            return f"alert {trigger.target} fired" if events else None
        if trigger.kind == "drift":
            since = last or now - timedelta(days=1)
            drifted = [r for r in self.c.drift.history(trigger.target, since=since) if r.drifted]
            return f"drift on {trigger.target}: {drifted[0].metric}" if drifted else None
        return None

    def tick(self, specs: list[PipelineSpec], actor: Actor) -> list[PipelineReport]:
        """Run every due pipeline once; a failing one is logged and does not stop the others."""
        reports = []
        for spec in specs:
            try:
                reason = self.due(spec)
                if reason is None:
                    continue
                log.info("pipeline %s triggered: %s", spec.name, reason)
                reports.append(self.c.pipelines.run(spec, actor, trigger=reason))
            except LlmloopError as exc:
                log.warning("pipeline %s: %s", spec.name, exc.detail)
        return reports


class TriggerLoop(PeriodicTask):
    """The server's background ticker (off unless ``pipelines_dir`` is set)."""

    name = "pipeline trigger tick"

    def __init__(self, service: TriggerService, folder: Path, actor: Actor, every_s: float):
        super().__init__(every_s)
        self.service, self.folder, self.actor = service, folder, actor

    async def tick(self) -> None:
        specs = await asyncio.to_thread(self.service.load_dir, self.folder)
        await asyncio.to_thread(self.service.tick, specs, self.actor)
