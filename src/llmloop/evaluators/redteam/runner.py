"""Running a red-team catalogue against an Engine and grouping the outcome by OWASP id.

``run_redteam`` renders every probe (fresh canary per run), asks the engine with bounded
concurrency, optionally passes request and answer through live guards (so a deployment's
defence in depth is what gets tested), grades each answer with the probe's detector, and returns
a ``RedTeamReport``: per-probe results, attack success rate overall and per OWASP LLM 2025 id.
It does not store reports (the evaluation service does) or decide release gates.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from llmloop.core.chat import GenerationRequest, SamplingParams
from llmloop.core.evals import EvalResult, SampleScore
from llmloop.engines.base import Engine
from llmloop.errors import ContextLengthExceededError, LlmloopError, UpstreamError
from llmloop.evaluators.redteam.catalogue import (
    OWASP_LLM_2025,
    Catalogue,
    Probe,
    load_catalogue,
    render_probe,
)
from llmloop.evaluators.redteam.detectors import ProbeRun, grade
from llmloop.guards.base import Guard
from llmloop.guards.canary import make_canary
from llmloop.guards.stream import check_messages, check_text

ANSWER_TOKENS = 512  # enough to judge an answer; less where the model's context has no room
NO_OWASP = "none"


class ProbeResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    probe_id: str = Field(description="The probe's id.")
    owasp: str = Field(description="OWASP LLM 2025 id, or 'none' for content safety.")
    category: str = Field(description="Attack family.")
    severity: str = Field(description="Impact if it works.")
    compromised: bool = Field(description="True when the attack succeeded.")
    evidence: str = Field(description="What the detector saw.")
    blocked_by: str | None = Field(default=None, description="Guard rule that stopped it, if any.")
    response: str = Field(default="", description="The answer (first 500 characters).")
    error: str | None = Field(default=None, description="Engine error; counted as not compromised.")


class OwaspSummary(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str = Field(description="OWASP LLM 2025 id or 'none'.")
    title: str = Field(description="The risk's name.")
    total: int = Field(description="Probes run.")
    compromised: int = Field(description="Probes whose attack succeeded.")
    errors: int = Field(default=0, description="Probes the engine failed to answer.")
    attack_success_rate: float = Field(
        description="compromised / answered probes (lower is better); engine errors are left "
        "out, not counted as resisted attacks."
    )


class RedTeamReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    catalogue: str = Field(description="Catalogue name.")
    version: str = Field(description="Catalogue version.")
    model: str = Field(description="Model under test.")
    results: list[ProbeResult] = Field(description="One per probe, in catalogue order.")
    by_owasp: dict[str, OwaspSummary] = Field(
        description="Results grouped by OWASP id; a group none of whose probes was answered is "
        "left out (its rate is unknown, not zero)."
    )
    attack_success_rate: float = Field(description="Share of answered probes compromised.")
    errors: int = Field(default=0, description="Probes the engine failed to answer.")

    @property
    def compromised(self) -> list[ProbeResult]:
        return [r for r in self.results if r.compromised]

    def to_eval_result(self) -> EvalResult:
        """The report as an evaluation result (aggregates per OWASP id, one sample per probe)."""
        aggregate = {"attack_success_rate": self.attack_success_rate}
        aggregate |= {f"asr.{k}": v.attack_success_rate for k, v in self.by_owasp.items()}
        return EvalResult(
            evaluator="redteam",
            aggregate=aggregate,
            samples=[
                SampleScore(
                    sample_id=r.probe_id,
                    # An unanswered probe has no score (the rate is over answered probes).
                    scores={} if r.error is not None else {"compromised": float(r.compromised)},
                    details={
                        "owasp": r.owasp,
                        "evidence": r.evidence,
                        "blocked_by": r.blocked_by,
                        "error": r.error,
                    },
                )
                for r in self.results
            ],
            details={"catalogue": self.catalogue, "version": self.version, "model": self.model},
        )


def _summaries(results: list[ProbeResult]) -> dict[str, OwaspSummary]:
    out: dict[str, OwaspSummary] = {}
    for key in sorted({r.owasp for r in results}):
        group = [r for r in results if r.owasp == key]
        errors = sum(r.error is not None for r in group)
        if errors == len(group):
            continue
        bad = sum(r.compromised for r in group)
        out[key] = OwaspSummary(
            id=key,
            title=OWASP_LLM_2025.get(key, "Content safety (no OWASP LLM id)"),
            total=len(group),
            compromised=bad,
            errors=errors,
            attack_success_rate=bad / (len(group) - errors),
        )
    return out


async def _run_probe(
    engine: Engine,
    probe: Probe,
    catalogue: Catalogue,
    model: str,
    sampling: SamplingParams,
    guards: Sequence[Guard],
) -> ProbeResult:
    canary = make_canary()
    messages = render_probe(probe, catalogue.default_system, canary)
    base: dict[str, Any] = {
        "probe_id": probe.id,
        "owasp": probe.owasp or NO_OWASP,
        "category": probe.category,
        "severity": probe.severity,
    }
    blocking = [v for v in check_messages(guards, messages) if v.action == "block"]
    if blocking:
        rule = blocking[0].rule_id
        return ProbeResult(**base, compromised=False, evidence="input blocked", blocked_by=rule)
    req = GenerationRequest(model=model, messages=messages, sampling=sampling)
    try:
        text = await _answer(engine, req)
    except LlmloopError as exc:
        return ProbeResult(**base, compromised=False, evidence="engine error", error=exc.detail)
    blocked_by = None
    if guards:
        text, verdicts = check_text(guards, text)
        block = next((v for v in verdicts if v.action == "block"), None)
        if block is not None:
            blocked_by, text = block.rule_id, ""
    found = grade(ProbeRun(probe=probe, canary=canary, system=messages[0].content), text)
    evidence = f"output blocked ({blocked_by})" if blocked_by else found.evidence
    return ProbeResult(
        **base,
        compromised=found.compromised,
        evidence=evidence,
        blocked_by=blocked_by,
        response=text[:500],
    )


async def _answer(engine: Engine, req: GenerationRequest) -> str:
    try:
        return (await engine.chat(req)).text
    except ContextLengthExceededError:
        if "max_tokens" not in req.sampling.model_fields_set:
            raise
    # A model whose context holds the probe but not max_tokens more (a small local one): the
    # room left is less than max_tokens, and a chat without max_tokens may take all of it.
    unset = req.sampling.model_dump(exclude_unset=True, exclude={"max_tokens"})
    retry = req.model_copy(update={"sampling": SamplingParams.model_validate(unset)})
    return (await engine.chat(retry)).text


async def run_redteam(
    engine: Engine,
    catalogue: Catalogue | None = None,
    *,
    model: str = "",
    probe_ids: list[str] | None = None,
    categories: list[str] | None = None,
    guards: Sequence[Guard] = (),
    sampling: SamplingParams | None = None,
    concurrency: int = 4,
) -> RedTeamReport:
    """Run the (built-in by default) catalogue against ``engine`` and grade every answer."""
    cat = catalogue or load_catalogue()
    probes = cat.select(probe_ids, categories)
    params = sampling or SamplingParams(max_tokens=ANSWER_TOKENS, temperature=0.0)
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(probe: Probe) -> ProbeResult:
        async with gate:
            return await _run_probe(engine, probe, cat, model, params, guards)

    results = list(await asyncio.gather(*(one(p) for p in probes)))
    bad = sum(r.compromised for r in results)
    errors = sum(r.error is not None for r in results)
    if results and errors == len(results):
        # A model that answered nothing resisted nothing: an all-zero report would read as safe.
        raise UpstreamError(f"the engine answered no red-team probe: {results[0].error}")
    return RedTeamReport(
        catalogue=cat.name,
        version=cat.version,
        model=model or engine.spec.model,
        results=results,
        by_owasp=_summaries(results),
        attack_success_rate=bad / (len(results) - errors) if results else 0.0,
        errors=errors,
    )
