"""Pipeline specs: a declarative list of typed steps with references between their outputs.

A step's ``with`` values may reference earlier outputs as ``${{ steps.<id>.outputs.<name> }}`` or
pipeline parameters as ``${{ params.<name> }}``. This module parses and orders specs; running
them (caching, retries, records) is the pipeline service's job.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, model_validator

from llmloop.core.base import JsonDict, Value
from llmloop.errors import ConfigError

REF = re.compile(
    r"\$\{\{\s*(steps\.([A-Za-z0-9_-]+)\.outputs\.([A-Za-z0-9_]+)|params\.([A-Za-z0-9_]+))\s*\}\}"
)


class Trigger(Value):
    kind: Literal["manual", "schedule", "alert", "drift", "dataset_version"] = "manual"
    cron: str | None = Field(default=None, description="For schedule: a cron expression.")
    every_s: float | None = Field(default=None, gt=0, description="For schedule: a period.")
    target: str | None = Field(default=None, description="Alert rule, deployment or dataset name.")


class StepSpec(Value):
    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    uses: str = Field(description="Step kind: ingest, clean, split, finetune, eval, gate, ...")
    with_: JsonDict = Field(default_factory=dict, alias="with")
    retries: int = Field(default=0, ge=0, le=10)
    retry_backoff_s: float = Field(default=1.0, ge=0, le=600)
    cache: bool = Field(default=True, description="Skip when inputs are unchanged.")
    needs: list[str] = Field(default_factory=list, description="Extra ordering dependencies.")

    model_config = {"frozen": True, "extra": "forbid", "populate_by_name": True}


class PipelineSpec(Value):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
    description: str = ""
    params: JsonDict = Field(default_factory=dict)
    triggers: list[Trigger] = Field(default_factory=lambda: [Trigger()])
    steps: list[StepSpec] = Field(min_length=1)
    backend: Literal["local", "ray"] = "local"

    @model_validator(mode="after")
    def _check_graph(self) -> PipelineSpec:
        order_steps(self)
        return self


def references(value: Any) -> list[tuple[str, str]]:
    """(step id, output name) pairs referenced anywhere inside ``value``."""
    found: list[tuple[str, str]] = []
    if isinstance(value, str):
        found += [(m.group(2), m.group(3)) for m in REF.finditer(value) if m.group(2)]
    elif isinstance(value, dict):
        for item in value.values():
            found += references(item)
    elif isinstance(value, list):
        for item in value:
            found += references(item)
    return found


def order_steps(spec: PipelineSpec) -> list[StepSpec]:
    """Steps in a valid execution order; unknown references and cycles are ConfigErrors."""
    by_id: dict[str, StepSpec] = {}
    for step in spec.steps:
        if step.id in by_id:
            raise ConfigError(f"pipeline '{spec.name}': duplicate step id '{step.id}'")
        by_id[step.id] = step
    deps: dict[str, set[str]] = {}
    for step in spec.steps:
        wanted = {sid for sid, _ in references(step.with_)} | set(step.needs)
        unknown = sorted(wanted - set(by_id))
        if unknown:
            raise ConfigError(f"step '{step.id}' refers to unknown steps: {', '.join(unknown)}")
        deps[step.id] = wanted
    ordered: list[StepSpec] = []
    done: set[str] = set()
    while len(ordered) < len(by_id):
        ready = [s for s in spec.steps if s.id not in done and deps[s.id] <= done]
        if not ready:
            stuck = sorted(set(by_id) - done)
            raise ConfigError(f"pipeline '{spec.name}' has a cycle among: {', '.join(stuck)}")
        for step in ready:
            ordered.append(step)
            done.add(step.id)
    return ordered


def resolve(value: Any, outputs: dict[str, JsonDict], params: JsonDict) -> Any:
    """Substitute references; a whole-string reference keeps the output's type."""
    if isinstance(value, dict):
        return {k: resolve(v, outputs, params) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, outputs, params) for v in value]
    if not isinstance(value, str):
        return value

    def lookup(m: re.Match[str]) -> Any:
        if m.group(4):
            if m.group(4) not in params:
                raise ConfigError(f"unknown pipeline parameter '{m.group(4)}'")
            return params[m.group(4)]
        step, name = m.group(2), m.group(3)
        if name not in outputs.get(step, {}):
            known = ", ".join(sorted(outputs.get(step, {}))) or "none"
            raise ConfigError(f"step '{step}' has no output '{name}' (it has: {known})")
        return outputs[step][name]

    whole = REF.fullmatch(value.strip())
    if whole:
        return lookup(whole)
    return REF.sub(lambda m: str(lookup(m)), value)
