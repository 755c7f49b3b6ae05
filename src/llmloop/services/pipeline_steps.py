"""Built-in pipeline steps: each wraps one service use case, with typed inputs and JSON outputs.

Registered under ``pipeline_steps`` by ``llmloop.builtins``; a pipeline YAML names them in
``uses:``. Outputs that are entity ids (``dsv_…``, ``mv_…``, ``run_…``) become lineage edges of
the step's run. Steps hold no logic of their own beyond mapping inputs to a service call.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from llmloop.core.base import JsonDict
from llmloop.errors import InvalidInputError
from llmloop.services.pipelines import StepContext


class StepInputs(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InitBaseStep:
    """Build and pre-train the small local foundation model on a dataset's text."""

    class Inputs(StepInputs):
        dataset: str
        version: int | str = "latest"
        model: str = Field(description="Model name to register the base under.")
        config: JsonDict = Field(default_factory=dict)
        alias: str | None = Field(default="champion", description="Alias to point at it.")

    cache_version: ClassVar[str] = "1"

    def run(self, inputs: Inputs, ctx: StepContext) -> JsonDict:
        c = ctx.container
        mv = c.training.init_base(
            inputs.dataset, inputs.model, ctx.actor, inputs.version, inputs.config
        )
        if inputs.alias:
            c.models.set_alias(inputs.model, inputs.alias, mv.version, ctx.actor)
        return {"model_version": mv.id, "version": mv.version}


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

