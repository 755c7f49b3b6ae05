"""Evaluation: run a suite of evaluators on a model version over a dataset version, record it as
an ``eval`` run (metrics, report artifact, lineage), and gate a candidate against a baseline.

Engines are built from registry versions the same way the gateway builds them (one resolver);
evaluators come from the plugin registry. The suite logic itself lives in
``evaluators/suites.py`` and the gate rules in ``evaluators/gate.py``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel

from llmloop.core.base import JsonDict
from llmloop.core.deployments import TargetSpec
from llmloop.core.runs import MetricPoint, RunCreate, RunInput, RunPublic
from llmloop.engines.base import Engine
from llmloop.errors import ConfigError, InvalidInputError, LlmloopError, NotFoundError
from llmloop.evaluators.gate import GateResult, evaluate_gate
from llmloop.evaluators.suites import (
    Suite,
    SuiteReport,
    load_suite,
    resolve_evaluator,
    run_suite,
)
from llmloop.services.actors import Actor
from llmloop.services.gateway.targets import resolve_target

T = TypeVar("T")
REPORT_ARTIFACT = "eval_report.json"
GATE_ARTIFACT = "gate_result.json"


class EvalOutcome(BaseModel):
    """What an evaluation recorded: the run, the flat metrics and the failed generations."""

    run_id: str
    suite: str
    model: str
    model_version_id: str | None
    dataset_version_id: str
    metrics: dict[str, float]
    failed_samples: int
    evaluator_errors: dict[str, str]


class GateOutcome(BaseModel):
    run_id: str
    passed: bool
    result: dict[str, Any]


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine from synchronous service code (the CLI, pipeline steps)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    raise InvalidInputError("call the async variant from inside an event loop")


class EvaluationService:
    def __init__(self, container: Any) -> None:
        self.c = container
        self._template_versions: dict[str, str] = {}

    async def build_engine(self, model: str, ref: int | str = "champion") -> tuple[Engine, str]:
        """A started engine for a registry model version, and that version's id."""
        target = (
            TargetSpec(model=model, version=int(ref))
            if str(ref).isascii() and str(ref).isdigit()
            else TargetSpec(model=model, alias=str(ref))
        )
        resolved = resolve_target(target, self.c.models, self.c.artifacts)
        engine_cls = self.c.plugins.resolve("engines", resolved.engine.kind)
        engine: Engine = engine_cls(resolved.engine)
        await engine.start()
        return engine, resolved.version_id or ""

    def load_suite(self, source: str | Path | Suite) -> Suite:
        return source if isinstance(source, Suite) else load_suite(source)

    async def evaluate_async(
        self,
        suite: str | Path | Suite,
        model: str,
        dataset: str,
        actor: Actor,
        ref: int | str = "champion",
        dataset_version: int | str = "latest",
        judge: tuple[str, int | str] | None = None,
        limit: int | None = None,
    ) -> EvalOutcome:
        """Generate with the model over the dataset rows, score them, record an eval run."""
        actor.require("editor")
        spec = self.with_registry_templates(self.load_suite(suite))
        for item in spec.evaluators:  # an unknown metric fails before a model is loaded
            resolve_evaluator(self._evaluator_lookup, item.name)
        dv = self.c.datasets.get_version(dataset, dataset_version)
        rows = self.c.datasets.read_rows(dv)[: limit or None]
        engine, version_id = await self.build_engine(model, ref)
        judge_engine = None
        try:
            if judge is not None:
                judge_engine, _ = await self.build_engine(*judge)
            report = await run_suite(
                spec, engine, rows, self._evaluator_lookup, judge_engine=judge_engine
            )
        finally:
            await engine.aclose()
            if judge_engine is not None:
                await judge_engine.aclose()
        return self.record(report, spec, model, version_id, dv.id, actor)

    def evaluate(self, *args: Any, **kwargs: Any) -> EvalOutcome:
        return run_sync(self.evaluate_async(*args, **kwargs))

    async def redteam_async(
        self,
        model: str,
        actor: Actor,
        ref: int | str = "champion",
        categories: list[str] | None = None,
        with_guards: bool = False,
    ) -> JsonDict:
        """Run the red-team catalogue against a model version; record an eval run whose
        metrics are attack-success rates per OWASP LLM 2025 id."""
        from llmloop.evaluators.redteam.runner import run_redteam

        actor.require("editor")
        guards: list[Any] = []
        if with_guards:
            from llmloop.guards.defaults import default_guards

            guards = default_guards()
        engine, version_id = await self.build_engine(model, ref)
        try:
            report = await run_redteam(
                engine, model=engine.spec.model, categories=categories or None, guards=guards
            )
        finally:
            await engine.aclose()
        inputs = [RunInput(id=version_id, role="candidate")] if version_id else []
        run = self.c.runs.create(
            RunCreate(
                name=f"redteam/{model}",
                kind="eval",
                inputs=inputs,
                params={
                    "catalogue": report.catalogue,
                    "version": report.version,
                    "guards": with_guards,
                    "categories": categories or [],
                },
            ),
            actor,
        )
        points = [
            MetricPoint(key="attack_success_rate", value=report.attack_success_rate),
            MetricPoint(key="probe_errors", value=float(report.errors)),
        ]
        points += [
            MetricPoint(key=f"asr.{key}", value=item.attack_success_rate)
            for key, item in report.by_owasp.items()
        ]
        self.c.runs.log_metrics(run.id, points, actor)
        ref_ = self.c.artifacts.put(report.model_dump_json().encode(), name="redteam.json")
        self.c.runs.add_artifact(run.id, "redteam_report.json", ref_, actor)
        self.c.runs.finish(run.id, "finished", actor)
        return {"run_id": run.id, **json.loads(report.model_dump_json())}

    def redteam(self, *args: Any, **kwargs: Any) -> JsonDict:
        return run_sync(self.redteam_async(*args, **kwargs))

    def with_registry_templates(self, suite: Suite) -> Suite:
        """Judge templates may live in the prompt registry (versioned like any prompt):
        ``template_prompt: NAME@LABEL`` in a judge's config is replaced by that version's text
        and recorded in the config as ``template_prompt_version``."""
        evaluators = []
        for item in suite.evaluators:
            ref = item.config.get("template_prompt")
            if ref:
                name, _, label = str(ref).partition("@")
                version = self.c.prompts.get_version(name, label or "production")
                config = {k: v for k, v in item.config.items() if k != "template_prompt"}
                config["template"] = version.template
                item = item.model_copy(update={"config": config})
                self._template_versions[item.key] = version.id
            evaluators.append(item)
        return suite.model_copy(update={"evaluators": evaluators})

    def _evaluator_lookup(self, name: str) -> Any:
        return self.c.plugins.resolve("evaluators", name)

    def record(
        self,
        report: SuiteReport,
        suite: Suite,
        model: str,
        version_id: str,
        dataset_version_id: str,
        actor: Actor,
    ) -> EvalOutcome:
        """Write the eval run: params, metrics, the full report as an artifact, lineage."""
        inputs = [RunInput(id=dataset_version_id, role="eval_data")]
        inputs += [
            RunInput(id=pid, role="judge_template") for pid in self._template_versions.values()
        ]
        self._template_versions.clear()
        if version_id:
            inputs.append(RunInput(id=version_id, role="candidate"))
        run = self.c.runs.create(
            RunCreate(
                name=f"eval/{suite.name}/{model}",
                kind="eval",
                params={"suite": suite.model_dump(mode="json"), "model": model},
                inputs=inputs,
            ),
            actor,
        )
        metrics = report.metrics()
        points = [MetricPoint(key=k, value=v) for k, v in metrics.items() if _finite(v)]
        points.append(MetricPoint(key="failed_samples", value=float(report.n_failed)))
        self.c.runs.log_metrics(run.id, points, actor)
        ref = self.c.artifacts.put(report.model_dump_json().encode(), name=REPORT_ARTIFACT)
        self.c.runs.add_artifact(run.id, REPORT_ARTIFACT, ref, actor)
        self.c.runs.finish(run.id, "finished", actor)
        return EvalOutcome(
            run_id=run.id,
            suite=suite.name,
            model=model,
            model_version_id=version_id or None,
            dataset_version_id=dataset_version_id,
            metrics=metrics,
            failed_samples=report.n_failed,
            evaluator_errors=report.evaluator_errors,
        )

    def report(self, eval_run_id: str) -> SuiteReport:
        """The full suite report stored with an eval run."""
        run = self.c.runs.get(eval_run_id)
        if run.kind != "eval":
            raise InvalidInputError(f"run '{eval_run_id}' is a {run.kind} run, not an eval run")
        raw = self._stored(run, REPORT_ARTIFACT)
        if raw is None:
            raise NotFoundError(f"eval run '{eval_run_id}' has no stored report")
        return load_report(raw)

    def gate_result(self, gate_run_id: str) -> GateResult:
        """How each rule of a gate run went (gate runs recorded before this was kept: 404)."""
        raw = self._stored(self.c.runs.get(gate_run_id), GATE_ARTIFACT)
        if raw is None:
            raise NotFoundError(f"run '{gate_run_id}' has no stored gate result")
        return GateResult.model_validate_json(raw)

    def _stored(self, run: RunPublic, name: str) -> bytes | None:
        """The bytes of the run's artifact called ``name`` (None: it has none)."""
        for item in run.artifacts:
            if item.name == name:
                with self.c.artifacts.open(item.artifact) as fh:
                    return bytes(fh.read())
        return None

    def gate(
        self,
        rules: list[str],
        candidate_run_id: str,
        baseline_run_id: str | None,
        actor: Actor,
        missing_baseline: Literal["skip", "fail"] = "skip",
    ) -> GateOutcome:
        """Check a candidate eval against rules (and a baseline eval); record a gate run. A rule
        that compares to a baseline when none is given is skipped (a first run), or fails."""
        actor.require("editor")
        if not rules:
            raise ConfigError("a gate needs at least one rule, e.g. 'rougeL >= baseline - 0.01'")
        candidate = self.report(candidate_run_id)
        baseline = self.report(baseline_run_id) if baseline_run_id else None
        try:
            result: GateResult = evaluate_gate(rules, candidate, baseline, missing_baseline)
        except (ValueError, LlmloopError) as exc:
            raise ConfigError(f"gate rules: {exc}")
        inputs = [RunInput(id=candidate_run_id, role="candidate_eval")]
        if baseline_run_id:
            inputs.append(RunInput(id=baseline_run_id, role="baseline_eval"))
        run = self.c.runs.create(
            RunCreate(
                name="gate",
                kind="eval",
                params={"rules": rules},
                inputs=inputs,
                tags={"gate": "passed" if result.passed else "failed"},
            ),
            actor,
        )
        self.c.runs.log_metrics(
            run.id, [MetricPoint(key="gate_passed", value=1.0 if result.passed else 0.0)], actor
        )
        # Each rule's values, threshold, test and reason: the verdict alone does not say why.
        ref = self.c.artifacts.put(result.model_dump_json().encode(), name=GATE_ARTIFACT)
        self.c.runs.add_artifact(run.id, GATE_ARTIFACT, ref, actor)
        self.c.runs.finish(run.id, "finished", actor)
        return GateOutcome(
            run_id=run.id, passed=result.passed, result=json.loads(result.model_dump_json())
        )


def load_report(raw: bytes) -> SuiteReport:
    """A stored suite report; scores written as JSON null (NaN and infinities are) read as NaN."""
    data = json.loads(raw)
    for result in (data.get("results") or {}).values():
        maps = [result.get("aggregate")] + [s.get("scores") for s in result.get("samples") or []]
        for scores in maps:
            if isinstance(scores, dict):
                scores.update({k: float("nan") for k, v in scores.items() if v is None})
    return SuiteReport.model_validate(data)


def _finite(value: float) -> bool:
    return value == value and value not in (float("inf"), float("-inf"))
