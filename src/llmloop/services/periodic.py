"""A task the server runs every ``interval_s`` on its event loop: one mechanism for scheduled
drift, alert evaluation and pipeline triggers. A failing tick is logged and the next one runs;
``aclose`` cancels the task. What a tick does is the subclass's business."""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger("llmloop.periodic")


class PeriodicTask:
    name = "periodic task"

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    async def tick(self) -> None:
        """One round of work (subclasses)."""
        raise NotImplementedError

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.tick()
            except Exception:
                log.exception("%s failed", self.name)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
