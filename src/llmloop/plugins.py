"""The plugin manager:
loads the ``llmloop`` entry-point group and resolves registered targets lazily.

Kinds are fixed (engines, evaluators, guards, trainers, data_steps, pipeline_steps). A target that
needs a missing optional extra resolves to :class:`~llmloop.errors.MissingExtraError`, never a bare
ImportError. This module does not build objects; callers do, with their own config.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

import pluggy

from llmloop import hookspecs
from llmloop.errors import MissingExtraError, NotFoundError

KINDS = ("engines", "evaluators", "guards", "trainers", "data_steps", "pipeline_steps")


@dataclass(frozen=True)
class Registration:
    name: str
    target: str | Any
    extra: str | None = None


@dataclass
class PluginRegistry:
    """Name -> registration, per kind; filled from the hooks once."""

    entries: dict[str, dict[str, Registration]] = field(
        default_factory=lambda: {kind: {} for kind in KINDS}
    )

    def names(self, kind: str) -> list[str]:
        return sorted(self.entries[kind])

    def register(self, kind: str, name: str, target: str | Any, extra: str | None = None) -> None:
        self.entries[kind][name] = Registration(name, target, extra)

    def resolve(self, kind: str, name: str) -> Any:
        """Import and return the registered object for ``name``."""
        try:
            reg = self.entries[kind][name]
        except KeyError:
            known = ", ".join(self.names(kind)) or "none"
            raise NotFoundError(f"no {kind[:-1].replace('_', ' ')} named '{name}' (known: {known})")
        if not isinstance(reg.target, str):
            return reg.target
        module_name, _, attr = reg.target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            if reg.extra:
                raise MissingExtraError(reg.extra, f"{kind[:-1]} '{name}'") from exc
            raise
        return getattr(module, attr)


def build_registry(load_entry_points: bool = True, extra_plugins: list[Any] = ()) -> PluginRegistry:  # type: ignore[assignment]
    """A registry filled by the built-ins, installed entry points and ``extra_plugins``."""
    pm = pluggy.PluginManager("llmloop")
    pm.add_hookspecs(hookspecs)
    if load_entry_points:
        pm.load_setuptools_entrypoints("llmloop")
    if pm.get_plugin("builtins") is None and not any(
        getattr(p, "__name__", "") == "llmloop.builtins" for p in pm.get_plugins()
    ):
        from llmloop import builtins

        pm.register(builtins, name="builtins")
    for plugin in extra_plugins:
        pm.register(plugin)
    registry = PluginRegistry()
    for kind in KINDS:
        hook = getattr(pm.hook, f"register_{kind}")

        def _register(
            name: str, target: str | Any, extra: str | None = None, _kind: str = kind
        ) -> None:
            registry.register(_kind, name, target, extra)

        hook(register=_register)
    return registry
