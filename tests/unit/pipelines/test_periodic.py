"""The one periodic-task mechanism behind drift, alerts and triggers: a failing tick is logged
and the next tick still runs; aclose stops it."""

from __future__ import annotations

import asyncio

from llmloop.services.periodic import PeriodicTask


class Flaky(PeriodicTask):
    def __init__(self) -> None:
        super().__init__(0.01)
        self.calls = 0

    async def tick(self) -> None:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("first tick fails")


async def test_a_failing_tick_does_not_stop_the_task() -> None:
    task = Flaky()
    task.start()
    for _ in range(200):
        if task.calls >= 3:
            break
        await asyncio.sleep(0.01)
    await task.aclose()
    assert task.calls >= 3
    calls = task.calls
    await asyncio.sleep(0.05)
    assert task.calls == calls
