"""Target resolution: a deployment target -> the engine spec and the pool key that serves it.

A registry target (model + alias/version) resolves through the model registry to one immutable
model version; its ``format`` decides the engine: ``echo`` -> echo engine with the params as
options, ``hf``/``peft-lora`` -> hf engine on the materialised artifact, ``openai`` -> openai
engine with ``base_url``/``api_key_env``/``model``. ``params.engine`` picks another engine
(``vllm``, ``llamacpp``) and ``params.engine_options`` adds options. Prices come from
``price_in_per_1k``/``price_out_per_1k``. This module reads the registry; it starts nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson

from llmloop.core.base import ArtifactRef
from llmloop.core.chat import EngineSpec
from llmloop.core.deployments import TargetSpec
from llmloop.core.models import ModelVersionPublic
from llmloop.errors import ConfigError

OPENAI_OPTION_KEYS = ("base_url", "api_key_env", "model", "timeout_s", "connect_timeout_s",
                      "max_connections", "embeddings", "logprobs", "tools",
                      "structured_output", "multimodal")  # fmt: skip


class VersionSource(Protocol):
    """The part of the model service the resolver needs."""

    def get_version(self, name: str, ref: int | str = "latest") -> ModelVersionPublic: ...

    def get_version_by_id(self, version_id: str) -> ModelVersionPublic: ...


class DirSource(Protocol):
    def materialize_dir(self, ref: ArtifactRef, dest: Path | None = None) -> Path: ...


@dataclass(frozen=True)
class ResolvedTarget:
    """What a target means right now: the pool key, the engine spec and its prices."""

    key: str
    engine: EngineSpec
    version_id: str | None
    price_in_per_1k: float
    price_out_per_1k: float


def _price(params: dict[str, Any], name: str) -> float:
    value = params.get(name, 0.0)
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        raise ConfigError(f"'{name}' must be a number, not {value!r}") from None


#: Options of a target (or params of a version) that price its tokens for the gateway.
PRICE_KEYS = ("price_in_per_1k", "price_out_per_1k")


def spec_key(spec: EngineSpec) -> str:
    """A pool key for a direct engine spec: the hash of its canonical JSON."""
    raw = orjson.dumps(spec.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
    return "spec:" + hashlib.sha256(raw).hexdigest()[:24]


def _engine_for_version(
    version: ModelVersionPublic, versions: VersionSource, dirs: DirSource
) -> EngineSpec:
    params = dict(version.params)
    extra = params.get("engine_options") or {}
    if not isinstance(extra, dict):
        raise ConfigError(f"model version {version.id}: 'engine_options' must be a mapping")
    fmt = version.format
    kind = str(params.get("engine") or "")
    if fmt == "echo":
        skip = ("engine", "engine_options", *PRICE_KEYS)
        options = {k: v for k, v in params.items() if k not in skip}
        return EngineSpec(kind=kind or "echo", model=version.base_model or version.model_name,
                          options={**options, **extra})  # fmt: skip
    if fmt == "openai":
        options = {k: params[k] for k in OPENAI_OPTION_KEYS if k in params}
        if "base_url" not in options:
            raise ConfigError(f"model version {version.id} (openai) has no 'base_url' param")
        model = str(params.get("model") or version.base_model or version.model_name)
        return EngineSpec(kind=kind or "openai", model=model, options={**options, **extra})
    if fmt in ("hf", "peft-lora", "gguf"):
        default_kind = {"gguf": "llamacpp"}.get(fmt, "hf")
        local = str(dirs.materialize_dir(version.artifact)) if version.artifact else ""
        if fmt == "peft-lora":
            base = version.base_model
            if base.startswith("mv_"):
                base_version = versions.get_version_by_id(base)
                base = _engine_for_version(base_version, versions, dirs).model
            if not base:
                raise ConfigError(f"model version {version.id} (peft-lora) has no base_model")
            return EngineSpec(kind=kind or default_kind, model=base, adapter=local or None,
                              options=dict(extra))  # fmt: skip
        model = local or version.base_model
        if not model:
            raise ConfigError(f"model version {version.id} has neither artifact nor base_model")
        return EngineSpec(kind=kind or default_kind, model=model, options=dict(extra))
    raise ConfigError(f"model version {version.id}: format '{fmt}' cannot be served")


def resolve_target(target: TargetSpec, versions: VersionSource, dirs: DirSource) -> ResolvedTarget:
    """Resolve ``target`` now (blocking: reads the store, may unpack an artifact)."""
    if target.engine is not None:
        opts = target.engine.options
        engine = target.engine  # the prices are the gateway's, not the engine's options
        if any(k in opts for k in PRICE_KEYS):
            kept = {k: v for k, v in opts.items() if k not in PRICE_KEYS}
            engine = engine.model_copy(update={"options": kept})
        return ResolvedTarget(
            key=spec_key(target.engine), engine=engine, version_id=None,
            price_in_per_1k=_price(opts, "price_in_per_1k"),
            price_out_per_1k=_price(opts, "price_out_per_1k"),
        )  # fmt: skip
    assert target.model is not None
    version = versions.get_version(target.model, target.ref)
    engine = _engine_for_version(version, versions, dirs)
    return ResolvedTarget(
        key=f"{version.id}:{engine.kind}", engine=engine, version_id=version.id,
        price_in_per_1k=_price(version.params, "price_in_per_1k"),
        price_out_per_1k=_price(version.params, "price_out_per_1k"),
    )  # fmt: skip
