"""The engine pool: one started engine per resolved key (model version id or engine spec hash).

Deployments hold engines through the pool and every request leases the engine it runs on, so an
alias swap can start the new engine, move new requests to it and close the old one only when
its last in-flight request has finished. The pool builds engines through the plugin registry;
it knows nothing of routing.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from llmloop.core.chat import EngineSpec
from llmloop.engines.base import Engine
from llmloop.plugins import PluginRegistry

log = logging.getLogger("llmloop.gateway")


@dataclass(eq=False)
class PooledEngine:
    """An engine plus who holds it: deployments (``holders``) and running requests."""

    key: str
    engine: Engine
    holders: int = 0
    in_flight: int = 0
    closed: bool = False
    _idle: asyncio.Event = field(default_factory=asyncio.Event)

    def enter(self) -> None:
        self.in_flight += 1

    def leave(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self._idle.set()

    async def wait_idle(self) -> None:
        while self.in_flight > 0:
            self._idle.clear()
            await self._idle.wait()


class EnginePool:
    def __init__(self, plugins: PluginRegistry) -> None:
        self.plugins = plugins
        self.engines: dict[str, PooledEngine] = {}
        self._lock = asyncio.Lock()
        self._closing: set[asyncio.Task[None]] = set()
        self._retiring: set[PooledEngine] = set()

    async def acquire(self, key: str, spec: EngineSpec) -> PooledEngine:
        """The started engine for ``key`` (built and started on first use), held once more."""
        async with self._lock:
            pooled = self.engines.get(key)
            if pooled is None:
                engine_cls = self.plugins.resolve("engines", spec.kind)
                engine: Engine = engine_cls(spec)
                await engine.start()
                pooled = PooledEngine(key=key, engine=engine)
                self.engines[key] = pooled
                log.info("engine %s started (%s %s)", key, spec.kind, spec.model)
            pooled.holders += 1
            return pooled

    def release(self, pooled: PooledEngine) -> None:
        """Drop one hold; the last one retires the engine once its requests have finished."""
        pooled.holders -= 1
        if pooled.holders > 0:
            return
        if self.engines.get(pooled.key) is pooled:
            del self.engines[pooled.key]
        self._retiring.add(pooled)
        task = asyncio.get_running_loop().create_task(self._retire(pooled))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _stuck(self) -> list[PooledEngine]:
        return list(self._retiring)

    async def _retire(self, pooled: PooledEngine) -> None:
        await pooled.wait_idle()
        self._retiring.discard(pooled)
        pooled.closed = True
        try:
            await pooled.engine.aclose()
        except Exception:
            log.exception("closing engine %s failed", pooled.key)
        log.info("engine %s closed", pooled.key)

    async def aclose(self, drain_s: float = 30.0) -> None:
        """Close every engine after its in-flight requests (waiting at most ``drain_s``)."""
        for pooled in list(self.engines.values()):
            pooled.holders = 1
            self.release(pooled)
        if not self._closing:
            return
        _, pending = await asyncio.wait(set(self._closing), timeout=drain_s)
        for task in pending:
            task.cancel()
        stuck = [p for p in self._stuck() if not p.closed]
        for pooled in stuck:
            log.warning("engine %s closed with %d requests in flight", pooled.key,
                        pooled.in_flight)  # fmt: skip
            pooled.closed = True
            await pooled.engine.aclose()
