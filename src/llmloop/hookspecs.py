"""Plugin hooks. Built-ins register through the same hooks third parties use (``llmloop.builtins``).

A hook receives a ``register`` callable. Targets are ``"module:attribute"`` strings so that
registering imports nothing heavy; the plugin registry imports them on first use.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

hookspec = pluggy.HookspecMarker("llmloop")
hookimpl = pluggy.HookimplMarker("llmloop")

# register(name, target, extra=None): extra names the pip extra that provides the target.
Register = Callable[..., None]


@hookspec
def register_engines(register: Register) -> None:
    """Register Engine factories: ``register("hf", "pkg.mod:HFEngine", extra="hf")``."""


@hookspec
def register_evaluators(register: Register) -> None:
    """Register Evaluator classes by metric or detector name."""


@hookspec
def register_guards(register: Register) -> None:
    """Register Guard classes by name."""


@hookspec
def register_trainers(register: Register) -> None:
    """Register Trainer classes by name (sft, dpo, ...)."""


@hookspec
def register_data_steps(register: Register) -> None:
    """Register cleaning-recipe steps by name."""


@hookspec
def register_pipeline_steps(register: Register) -> None:
    """Register pipeline step kinds by name."""
