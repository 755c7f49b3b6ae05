"""Live deployments: builds a :class:`DeploymentRuntime` per deployment and swaps it on change.

A spec is checked before it is stored (:class:`DeploymentChecker`: every target resolves, its
engine exists and takes its options, guards and cache config are valid; the message names the
field), and ``apply`` starts its engines before storing it, so a deployment that cannot serve is
refused, never half-stored. On start it checks the deployments file (if any), loads it into the
store and every stored deployment into memory. ``reload(name)`` re-resolves the targets (a moved
alias gives a new model version id, so a new pool key): the new engines start first, new
requests switch to them, and the old engines close once their in-flight requests finish (zero
failed requests). A periodic task does the same every ``reload_s``. The request path only reads
a dict; it never touches the database.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from llmloop.core.deployments import DeploymentPublic, DeploymentSpec, GuardRef, TargetSpec
from llmloop.errors import ConfigError, LlmloopError, NotFoundError, UpstreamError
from llmloop.plugins import PluginRegistry
from llmloop.services.actors import Actor
from llmloop.services.deployments import DeploymentService, read_deployments_file
from llmloop.services.gateway.admission import Admission
from llmloop.services.gateway.breaker import CircuitBreaker
from llmloop.services.gateway.cache import ResponseCache
from llmloop.services.gateway.guarding import GuardPipeline
from llmloop.services.gateway.pool import EnginePool
from llmloop.services.gateway.router import DeploymentRuntime, Slot
from llmloop.services.gateway.targets import (
    DirSource,
    ResolvedTarget,
    VersionSource,
    resolve_target,
)

log = logging.getLogger("llmloop.gateway")
FILE_ACTOR = Actor(name="deployments-file", role="admin")
MISS_TTL_S = 1.0


def _at(exc: LlmloopError, place: str) -> LlmloopError:
    """``exc`` with its detail prefixed by the field it is about (same class and status)."""
    exc.detail = f"{place}: {exc.detail}"
    exc.args = (exc.detail,)
    return exc


def _places(spec: DeploymentSpec) -> list[tuple[str, TargetSpec]]:
    """Every target of ``spec`` with its field: targets.0, ..., fallbacks.0, ..., shadow."""
    places = [(f"targets.{i}", t) for i, t in enumerate(spec.targets)]
    places += [(f"fallbacks.{i}", t) for i, t in enumerate(spec.fallbacks)]
    return places + ([("shadow", spec.shadow)] if spec.shadow else [])


class DeploymentChecker:
    """What can be known about a spec without starting anything: each target resolves, its
    engine is known and takes its options (engines check them when built; nothing loads), the
    guards build and the cache config is valid. Blocking: it reads the registry."""

    def __init__(
        self,
        versions: VersionSource,
        dirs: DirSource,
        plugins: PluginRegistry,
        make_guards: Callable[[list[GuardRef]], GuardPipeline] | None = None,
        check_cache: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.versions = versions
        self.dirs = dirs
        self.plugins = plugins
        self.make_guards = make_guards
        self.check_cache = check_cache

    def check(self, spec: DeploymentSpec) -> list[ResolvedTarget]:
        """The resolved targets of ``spec``, in ``_places`` order; the first problem raised."""
        resolved = []
        for place, target in _places(spec):
            try:
                res = resolve_target(target, self.versions, self.dirs)
                self.plugins.resolve("engines", res.engine.kind)(res.engine)
            except LlmloopError as exc:
                raise _at(exc, f"{place} ({target.label})") from None
            resolved.append(res)
        try:
            if spec.guards and self.make_guards is not None:
                self.make_guards(spec.guards)
        except LlmloopError as exc:
            raise _at(exc, "guards") from None
        try:
            if spec.cache is not None and self.check_cache is not None:
                self.check_cache(spec.cache)
        except LlmloopError as exc:
            raise _at(exc, "cache") from None
        return resolved


class DeploymentManager:
    def __init__(
        self,
        deployments: DeploymentService,
        versions: VersionSource,
        dirs: DirSource,
        pool: EnginePool,
        deployments_file: str = "",
        reload_s: float = 10.0,
        make_cache: Callable[[dict[str, Any]], ResponseCache] | None = None,
        make_guards: Callable[[list[GuardRef]], GuardPipeline] | None = None,
        check_cache: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.checker = DeploymentChecker(versions, dirs, pool.plugins, make_guards, check_cache)
        self.make_cache = make_cache
        self.make_guards = make_guards
        self.deployments = deployments
        self.versions = versions
        self.dirs = dirs
        self.pool = pool
        self.deployments_file = deployments_file
        self.reload_s = reload_s
        self.runtimes: dict[str, DeploymentRuntime] = {}
        self._breakers: dict[tuple[str, str], CircuitBreaker] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._misses: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._started = False
        self._start_lock: asyncio.Lock | None = None

    async def start(self) -> None:
        """Load the file and every stored deployment; start the periodic resolver (idempotent)."""
        if self._started:
            return
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._started:
                return
            if self.deployments_file:
                await self._load_file(self.deployments_file)
            for dep in await asyncio.to_thread(self.deployments.list):
                try:
                    await self._install(dep.spec)
                except Exception:
                    log.exception("deployment '%s' could not start", dep.name)
            if self.reload_s > 0:
                self._task = asyncio.get_running_loop().create_task(self._periodic())
            self._started = True

    async def _load_file(self, path: str) -> None:
        """Check every deployment of the file (a mistake stops start-up with its message), then
        store them."""
        specs = await asyncio.to_thread(read_deployments_file, path)
        for i, spec in enumerate(specs):
            try:
                await self.check(spec)
            except LlmloopError as exc:
                raise ConfigError(
                    f"{path}: deployment #{i + 1} ({spec.name}): {exc.detail}"
                ) from None
        try:
            await asyncio.to_thread(self.deployments.apply_many, specs, FILE_ACTOR, "file")
        except Exception:  # another worker applied it at the same time
            log.warning("applying %s raced another process; using the stored deployments", path,
                        exc_info=True)  # fmt: skip

    async def get(self, name: str) -> DeploymentRuntime:
        """The live runtime of ``name`` (loaded on first use); NotFoundError if none."""
        runtime = self.runtimes.get(name)
        if runtime is not None:
            return runtime
        if not self._started:
            await self.start()
            runtime = self.runtimes.get(name)
            if runtime is not None:
                return runtime
        missed = self._misses.get(name)
        if missed is None or time.monotonic() - missed > MISS_TTL_S:
            found = await asyncio.to_thread(self.deployments.find, name)
            if found is not None:
                try:
                    await self._install(found.spec)
                except LlmloopError as exc:  # the server's problem, not the caller's
                    raise UpstreamError(f"deployment '{name}' cannot start: {exc.detail}") from exc
                return self.runtimes[name]
            self._misses[name] = time.monotonic()
        raise NotFoundError(f"The model '{name}' does not exist", param="model")

    async def reload(self, name: str) -> dict[str, str]:
        """Re-read ``name`` from the store and swap its runtime if anything moved."""
        found = await asyncio.to_thread(self.deployments.find, name)
        if found is None:
            await self._remove(name)
            raise NotFoundError(f"no deployment named '{name}'")
        self._misses.pop(name, None)
        runtime = await self._install(found.spec)
        return {s.label: s.resolved.version_id or s.resolved.key for s in runtime.slots()}

    async def check(self, spec: DeploymentSpec) -> list[ResolvedTarget]:
        """Check ``spec`` without starting anything (see :class:`DeploymentChecker`)."""
        return await asyncio.to_thread(self.checker.check, spec)

    async def apply(
        self, spec: DeploymentSpec, actor: Actor, source: str = "api"
    ) -> DeploymentPublic:
        """Check ``spec``, start its engines, then store it and serve it; a spec that cannot
        serve (an engine that does not start, a secret that is not set) is not stored."""
        actor.require("editor")
        resolved = await self.check(spec)
        async with self._lock(spec.name):
            old = self.runtimes.get(spec.name)
            runtime = await self._build(spec, resolved, old)
            try:
                dep = await asyncio.to_thread(self.deployments.apply, spec, actor, source)
            except BaseException:
                self._release(runtime)
                raise
            self._swap(spec.name, runtime, old)
        self._misses.pop(spec.name, None)
        return dep

    async def remove(self, name: str) -> None:
        await self._remove(name)

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    async def _install(self, spec: DeploymentSpec, force: bool = False) -> DeploymentRuntime:
        async with self._lock(spec.name):
            old = self.runtimes.get(spec.name)
            resolved = await asyncio.to_thread(self._resolve_all, spec)
            if old is not None and not force and old.spec == spec and _same(old, resolved):
                return old
            runtime = await self._build(spec, resolved, old)
            self._swap(spec.name, runtime, old)
            return runtime

    def _swap(self, name: str, runtime: DeploymentRuntime, old: DeploymentRuntime | None) -> None:
        """Serve ``runtime`` from now on; ``old``'s engines close after their requests."""
        self.runtimes[name] = runtime
        if old is not None:
            self._release(old)
            log.info("deployment '%s' swapped to %s", name,
                     [s.pooled.key for s in runtime.slots()])  # fmt: skip

    def _release(self, runtime: DeploymentRuntime) -> None:
        for slot in runtime.slots():
            self.pool.release(slot.pooled)

    def _resolve_all(self, spec: DeploymentSpec) -> list[ResolvedTarget]:
        targets = [*spec.targets, *spec.fallbacks, *([spec.shadow] if spec.shadow else [])]
        return [resolve_target(t, self.versions, self.dirs) for t in targets]

    async def _build(
        self, spec: DeploymentSpec, resolved: list[ResolvedTarget], old: DeploymentRuntime | None
    ) -> DeploymentRuntime:
        slots: list[Slot] = []
        try:
            for i, ((place, target), res) in enumerate(zip(_places(spec), resolved, strict=True)):
                try:
                    pooled = await self.pool.acquire(res.key, res.engine)
                except LlmloopError as exc:
                    raise _at(exc, f"{place} ({target.label})") from None
                label = _label(target, i, len(spec.targets), len(spec.fallbacks))
                breaker = self._breakers.setdefault(
                    (spec.name, label), CircuitBreaker(spec.breaker)
                )
                breaker.policy = spec.breaker
                slots.append(Slot(target, label, res, pooled, breaker))
        except BaseException:
            for slot in slots:
                self.pool.release(slot.pooled)
            raise
        try:
            return self._assemble(spec, slots, old)
        except BaseException:
            for slot in slots:
                self.pool.release(slot.pooled)
            raise

    def _assemble(
        self, spec: DeploymentSpec, slots: list[Slot], old: DeploymentRuntime | None
    ) -> DeploymentRuntime:
        n, m = len(spec.targets), len(spec.fallbacks)
        admission = old.admission if old is not None else Admission(spec.name, spec.admission)
        admission.policy = spec.admission
        shadow = slots[n + m] if spec.shadow else None
        cache = None
        if spec.cache is not None and self.make_cache is not None:
            same = old is not None and old.spec.cache == spec.cache and old.cache is not None
            cache = old.cache if same and old is not None else self.make_cache(spec.cache)
        guards = None
        if spec.guards:
            if self.make_guards is None:
                raise ConfigError(f"deployment '{spec.name}' has guards but none can be built")
            guards = self.make_guards(spec.guards)
        return DeploymentRuntime(spec, slots[:n], slots[n : n + m], shadow, admission,
                                 cache=cache, guards=guards)  # fmt: skip

    async def _remove(self, name: str) -> None:
        async with self._lock(name):
            old = self.runtimes.pop(name, None)
            if old is not None:
                self._release(old)

    async def _periodic(self) -> None:
        while True:
            await asyncio.sleep(self.reload_s)
            for name in list(self.runtimes):
                try:
                    await self.reload(name)
                except NotFoundError:
                    pass
                except Exception:
                    log.exception("reloading deployment '%s' failed", name)

    def status(self) -> dict[str, Any]:
        return {name: {s.label: {"key": s.pooled.key, "breaker": s.breaker.state,
                                 "in_flight": s.pooled.in_flight} for s in rt.slots()}
                for name, rt in self.runtimes.items()}  # fmt: skip

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None
        for name in list(self.runtimes):
            await self._remove(name)
        await self.pool.aclose()
        self._started = False


def _label(target: TargetSpec, index: int, n_primary: int, n_fallback: int) -> str:
    if index < n_primary:
        role = "primary"
    elif index < n_primary + n_fallback:
        role = "fallback"
    else:
        role = "shadow"
    return target.name or f"{role}{index}:{target.label}"


def _same(runtime: DeploymentRuntime, resolved: list[ResolvedTarget]) -> bool:
    slots = runtime.slots()
    return len(slots) == len(resolved) and all(
        s.resolved.key == r.key and s.resolved.engine == r.engine
        for s, r in zip(slots, resolved, strict=True)
    )
