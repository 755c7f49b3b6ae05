"""Built-in pipeline steps: each wraps one service use case, with typed inputs and JSON outputs.

Registered under ``pipeline_steps`` by ``llmloop.builtins``; a pipeline YAML names them in
``uses:``. Outputs that are entity ids (``dsv_…``, ``mv_…``, ``run_…``) become lineage edges of
the step's run. Steps hold no logic of their own beyond mapping inputs to a service call.

A step whose result depends on more than its literal inputs (a file's content, the version that
``latest`` or an alias names now) says so in ``fingerprint``; that goes into its cache key, so an
edited file or a new dataset version runs the step again instead of serving a stale result.
Steps that register dataset versions give back an identical existing version on a rerun.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from llmloop.core.base import JsonDict
from llmloop.errors import InvalidInputError, NotFoundError
from llmloop.services.pipelines import StepContext


class StepInputs(BaseModel):
    model_config = ConfigDict(extra="forbid")


def dataset_ref(container: Any, name: str, ref: int | str) -> str:
    """The id of the dataset version ``ref`` names now."""
    return str(container.datasets.get_version(name, ref).id)


def model_ref(container: Any, name: str, ref: int | str) -> str:
    """The id of the model version ``ref`` (a number, ``latest`` or an alias) names now."""
    return str(container.models.get_version(name, ref).id)


def file_digest(path: str) -> str | None:
    """sha256 of a local file's bytes; None when ``path`` is not one (inline YAML, a URL)."""
    try:
        target = Path(path)
        return hashlib.sha256(target.read_bytes()).hexdigest() if target.is_file() else None
    except (OSError, ValueError):
        return None


def ensure_alias(ctx: StepContext, model: str, alias: str, version: int) -> None:
    """Point ``alias`` of ``model`` at ``version`` unless it already does: a cached step that
    moved an alias stands for that alias, so one moved by hand since is moved back (with the
    audit entry and approval rules of any move)."""
    try:
        current: int | None = ctx.container.models.get_version(model, alias).version
    except NotFoundError:
        current = None
    if current == version:
        return
    ctx.container.models.set_alias(model, alias, version, ctx.actor)
    was = f"v{current}" if current is not None else "nothing"
    ctx.log(f"{model}@{alias} pointed at {was}: moved back to v{version}")


class InitBaseStep:
    """Build and pre-train the small local foundation model on a dataset's text."""

    class Inputs(StepInputs):
        dataset: str
        version: int | str = "latest"
        model: str = Field(description="Model name to register the base under.")
        config: JsonDict = Field(default_factory=dict)
        alias: str | None = Field(default="champion", description="Alias to point at it.")

    cache_version: ClassVar[str] = "1"

    @staticmethod
    def fingerprint(inputs: Inputs, container: Any) -> JsonDict:
        return {"dataset": dataset_ref(container, inputs.dataset, inputs.version)}

    def run(self, inputs: Inputs, ctx: StepContext) -> JsonDict:
        c = ctx.container
        mv = c.training.init_base(
            inputs.dataset, inputs.model, ctx.actor, inputs.version, inputs.config
        )
        if inputs.alias:
            c.models.set_alias(inputs.model, inputs.alias, mv.version, ctx.actor)
        return {"model_version": mv.id, "version": mv.version}

    @staticmethod
    def reapply(inputs: Inputs, outputs: JsonDict, ctx: StepContext) -> None:
        if inputs.alias and isinstance(outputs.get("version"), int):
            ensure_alias(ctx, inputs.model, inputs.alias, outputs["version"])


class FinetuneStep:
    """SFT (LoRA or full) or DPO of a registry version on a dataset version."""

    class Inputs(StepInputs):
        base: str
        base_ref: int | str = "champion"
        dataset: str
        version: int | str = "latest"
        eval_dataset: str | None = None
        eval_version: int | str = "latest"
        out: str
        method: str = "sft"
        config: JsonDict = Field(default_factory=dict)

    cache_version: ClassVar[str] = "1"

    @staticmethod
    def fingerprint(inputs: Inputs, container: Any) -> JsonDict:
        found = {
            "base": model_ref(container, inputs.base, inputs.base_ref),
            "dataset": dataset_ref(container, inputs.dataset, inputs.version),
        }
        if inputs.eval_dataset:
            found["eval"] = dataset_ref(container, inputs.eval_dataset, inputs.eval_version)
        return found

    def run(self, inputs: Inputs, ctx: StepContext) -> JsonDict:
        mv = ctx.container.training.finetune(
            inputs.base,
            inputs.dataset,
            inputs.out,
            ctx.actor,
            base_ref=inputs.base_ref,
            version=inputs.version,
            eval_dataset=inputs.eval_dataset,
            eval_version=inputs.eval_version,
            config=inputs.config,
            method=inputs.method,
        )
        return {"model_version": mv.id, "version": mv.version, "run": mv.run_id or ""}


class EvalStep:
    """Run an evaluation suite on a model version over a dataset version."""

    class Inputs(StepInputs):
        suite: str = Field(description="Path to the suite YAML.")
        model: str
        ref: int | str = "champion"
        dataset: str
        version: int | str = "latest"
        limit: int | None = None

    cache_version: ClassVar[str] = "1"

    @staticmethod
    def fingerprint(inputs: Inputs, container: Any) -> JsonDict:
        return {
            "suite": file_digest(inputs.suite),
            "model": model_ref(container, inputs.model, inputs.ref),
            "dataset": dataset_ref(container, inputs.dataset, inputs.version),
        }

    def run(self, inputs: Inputs, ctx: StepContext) -> JsonDict:
        out = ctx.container.evaluation.evaluate(
            inputs.suite,
            inputs.model,
            inputs.dataset,
            ctx.actor,
            ref=inputs.ref,
            dataset_version=inputs.version,
            limit=inputs.limit,
        )
        return {"eval_run": out.run_id, "metrics": out.metrics}


class GateStep:
    """Check a candidate eval against rules and a baseline eval; fails the pipeline on 'no'."""

    class Inputs(StepInputs):
        candidate: str = Field(description="Eval run id of the candidate.")
        baseline: str | None = None
        rules: list[str] = Field(min_length=1)
        fail_pipeline: bool = Field(default=False, description="Raise when the gate fails.")

    cache_version: ClassVar[str] = "1"

    def run(self, inputs: Inputs, ctx: StepContext) -> JsonDict:
        out = ctx.container.evaluation.gate(
            inputs.rules, inputs.candidate, inputs.baseline, ctx.actor
        )
        if not out.passed and inputs.fail_pipeline:
            raise InvalidInputError(f"gate failed: {out.result}")
        return {"passed": out.passed, "gate_run": out.run_id}


class PromoteStep:
    """Point an alias at a version when a condition holds (e.g. a gate passed)."""

    class Inputs(StepInputs):
        model: str
        version: int
        alias: str = "champion"
        when: bool = True

    cache_version: ClassVar[str] = "1"

    def run(self, inputs: Inputs, ctx: StepContext) -> JsonDict:
        if not inputs.when:
            ctx.log(f"condition false: {inputs.alias} not moved")
            return {"promoted": False}
        ctx.container.models.set_alias(inputs.model, inputs.alias, inputs.version, ctx.actor)
        return {"promoted": True}

    @staticmethod
    def reapply(inputs: Inputs, outputs: JsonDict, ctx: StepContext) -> None:
        if outputs.get("promoted"):
            ensure_alias(ctx, inputs.model, inputs.alias, inputs.version)


class IngestStep:
    """Read a file (any fsspec URL) into a new dataset version."""

    class Inputs(StepInputs):
        source: str
        dataset: str
        options: JsonDict = Field(default_factory=dict)

    cache_version: ClassVar[str] = "1"

    @staticmethod
    def fingerprint(inputs: Inputs, container: Any) -> JsonDict:
        from llmloop.data.loaders import source_fingerprint

        storage = inputs.options.get("storage_options") or {}
        return {"source": source_fingerprint(inputs.source, storage)}

    def run(self, inputs: Inputs, ctx: StepContext) -> JsonDict:
        version, report = ctx.container.data.ingest(
            inputs.source, inputs.dataset, ctx.actor, inputs.options, reuse=True
        )
        return {
            "dataset_version": version.id,
            "version": version.version,
            "rows": version.row_count,
            "skipped": report.rows_skipped,
        }


class CleanStep:
    """Apply a cleaning recipe to a dataset version."""

    class Inputs(StepInputs):
        dataset: str
        recipe: str | JsonDict
        version: int | str = "latest"

    cache_version: ClassVar[str] = "1"

    @staticmethod
    def fingerprint(inputs: Inputs, container: Any) -> JsonDict:
        recipe = file_digest(inputs.recipe) if isinstance(inputs.recipe, str) else None
        return {"dataset": dataset_ref(container, inputs.dataset, inputs.version), "recipe": recipe}

    def run(self, inputs: Inputs, ctx: StepContext) -> JsonDict:
        version, report = ctx.container.data.clean(
            inputs.dataset, inputs.recipe, ctx.actor, inputs.version, reuse=True
        )
        return {
            "dataset_version": version.id,
            "version": version.version,
            "rows_in": report.rows_in,
            "rows_out": report.rows_out,
        }


class SplitStep:
    """Split a dataset version into <dataset>-<split> datasets."""

    class Inputs(StepInputs):
        dataset: str
        version: int | str = "latest"
        config: JsonDict = Field(default_factory=dict)

    cache_version: ClassVar[str] = "1"

    @staticmethod
    def fingerprint(inputs: Inputs, container: Any) -> JsonDict:
        return {"dataset": dataset_ref(container, inputs.dataset, inputs.version)}

    def run(self, inputs: Inputs, ctx: StepContext) -> JsonDict:
        made, report = ctx.container.data.split(
            inputs.dataset, ctx.actor, inputs.version, inputs.config, reuse=True
        )
        out: JsonDict = {f"{name}_dataset": v.dataset_name for name, v in made.items()}
        out.update({f"{name}_version": v.id for name, v in made.items()})
        out["leaks"] = report["leakage"]["exact"] + report["leakage"]["near"]
        return out


class CurateStep:
    """Turn traces with feedback into an SFT or DPO dataset version (PII scrubbed)."""

    class Inputs(StepInputs):
        spec: JsonDict = Field(description="A curation request (see `llmloop curate`).")

    cache_version: ClassVar[str] = "1"
    #: The traces change while the inputs stay the same: never reuse a cached result.
    cacheable: ClassVar[bool] = False

    def run(self, inputs: Inputs, ctx: StepContext) -> JsonDict:
        from llmloop.core.feedback import CurateCreate

        result = ctx.container.curation.curate(CurateCreate.model_validate(inputs.spec), ctx.actor)
        return {"dataset": result.dataset, "version": result.version, "rows": result.rows}


class DeployCanaryStep:
    """Put a version on a canary slice of a deployment (challenger alias)."""

    class Inputs(StepInputs):
        deployment: str
        model: str
        version: int
        weight: float = 0.2
        when: bool = True

    cache_version: ClassVar[str] = "1"

    def run(self, inputs: Inputs, ctx: StepContext) -> JsonDict:
        if not inputs.when:
            ctx.log("condition false: no canary")
            return {"canary": False}
        ctx.container.rollout.start_canary(
            inputs.deployment, inputs.model, inputs.version, ctx.actor, inputs.weight
        )
        return {"canary": True}


class PromoteOrRollbackStep:
    """Judge the canary on live feedback since it started; promote or roll back."""

    class Inputs(StepInputs):
        deployment: str
        model: str
        since: str = Field(default="1h", description="Window start: 30m, 2h or ISO time.")
        min_requests: int = 20
        margin: float = 0.0
        approver: str | None = Field(default=None, description="Second admin for approvals.")

    cache_version: ClassVar[str] = "1"
    #: The decision rests on live feedback, which changes while the inputs stay the same.
    cacheable: ClassVar[bool] = False

    def run(self, inputs: Inputs, ctx: StepContext) -> JsonDict:
        from llmloop.core.monitoring import parse_since
        from llmloop.services.actors import Actor

        svc = ctx.container.rollout
        decision = svc.evaluate(
            inputs.deployment,
            inputs.model,
            parse_since(inputs.since),
            inputs.min_requests,
            inputs.margin,
        )
        approver = Actor(inputs.approver, "admin") if inputs.approver else None
        decision = svc.apply(decision, ctx.actor, approver)
        return {
            "decision": decision.decision,
            "reason": decision.reason,
            "decision_run": decision.run_id or "",
        }


class WatchStep:
    """Wait until a deployment has served enough rated requests (or time runs out) and report
    its live metrics; the next step decides on them."""

    class Inputs(StepInputs):
        deployment: str
        since: str = "1h"
        min_requests: int = Field(default=20, ge=1)
        timeout_s: float = Field(default=600.0, ge=0, le=86_400)
        poll_s: float = Field(default=5.0, gt=0, le=600)

    cache_version: ClassVar[str] = "1"
    cacheable: ClassVar[bool] = False

    def run(self, inputs: Inputs, ctx: StepContext) -> JsonDict:
        import time

        from llmloop.core.monitoring import parse_since

        since = parse_since(inputs.since)
        deadline = time.monotonic() + inputs.timeout_s
        while True:
            rows = ctx.container.monitoring.summary(since, deployment=inputs.deployment)
            requests = sum(r.requests for r in rows)
            if requests >= inputs.min_requests or time.monotonic() >= deadline:
                break
            time.sleep(inputs.poll_s)
        row = rows[0] if rows else None
        return {
            "requests": requests,
            "enough": requests >= inputs.min_requests,
            "error_rate": row.error_rate if row else 0.0,
            "feedback_mean": row.feedback_mean if row else None,
        }


class HpoStep:
    """An Optuna search whose best trial becomes a model version."""

    class Inputs(StepInputs):
        base: str
        base_ref: int | str = "champion"
        dataset: str
        eval_dataset: str
        out: str
        search: JsonDict = Field(default_factory=dict)
        space: JsonDict = Field(default_factory=dict)
        config: JsonDict = Field(default_factory=dict)

    cache_version: ClassVar[str] = "1"

    @staticmethod
    def fingerprint(inputs: Inputs, container: Any) -> JsonDict:
        return {
            "base": model_ref(container, inputs.base, inputs.base_ref),
            "dataset": dataset_ref(container, inputs.dataset, "latest"),
            "eval": dataset_ref(container, inputs.eval_dataset, "latest"),
        }

    def run(self, inputs: Inputs, ctx: StepContext) -> JsonDict:
        version, summary = ctx.container.training.tune(
            inputs.base,
            inputs.dataset,
            inputs.eval_dataset,
            inputs.out,
            ctx.actor,
            base_ref=inputs.base_ref,
            search=inputs.search,
            space=inputs.space,
            config=inputs.config,
        )
        return {
            "model_version": version.id,
            "version": version.version,
            "best_params": summary["best_params"],
        }


class RegisterStep:
    """Register weights from a local directory (or a hub id / path reference) as a version."""

    class Inputs(StepInputs):
        model: str
        path: str | None = Field(default=None, description="Local model directory to store.")
        base_model: str = ""
        format: str = "hf"
        params: JsonDict = Field(default_factory=dict)

    cache_version: ClassVar[str] = "1"

    @staticmethod
    def fingerprint(inputs: Inputs, container: Any) -> JsonDict:
        from llmloop.data.loaders import source_fingerprint

        return {"path": source_fingerprint(inputs.path) if inputs.path else None}

    def run(self, inputs: Inputs, ctx: StepContext) -> JsonDict:
        from llmloop.core.models import ModelVersionCreate

        artifact = None
        if inputs.path is not None:
            path = Path(inputs.path)
            if not path.is_dir():
                raise InvalidInputError(f"{path} is not a model directory")
            artifact = ctx.container.artifacts.put_dir(path)
        spec = ModelVersionCreate.model_validate(
            {
                "base_model": inputs.base_model,
                "format": inputs.format,
                "artifact": artifact,
                "params": inputs.params,
                "run_id": ctx.run_id,
            }
        )
        version = ctx.container.models.create_version(inputs.model, spec, ctx.actor)
        return {"model_version": version.id, "version": version.version}
