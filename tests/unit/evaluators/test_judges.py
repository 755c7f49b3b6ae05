"""Pointwise LLM judges: score parsing, k votes, straddle flags, failures and human agreement."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmloop.core.chat import (
    EngineCapabilities,
    EngineSpec,
    GenerationChunk,
    GenerationRequest,
    GenerationResult,
)
from llmloop.core.evals import EvalSample
from llmloop.engines.base import Engine
from llmloop.engines.echo import EchoEngine
from llmloop.errors import ConfigError, InvalidInputError, NotFoundError, UpstreamError
from llmloop.evaluators.judges import (
    PointwiseJudge,
    PointwiseJudgeConfig,
    list_judge_templates,
    load_judge_template,
    parse_score,
)


class ScriptedJudge(Engine):
    """A fake judge model: ``reply(prompt, seed)`` decides each answer; requests are recorded."""

    kind = "scripted"

    def __init__(self, reply: Callable[[str, int], str]) -> None:
        super().__init__(EngineSpec(kind="scripted", model="judge-model"))
        self.reply = reply
        self.requests: list[GenerationRequest] = []

    @property
    def capabilities(self) -> EngineCapabilities:
        return EngineCapabilities()

    async def chat(self, req: GenerationRequest) -> GenerationResult:
        self.requests.append(req)
        assert req.messages is not None
        return GenerationResult(text=self.reply(req.messages[-1].content, req.sampling.seed or 0))

    async def stream(self, req: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        yield GenerationChunk(text=(await self.chat(req)).text, finish_reason="stop")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Good answer.\nScore: 4", 4.0),
        ("**Score:** 5", 5.0),
        ('{"reasoning": "ok", "score": 3}', 3.0),
        ("Rating: [[2]]", 2.0),
        ("I'd give it 4/5 overall.", 4.0),
        ("3 out of 5", 3.0),
        ("4", 4.0),
        ("Score: 4.5", 4.5),
        ("Step 1 looks fine, step 2 too. Score: 3", 3.0),
        ("Score: 9", None),  # off the scale
        ("I cannot rate this.", None),
        ("", None),
    ],
)
def test_parse_score(text: str, expected: float | None) -> None:
    assert parse_score(text, 1, 5) == expected


def test_shipped_templates_load_and_unknown_is_not_found() -> None:
    names = list_judge_templates()
    assert {"quality", "correctness", "faithfulness", "pairwise"} <= set(names)
    assert "{{ output }}" in load_judge_template("quality")
    with pytest.raises(NotFoundError, match="quality"):
        load_judge_template("nope")
    with pytest.raises(NotFoundError):
        load_judge_template("../pyproject")


def _noisy(prompt: str, seed: int) -> str:
    """Confident on clear items, torn on the borderline one, lost on the odd one."""
    if "GOOD" in prompt:
        return "Clearly right. Score: 5"
    if "BAD" in prompt:
        return "Wrong. Score: 1"
    if "BORDER" in prompt:
        return f"Hmm. Score: {random.Random(seed).choice([2, 4]) if seed > 1 else 2 + 2 * seed}"
    return "I am not able to grade this."


async def test_noisy_judge_straddling_threshold_is_flagged() -> None:
    engine = ScriptedJudge(_noisy)
    cfg = PointwiseJudgeConfig(k=4, threshold=3, seed=0, temperature=0.9)
    samples = [
        EvalSample(id="good", input="q", output="GOOD"),
        EvalSample(id="bad", input="q", output="BAD"),
        EvalSample(id="border", input="q", output="BORDER"),
        EvalSample(id="odd", input="q", output="???"),
    ]
    result = await PointwiseJudge(cfg, engine=engine).evaluate(samples)
    by_id = {s.sample_id: s for s in result.samples}
    assert by_id["good"].scores == {"judge_score": 5.0, "judge_variance": 0.0, "judge_pass": 1.0}
    assert not by_id["good"].details["flagged"]
    assert not by_id["bad"].details["flagged"]
    border = by_id["border"]
    assert sorted(set(border.details["votes"])) == [2.0, 4.0]
    assert border.details["flagged"] and border.details["votes_split"]
    lo, hi = border.details["ci"]
    assert lo < 3 < hi
    assert border.scores["judge_variance"] > 0
    assert by_id["odd"].scores == {} and by_id["odd"].details["failed"]
    assert len(by_id["odd"].details["failures"]) == 4
    assert result.details["flagged"] == ["border"]
    assert result.details["failed"] == ["odd"]
    agg = result.aggregate
    assert agg["judge_failed_rate"] == 0.25
    assert agg["judge_flag_rate"] == pytest.approx(1 / 3)
    assert agg["judge_score_ci_low"] <= agg["judge_score"] <= agg["judge_score_ci_high"]
    # k votes per item, seeds vary per vote, temperature as configured.
    assert len(engine.requests) == 16
    assert {r.sampling.seed for r in engine.requests} == {0, 1, 2, 3}
    assert {r.sampling.temperature for r in engine.requests} == {0.9}
    assert {r.model for r in engine.requests} == {"judge-model"}


async def test_engine_errors_become_failed_votes_not_crashes() -> None:
    calls = {"n": 0}

    class Flaky(ScriptedJudge):
        async def chat(self, req: GenerationRequest) -> GenerationResult:
            calls["n"] += 1
            if calls["n"] % 2:
                raise UpstreamError("judge down", retryable=True)
            return await super().chat(req)

    judge = PointwiseJudge(PointwiseJudgeConfig(k=2), engine=Flaky(lambda p, s: "Score: 4"))
    result = await judge.evaluate([EvalSample(id="a", output="x")])
    sample = result.samples[0]
    assert sample.details["votes"] == [4.0]
    assert sample.details["failures"] == ["UpstreamError: judge down"]


async def test_human_agreement_is_reported() -> None:
    scores = {"s1": 1, "s2": 2, "s3": 4, "s4": 5}
    engine = ScriptedJudge(lambda p, s: f"Score: {scores[p.split('ID=')[1].strip()]}")
    cfg = PointwiseJudgeConfig(k=1, template="Rate {{ output }} 1-5. ID={{ id }}")
    samples = [
        EvalSample(id=i, output="x", metadata={"human_label": h})
        for i, h in [("s1", 1), ("s2", 2), ("s3", 5), ("s4", 4)]
    ]
    result = await PointwiseJudge(cfg, engine=engine).evaluate(samples)
    assert result.aggregate["human_n"] == 4
    assert result.aggregate["human_spearman"] == pytest.approx(0.8)
    assert result.aggregate["human_kappa"] == pytest.approx(1 / 3)
    bad = [EvalSample(id="s1", output="x", metadata={"human_label": "great"})]
    with pytest.raises(InvalidInputError, match="must be numbers"):
        await PointwiseJudge(cfg, engine=engine).evaluate(bad)


async def test_custom_template_renders_variables_and_system_prompt() -> None:
    engine = ScriptedJudge(lambda p, s: "Score: 2")
    cfg = PointwiseJudgeConfig(
        k=1,
        template="Q={{ input }} A={{ output }} R={{ reference }} C={{ criteria }} {{ scale_max }}",
        criteria="brevity",
        system_prompt="You are strict.",
        model="other-judge",
    )
    await PointwiseJudge(cfg, engine=engine).evaluate(
        [EvalSample(id="1", input="why", output="because", reference="ref")]
    )
    req = engine.requests[0]
    assert req.model == "other-judge"
    assert req.messages is not None
    assert req.messages[0].role == "system" and req.messages[0].content == "You are strict."
    assert req.messages[1].content == "Q=why A=because R=ref C=brevity 5"


async def test_shipped_template_with_echo_engine_parses_its_own_instruction() -> None:
    # The echo engine repeats the prompt, whose last line asks for "Score: N": no number -> fail.
    engine = EchoEngine(EngineSpec(kind="echo", model="echo", options={"reply": "Fine. Score: 3"}))
    result = await PointwiseJudge(PointwiseJudgeConfig(k=2), engine=engine).evaluate(
        [EvalSample(id="1", input="q", output="a")]
    )
    assert result.aggregate["judge_score"] == 3.0
    assert result.aggregate["judge_pass_rate"] == 1.0  # threshold defaults to the midpoint, 3


async def test_template_and_config_errors_are_clear() -> None:
    engine = ScriptedJudge(lambda p, s: "Score: 1")
    with pytest.raises(ConfigError, match="syntax error"):
        PointwiseJudge(PointwiseJudgeConfig(template="{{ output "), engine=engine)
    typo = PointwiseJudge(PointwiseJudgeConfig(template="{{ outptu }}"), engine=engine)
    with pytest.raises(ConfigError, match="unknown variable"):
        await typo.evaluate([EvalSample(id="1", output="x")])
    assert engine.requests == []  # nothing was asked before the template failed
    for bomb in ('{{ "x" * 10**9 }}', "{{ 99999 ** 99999 ** 9 }}", '{{ "x"|center(10**9) }}'):
        judge = PointwiseJudge(PointwiseJudgeConfig(template=bomb), engine=engine)
        with pytest.raises(ConfigError, match="failed to render"):  # not gigabytes or hours
            await judge.evaluate([EvalSample(id="1", output="x")])
    with pytest.raises(ConfigError, match="needs an engine"):
        await PointwiseJudge(PointwiseJudgeConfig()).evaluate([EvalSample(id="1", output="x")])
    with pytest.raises(ValueError, match="scale_min"):
        PointwiseJudgeConfig(scale_min=5, scale_max=1)
    with pytest.raises(ValueError, match="threshold"):
        PointwiseJudgeConfig(threshold=7)
    with pytest.raises(InvalidInputError, match="no samples"):
        await PointwiseJudge(engine=engine).evaluate([])


@pytest.mark.parametrize("name", ["quality", "correctness", "faithfulness"])
def test_shipped_pointwise_templates_render_every_field(name: str) -> None:
    judge = PointwiseJudge(PointwiseJudgeConfig(template_name=name, scale_max=10))
    sample = EvalSample(id="1", input="QUESTION", output="ANSWER", reference="REF", context="CTX")
    text = judge.render(sample)
    assert "ANSWER" in text and "QUESTION" in text and "10" in text
    assert ("CTX" in text) == (name == "faithfulness")


@given(
    score=st.integers(min_value=1, max_value=10), noise=st.text(alphabet="abc .,\n", max_size=40)
)
def test_parse_score_finds_the_declared_final_line(score: int, noise: str) -> None:
    assert parse_score(f"{noise}\nScore: {score}", 1, 10) == score
