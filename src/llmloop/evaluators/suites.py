"""Evaluation suites: a declarative recipe (YAML) that generates answers and runs evaluators.

One concept: one repeatable evaluation run. A :class:`Suite` maps dataset rows to samples
(input / reference / context fields), renders a Jinja2 prompt per row, generates with an Engine
(concurrently, bounded), records latency, tokens and cost per sample, then runs the listed
evaluators and returns a :class:`SuiteReport`. Evaluators are looked up by name through a mapping
or callable the caller passes (the service passes the plugin registry). Nothing here stores runs
or reads datasets from disk; gating on a report is ``gate.py``'s job.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import jinja2
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llmloop.core.chat import ChatMessage, GenerationRequest, SamplingParams
from llmloop.core.evals import EvalResult, EvalSample
from llmloop.engines.base import Engine
from llmloop.errors import ConfigError, InvalidInputError, LlmloopError, NotFoundError
from llmloop.evaluators.base import Evaluator
from llmloop.evaluators.judges import compile_template, render_template

EvaluatorLookup = Mapping[str, type[Evaluator]] | Callable[[str], type[Evaluator]]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldMap(_Model):
    """Which row columns become the sample's id, input, reference(s), context and metadata."""

    id: str = Field(
        default="id", description="Column with a stable sample id (row index if absent)."
    )
    input: str = Field(default="input", description="Column with the question or instruction.")
    reference: str | None = Field(default="reference", description="Column with the reference.")
    references: str | None = Field(
        default=None, description="Column with a list of references (several correct answers)."
    )
    context: str | None = Field(default="context", description="Column with the given context.")
    metadata: list[str] = Field(
        default_factory=list,
        description="Columns copied into sample metadata (e.g. human_label, baseline_output).",
    )


class SuiteEvaluator(_Model):
    """One evaluator of the suite: its registered name, a report alias and its config."""

    name: str = Field(description="Registered evaluator name (bleu, rouge, judge, ...).")
    alias: str | None = Field(
        default=None, description="Key of its result in the report; defaults to the name."
    )
    config: dict[str, Any] = Field(
        default_factory=dict, description="Evaluator config (validated by its config class)."
    )

    @property
    def key(self) -> str:
        """The result key in the report."""
        return self.alias or self.name


class Suite(_Model):
    """A declarative evaluation suite, loadable from YAML (see :func:`load_suite`)."""

    name: str = Field(min_length=1, description="Suite name.")
    description: str = Field(default="", description="What the suite checks.")
    fields: FieldMap = Field(default_factory=FieldMap, description="Row-to-sample field mapping.")
    prompt_template: str = Field(
        default="{{ input }}",
        description="Jinja2 template building the model input; sees the row's columns, 'row', "
        "and the mapped 'input', 'reference' and 'context'.",
    )
    system_prompt: str | None = Field(default=None, description="System message in chat mode.")
    mode: Literal["chat", "completion"] = Field(
        default="chat", description="Send a chat message or a plain completion prompt."
    )
    model: str = Field(default="", description="Engine-side model name; '' uses the engine's.")
    sampling: SamplingParams = Field(
        default_factory=lambda: SamplingParams(temperature=0.0),
        description="Generation parameters (greedy by default for repeatability).",
    )
    concurrency: int = Field(default=8, ge=1, le=1024, description="Generations in flight.")
    timeout_s: float | None = Field(
        default=None, gt=0.0, description="Per-generation timeout; a timeout is a failed sample."
    )
    prompt_price_per_million: float = Field(
        default=0.0, ge=0.0, description="USD per million prompt tokens, for cost_usd."
    )
    completion_price_per_million: float = Field(
        default=0.0, ge=0.0, description="USD per million completion tokens, for cost_usd."
    )
    evaluators: list[SuiteEvaluator] = Field(
        default_factory=list, description="Evaluators run on the generated samples."
    )


class SampleOutput(_Model):
    """What the model produced for one row, with its cost; ``error`` when generation failed."""

    id: str
    prompt: str
    output: str = ""
    latency_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    finish_reason: str | None = None
    error: str | None = None


class SuiteReport(_Model):
    """The outcome of a suite run: per-sample outputs, per-evaluator results and timings."""

    suite: str
    model: str
    started_at: datetime
    duration_s: float = Field(description="Wall time of the whole run.")
    generation_s: float = Field(description="Wall time of the generation phase.")
    outputs: list[SampleOutput]
    results: dict[str, EvalResult] = Field(description="Evaluator results keyed by alias.")
    evaluator_seconds: dict[str, float] = Field(default_factory=dict)
    evaluator_errors: dict[str, str] = Field(
        default_factory=dict, description="Evaluators that raised, with their message."
    )

    @property
    def n_failed(self) -> int:
        """Samples whose generation failed (left out of evaluation)."""
        return sum(1 for o in self.outputs if o.error is not None)

    def metrics(self) -> dict[str, float]:
        """Every aggregate as ``alias.key``, plus bare ``key`` where only one evaluator has it."""
        return flatten_metrics(self.results)

    def sample_scores(self, metric: str) -> dict[str, float]:
        """Per-sample scores stored under the same key as aggregate ``metric`` (may be empty)."""
        return metric_sample_scores(self.results, metric)


def flatten_metrics(results: Mapping[str, EvalResult]) -> dict[str, float]:
    """Aggregates as ``alias.key``, plus the bare ``key`` where exactly one result has it."""
    flat: dict[str, float] = {}
    owners: dict[str, list[str]] = {}
    for alias, result in results.items():
        for key, value in result.aggregate.items():
            flat[f"{alias}.{key}"] = value
            owners.setdefault(key, []).append(alias)
    for key, aliases in owners.items():
        if len(aliases) == 1 and key not in flat:
            flat[key] = results[aliases[0]].aggregate[key]
    return flat


def metric_sample_scores(results: Mapping[str, EvalResult], metric: str) -> dict[str, float]:
    """``{sample_id: score}`` for the per-sample key matching ``metric`` (``alias.key`` or key).

    Empty when the metric is ambiguous, unknown, or has no per-sample counterpart (e.g. a rate
    whose samples carry another key).
    """
    alias, _, key = metric.rpartition(".")
    if alias and alias in results:
        found = [results[alias]]
    else:
        key = metric
        found = [r for r in results.values() if metric in r.aggregate]
    if len(found) != 1:
        return {}
    return {s.sample_id: s.scores[key] for s in found[0].samples if key in s.scores}


def load_suite(source: str | Path) -> Suite:
    """Read a suite from a YAML file (a ``Path``, or a one-line ``*.yaml`` string) or YAML text."""
    path: Path | None = source if isinstance(source, Path) else None
    if isinstance(source, str) and "\n" not in source and ": " not in source:
        path = Path(source) if source.endswith((".yaml", ".yml")) else None
    text = str(source)
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise NotFoundError(f"cannot read suite file '{path}': {exc}")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"suite is not valid YAML: {exc}")
    if not isinstance(data, dict):
        raise ConfigError("a suite must be a YAML mapping with at least 'name'")
    try:
        return Suite.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid suite: {exc}")


def resolve_evaluator(lookup: EvaluatorLookup, name: str) -> type[Evaluator]:
    """The evaluator class registered under ``name``; NotFoundError when there is none."""
    try:
        return lookup[name] if isinstance(lookup, Mapping) else lookup(name)
    except (KeyError, LookupError, NotFoundError):
        raise NotFoundError(f"no evaluator named '{name}' is registered")


def build_evaluator(
    cls: type[Evaluator], config: Mapping[str, Any], engine: Engine | None = None
) -> Evaluator:
    """Validate ``config`` with the class's config model and build it (judges get ``engine``)."""
    try:
        cfg = cls.config_cls.model_validate(dict(config))
    except ValidationError as exc:
        raise ConfigError(f"invalid config for evaluator '{cls.name}': {exc}")
    if getattr(cls, "requires_engine", False):
        return cls(cfg, engine=engine)  # type: ignore[call-arg]
    return cls(cfg)


def _row_sample(
    suite: Suite, template: jinja2.Template, row: Mapping[str, Any], index: int
) -> tuple[EvalSample, str]:
    """The sample (without output) and the rendered prompt for one row."""
    fm = suite.fields
    if fm.input not in row:
        raise InvalidInputError(f"row {index} has no '{fm.input}' column", row=index)

    def text(column: str | None) -> str | None:
        value = row.get(column) if column else None
        return None if value is None else str(value)

    refs = row.get(fm.references) if fm.references else None
    if refs is not None and not (isinstance(refs, list) and all(isinstance(r, str) for r in refs)):
        raise InvalidInputError(f"row {index}: '{fm.references}' must be a list of strings")
    sample = EvalSample(
        id=str(row.get(fm.id, index)),
        input=str(row[fm.input]),
        reference=text(fm.reference),
        references=refs,
        context=text(fm.context),
        metadata={k: row[k] for k in fm.metadata if k in row},
    )
    variables = {k: v for k, v in row.items() if isinstance(k, str) and k.isidentifier()}
    variables |= {"row": dict(row), "input": sample.input, "reference": sample.reference}
    variables["context"] = sample.context
    return sample, render_template(template, variables)


async def _generate(
    suite: Suite, engine: Engine, sample: EvalSample, prompt: str, gate: asyncio.Semaphore
) -> SampleOutput:
    if suite.mode == "chat":
        messages = [ChatMessage(role="user", content=prompt)]
        if suite.system_prompt:
            messages.insert(0, ChatMessage(role="system", content=suite.system_prompt))
        req = GenerationRequest(
            model=suite.model or engine.spec.model, messages=messages, sampling=suite.sampling
        )
    else:
        req = GenerationRequest(
            model=suite.model or engine.spec.model, prompt=prompt, sampling=suite.sampling
        )
    async with gate:
        start = time.perf_counter()
        try:
            result = await asyncio.wait_for(engine.chat(req), suite.timeout_s)
        except (LlmloopError, TimeoutError) as exc:
            detail = exc.detail if isinstance(exc, LlmloopError) else "generation timed out"
            return SampleOutput(
                id=sample.id, prompt=prompt, error=f"{type(exc).__name__}: {detail}"
            )
        latency = time.perf_counter() - start
    usage = result.usage
    cost = (
        usage.prompt_tokens * suite.prompt_price_per_million
        + usage.completion_tokens * suite.completion_price_per_million
    ) / 1e6
    return SampleOutput(
        id=sample.id,
        prompt=prompt,
        output=result.text,
        latency_s=latency,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        cost_usd=cost,
        finish_reason=result.finish_reason,
    )


def _with_output(sample: EvalSample, out: SampleOutput) -> EvalSample:
    usage = {
        "latency_s": out.latency_s,
        "prompt_tokens": out.prompt_tokens,
        "completion_tokens": out.completion_tokens,
        "cost_usd": out.cost_usd,
    }
    return sample.model_copy(update={"output": out.output, "metadata": sample.metadata | usage})


async def run_suite(
    suite: Suite,
    engine: Engine,
    rows: Sequence[Mapping[str, Any]],
    evaluators: EvaluatorLookup,
    judge_engine: Engine | None = None,
) -> SuiteReport:
    """Generate an answer per row with ``engine``, then run the suite's evaluators on them.

    Judges (evaluators with ``requires_engine``) ask ``judge_engine``, or ``engine`` when none
    is given. Evaluator configs and prompts are checked before the first generation.
    """
    if not rows:
        raise InvalidInputError(f"suite '{suite.name}': no rows to evaluate")
    aliases = [e.key for e in suite.evaluators]
    if len(set(aliases)) != len(aliases):
        raise ConfigError(f"suite '{suite.name}': evaluator aliases must be unique: {aliases}")
    built = {
        e.key: build_evaluator(
            resolve_evaluator(evaluators, e.name), e.config, judge_engine or engine
        )
        for e in suite.evaluators
    }
    template = compile_template(suite.prompt_template)
    prepared = [_row_sample(suite, template, row, i) for i, row in enumerate(rows)]
    ids = [s.id for s, _ in prepared]
    if len(set(ids)) != len(ids):
        raise InvalidInputError(f"suite '{suite.name}': sample ids must be unique")
    started, t0 = datetime.now(UTC), time.perf_counter()
    gate = asyncio.Semaphore(suite.concurrency)
    outputs = list(
        await asyncio.gather(*(_generate(suite, engine, s, p, gate) for s, p in prepared))
    )
    generation_s = time.perf_counter() - t0
    samples = [
        _with_output(s, o) for (s, _), o in zip(prepared, outputs, strict=True) if not o.error
    ]
    results: dict[str, EvalResult] = {}
    seconds: dict[str, float] = {}
    errors: dict[str, str] = {}
    for key, evaluator in built.items():
        t1 = time.perf_counter()
        try:
            if not samples:
                raise InvalidInputError("every generation failed; nothing to evaluate")
            results[key] = await evaluator.evaluate(samples)
        except LlmloopError as exc:
            errors[key] = f"{type(exc).__name__}: {exc.detail}"
        seconds[key] = time.perf_counter() - t1
    return SuiteReport(
        suite=suite.name,
        model=suite.model or engine.spec.model,
        started_at=started,
        duration_s=time.perf_counter() - t0,
        generation_s=generation_s,
        outputs=outputs,
        results=results,
        evaluator_seconds=seconds,
        evaluator_errors=errors,
    )


__all__ = [
    "EvaluatorLookup",
    "FieldMap",
    "SampleOutput",
    "Suite",
    "SuiteEvaluator",
    "SuiteReport",
    "build_evaluator",
    "flatten_metrics",
    "load_suite",
    "metric_sample_scores",
    "resolve_evaluator",
    "run_suite",
]
