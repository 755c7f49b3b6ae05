"""Pipelines (CI/CD for models): run a declarative spec step by step, with typed inputs, caching
by input hash, retries with backoff, a run record per step and lineage to what each step made.

A step kind is a class registered under ``pipeline_steps`` (built-ins in
``services/pipeline_steps.py``); it declares ``Inputs`` (pydantic) and implements
``run(inputs, ctx) -> dict`` of JSON outputs. Ray execution and triggers live elsewhere; this
module runs one pipeline in the calling process.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Protocol

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from llmloop.core.base import JsonDict
from llmloop.core.ids import entity_of
from llmloop.core.pipelines import (
    REF,
    PipelineSpec,
    StepSpec,
    order_steps,
    references,
    resolve,
)
from llmloop.core.runs import RunCreate, RunInput
from llmloop.errors import ConfigError, InvalidInputError, LlmloopError, NotFoundError
from llmloop.services.actors import Actor
from llmloop.store import tables as t
from llmloop.store.registry import Store, utcnow

log = logging.getLogger("llmloop.pipelines")
NOT_RETRYABLE = (ConfigError, InvalidInputError)


@dataclass
class StepContext:
    """What a step may use: the container (services), the actor, its run id and a log."""

    container: Any
    actor: Actor
    run_id: str
    pipeline: str
    step_id: str
    workdir: Path
    messages: list[str] = field(default_factory=list)

    def log(self, message: str) -> None:
        self.messages.append(message)
        log.info("[%s/%s] %s", self.pipeline, self.step_id, message)


class PipelineStep(Protocol):
    Inputs: ClassVar[type[BaseModel]]
    #: Bump when the step's behaviour changes, so cached results are not reused.
    cache_version: ClassVar[str]

    def run(self, inputs: Any, ctx: StepContext) -> JsonDict: ...


# A step may also have ``fingerprint(inputs, container) -> JsonDict`` (what its inputs name now,
# part of the cache key) and ``reapply(inputs, outputs, ctx) -> None``: on a cache hit, put back
# an effect the cached result stands for (an alias) where it was undone since.


@dataclass
class StepReport:
    id: str
    uses: str
    status: str  # ran | cached | failed | skipped
    run_id: str | None
    outputs: JsonDict
    attempts: int = 0
    seconds: float = 0.0
    error: str | None = None


@dataclass
class PipelineReport:
    pipeline: str
    run_id: str
    status: str
    steps: list[StepReport]

    def to_dict(self) -> JsonDict:
        return {
            "pipeline": self.pipeline,
            "run_id": self.run_id,
            "status": self.status,
            "steps": [s.__dict__ for s in self.steps],
        }


def load_pipeline(path: str | Path) -> PipelineSpec:
    """Parse a pipeline YAML file; every problem is a ConfigError naming the file."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"pipeline file {p} does not exist")
    except IsADirectoryError:
        raise ConfigError(f"{p} is a folder, not a pipeline file")
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not UTF-8 text")
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}")
    if not isinstance(data, dict):
        found = "an empty file" if data is None else f"a {type(data).__name__}"
        raise ConfigError(f"{p}: a pipeline is a mapping with 'name' and 'steps', not {found}")
    try:
        return PipelineSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{p}: {_errors(exc, data.get('steps'))}")
    except ConfigError as exc:  # the step graph: duplicate ids, unknown references, a cycle
        raise ConfigError(f"{p}: {exc.detail}")


def cache_key(
    spec_name: str, step: StepSpec, kind: Any, inputs: BaseModel, sources: JsonDict | None = None
) -> str:
    """The step's cache key: its literal inputs and, when the kind has a ``fingerprint``, what
    they name now (``sources``: file digests, the versions ``latest`` and aliases point at)."""
    payload = {
        "pipeline": spec_name,
        "step": step.id,
        "uses": step.uses,
        "version": getattr(kind, "cache_version", "1"),
        "inputs": inputs.model_dump(mode="json"),
    }
    if sources:
        payload["sources"] = sources
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def step_sources(kind: Any, inputs: BaseModel, container: Any) -> JsonDict:
    """What a step's inputs name at this moment (see ``cache_key``); a name that cannot be
    resolved yet gives a key no earlier run has, and the step itself reports the problem."""
    fingerprint = getattr(kind, "fingerprint", None)
    if fingerprint is None:
        return {}
    try:
        return dict(fingerprint(inputs, container))
    except (LlmloopError, OSError, ValueError) as exc:
        return {"unresolved": f"{type(exc).__name__}: {exc}"}


def check_params(spec: PipelineSpec, params: JsonDict) -> None:
    """Refuse a ``--param`` the pipeline neither declares nor uses (a typo would be ignored)."""
    text = json.dumps([step.with_ for step in spec.steps], default=str)
    used = set(spec.params) | {found[3] for found in REF.findall(text) if found[3]}
    unknown = sorted(set(params) - used)
    if unknown:
        known = ", ".join(sorted(used)) or "none"
        raise ConfigError(
            f"pipeline '{spec.name}' has no parameter {', '.join(unknown)} (it has: {known})"
        )
    given = set(spec.params) | set(params)
    for step in spec.steps:
        text = json.dumps(step.with_, default=str)
        missing = sorted({found[3] for found in REF.findall(text) if found[3]} - given)
        if missing:
            raise ConfigError(
                f"step '{step.id}' ({step.uses}): uses parameter {', '.join(missing)}, which "
                f"the pipeline's params do not declare (declare it or pass --param NAME=VALUE)"
            )


class PipelineService:
    def __init__(self, store: Store, container: Any, resolve_step: Callable[[str], Any]) -> None:
        self.store = store
        self.container = container
        self.resolve_step = resolve_step

    def check(self, spec: PipelineSpec, params: JsonDict | None = None) -> list[StepSpec]:
        """The steps in execution order, once every kind is known, every ``with`` key is an
        input of its kind, every required input and parameter has a value and every value that
        names no step output has the input's type: what ``run`` would refuse, found without
        running anything."""
        check_params(spec, params or {})
        merged = {**spec.params, **(params or {})}
        for step in spec.steps:
            self._check_step(step, merged)
        return order_steps(spec)

    def _check_step(self, step: StepSpec, params: JsonDict) -> None:
        fields = self._kind(step).Inputs.model_fields
        where = f"step '{step.id}' ({step.uses})"
        unknown = sorted(set(step.with_) - set(fields))
        if unknown:
            raise ConfigError(
                f"{where}: unknown input(s) {', '.join(unknown)}; it takes {', '.join(fields)}"
            )
        missing = [n for n, f in fields.items() if f.is_required() and n not in step.with_]
        if missing:
            raise ConfigError(f"{where}: {', '.join(missing)}: Field required")
        for name, value in step.with_.items():
            if references(value):
                continue  # known once the step it names has run
            info = fields[name]
            field_type: Any = Annotated[info.annotation, info]  # the type with its constraints
            adapter: TypeAdapter[Any] = TypeAdapter(field_type)
            try:
                adapter.validate_python(resolve(value, {}, params))
            except ValidationError as exc:
                raise ConfigError(f"{where}: {_errors(exc, prefix=(name,))}")

    def _kind(self, step: StepSpec) -> Any:
        """The step kind ``uses`` names; an unknown one is a ConfigError naming the step."""
        try:
            return self.resolve_step(step.uses)
        except NotFoundError as exc:
            raise ConfigError(f"step '{step.id}': {exc.detail}")

    def run(
        self,
        spec: PipelineSpec,
        actor: Actor,
        params: JsonDict | None = None,
        trigger: str = "manual",
        sleep: Callable[[float], None] = time.sleep,
    ) -> PipelineReport:
        actor.require("editor")
        self.check(spec, params)  # unknown kinds, inputs and parameters: before any record
        merged = {**spec.params, **(params or {})}
        runs = self.container.runs
        parent = runs.create(
            RunCreate(name=spec.name, kind="pipeline", params=merged, tags={"trigger": trigger}),
            actor,
        )
        outputs: dict[str, JsonDict] = {}
        reports: list[StepReport] = []
        status = "finished"
        for step in order_steps(spec):
            if status != "finished":
                reports.append(StepReport(step.id, step.uses, "skipped", None, {}))
                continue
            try:
                report = self._run_step(spec, step, merged, outputs, parent.id, actor, sleep)
            except BaseException as exc:  # Ctrl-C too: no run is left 'running' for ever
                runs.finish(parent.id, _ended(exc), actor)
                raise
            reports.append(report)
            if report.status == "failed":
                status = "failed"
            else:
                outputs[step.id] = report.outputs
        runs.finish(parent.id, status, actor)
        return PipelineReport(spec.name, parent.id, status, reports)

    def _run_step(
        self,
        spec: PipelineSpec,
        step: StepSpec,
        params: JsonDict,
        outputs: dict[str, JsonDict],
        parent_id: str,
        actor: Actor,
        sleep: Callable[[float], None],
    ) -> StepReport:
        kind = self._kind(step)
        try:
            inputs = kind.Inputs.model_validate(resolve(step.with_, outputs, params))
        except ValidationError as exc:
            raise ConfigError(f"step '{step.id}' ({step.uses}): {_errors(exc)}")
        except ConfigError as exc:  # a reference to an output the earlier step did not give
            raise ConfigError(f"step '{step.id}' ({step.uses}): {exc.detail}")
        key = cache_key(spec.name, step, kind, inputs, step_sources(kind, inputs, self.container))
        if step.cache and getattr(kind, "cacheable", True):
            with self.store.read() as tx:
                hit = tx.get(t.pipeline_cache, cache_key=key)
            if hit is not None:
                log.info(
                    "[%s/%s] unchanged inputs: cached (run %s)", spec.name, step.id, hit["run_id"]
                )
                self.container.runs.add_inputs(
                    parent_id, [RunInput(id=hit["run_id"], role="cached")], actor
                )
                reapply = getattr(kind, "reapply", None)
                if reapply is not None:  # an effect on the registry moved by hand since
                    ctx = StepContext(self.container, actor, hit["run_id"], spec.name, step.id,
                                      self.container.settings.home)  # fmt: skip
                    reapply(inputs, hit["outputs"], ctx)
                return StepReport(step.id, step.uses, "cached", hit["run_id"], hit["outputs"])
        runs = self.container.runs
        run = runs.create(
            RunCreate(
                name=f"{spec.name}/{step.id}",
                kind="step",
                parent_id=parent_id,
                params=inputs.model_dump(mode="json"),
                tags={"uses": step.uses, "cache_key": key},
            ),
            actor,
        )
        workdir = self.container.settings.home / "pipelines" / spec.name / step.id / run.id
        workdir.mkdir(parents=True, exist_ok=True)
        ctx = StepContext(self.container, actor, run.id, spec.name, step.id, workdir)
        started, attempts, error = time.monotonic(), 0, None
        while True:
            attempts += 1
            try:
                result = kind().run(inputs, ctx)
                break
            except (KeyboardInterrupt, SystemExit) as exc:
                runs.finish(run.id, _ended(exc), actor)
                raise
            except NOT_RETRYABLE as exc:
                error = f"{type(exc).__name__}: {exc}"
            except Exception as exc:  # a step may fail in any way; retried, then recorded
                error = f"{type(exc).__name__}: {exc}"
                if attempts <= step.retries:
                    ctx.log(f"attempt {attempts} failed ({error}); retrying")
                    sleep(step.retry_backoff_s * 2 ** (attempts - 1))
                    continue
            runs.log_params(run.id, {"error": error, "attempts": attempts}, actor)
            runs.finish(run.id, "failed", actor)
            return StepReport(
                step.id,
                step.uses,
                "failed",
                run.id,
                {},
                attempts,
                time.monotonic() - started,
                error,
            )
        result = json.loads(json.dumps(result, default=str))
        runs.log_params(run.id, {"outputs": result, "attempts": attempts}, actor)
        runs.finish(run.id, "finished", actor)
        with self.store.transaction() as tx:
            for value in result.values():
                if isinstance(value, str) and entity_of(value) and value != run.id:
                    tx.add_edge(run.id, value, "step_output")
            if tx.get(t.pipeline_cache, cache_key=key) is None:
                tx.insert(
                    t.pipeline_cache,
                    {
                        "cache_key": key,
                        "pipeline": spec.name,
                        "step_id": step.id,
                        "run_id": run.id,
                        "outputs": result,
                        "created_at": utcnow(),
                    },
                )
        return StepReport(
            step.id, step.uses, "ran", run.id, result, attempts, time.monotonic() - started
        )


def _ended(exc: BaseException) -> str:
    """The final status of a run an exception ended: killed when interrupted, else failed."""
    return "killed" if isinstance(exc, KeyboardInterrupt | SystemExit) else "failed"


def _errors(exc: ValidationError, steps: Any = None, prefix: tuple[str, ...] = ()) -> str:
    """pydantic's errors in one line; a location inside ``steps`` names the step by its id."""
    return "; ".join(f"{_where((*prefix, *e['loc']), steps)}: {e['msg']}" for e in exc.errors()[:5])


def _where(loc: tuple[int | str, ...], steps: Any) -> str:
    """``steps.2.retries`` -> ``step 'train' (finetune): retries``."""
    if len(loc) < 2 or loc[0] != "steps" or not isinstance(loc[1], int):
        return ".".join(str(p) for p in loc) or "value"
    raw = steps[loc[1]] if isinstance(steps, list) and loc[1] < len(steps) else None
    raw = raw if isinstance(raw, dict) else {}
    name = f"step '{raw['id']}'" if isinstance(raw.get("id"), str) else f"step {loc[1] + 1}"
    if isinstance(raw.get("uses"), str):
        name += f" ({raw['uses']})"
    rest = ".".join(str(p) for p in loc[2:])
    return f"{name}: {rest}" if rest else name
