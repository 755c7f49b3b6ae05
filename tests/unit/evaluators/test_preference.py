"""Pairwise preference judging: verdict parsing and position swapping against order bias."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable

import pytest

from llmloop.core.chat import (
    EngineCapabilities,
    EngineSpec,
    GenerationChunk,
    GenerationRequest,
    GenerationResult,
)
from llmloop.core.evals import EvalSample
from llmloop.engines.base import Engine
from llmloop.errors import InvalidInputError
from llmloop.evaluators.preference import PairwiseJudge, PairwiseJudgeConfig, parse_verdict


class ScriptedJudge(Engine):
    """A fake judge model whose answers come from ``reply(prompt, seed)``."""

    kind = "scripted"

    def __init__(self, reply: Callable[[str, int], str]) -> None:
        super().__init__(EngineSpec(kind="scripted", model="judge"))
        self.reply = reply
        self.prompts: list[str] = []

    @property
    def capabilities(self) -> EngineCapabilities:
        return EngineCapabilities()

    async def chat(self, req: GenerationRequest) -> GenerationResult:
        assert req.messages is not None
        self.prompts.append(req.messages[-1].content)
        return GenerationResult(text=self.reply(req.messages[-1].content, req.sampling.seed or 0))

    async def stream(self, req: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        yield GenerationChunk(text=(await self.chat(req)).text, finish_reason="stop")


def _answers(prompt: str) -> tuple[str, str]:
    a = re.search(r"\[ANSWER A\]\n(.*?)\n", prompt)
    b = re.search(r"\[ANSWER B\]\n(.*?)\n", prompt)
    assert a and b
    return a.group(1), b.group(1)


def prefers_longer(prompt: str, seed: int) -> str:
    """A fair judge: the longer answer wins, equal lengths tie."""
    a, b = _answers(prompt)
    return "[[A]]" if len(a) > len(b) else "[[B]]" if len(b) > len(a) else "[[C]]"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Reasoning...\n[[A]]", "A"),
        ("[[B]]", "B"),
        ("It is a tie: [[C]]", "tie"),
        ('{"winner": "b"}', "B"),
        ("Final verdict: A", "A"),
        ("The better answer is B.", "B"),
        ("Winner: tie", "tie"),
        ("B", "B"),
        ("Both have merit.", None),
        ("A good start, but no verdict.", None),
    ],
)
def test_parse_verdict(text: str, expected: str | None) -> None:
    assert parse_verdict(text) == expected


async def test_fair_judge_prefers_better_answer_in_both_orders() -> None:
    engine = ScriptedJudge(prefers_longer)
    samples = [
        EvalSample(
            id="win",
            input="q",
            output="a long detailed answer",
            metadata={"baseline_output": "short"},
        ),
        EvalSample(
            id="lose", input="q", output="meh", metadata={"baseline_output": "a much better one"}
        ),
        EvalSample(id="tie", input="q", output="same", metadata={"baseline_output": "also"}),
    ]
    result = await PairwiseJudge(PairwiseJudgeConfig(k=2), engine=engine).evaluate(samples)
    by_id = {s.sample_id: s for s in result.samples}
    assert by_id["win"].scores["preference"] == 1.0
    assert by_id["lose"].scores["preference"] == 0.0
    assert by_id["tie"].details["verdict"] == "tie"
    assert result.aggregate["inconsistency_rate"] == 0.0
    assert result.aggregate["win_rate"] == result.aggregate["loss_rate"] == pytest.approx(1 / 3)
    assert len(engine.prompts) == 3 * 2 * 2  # items x rounds x both orders
    # Each item was shown in both positions.
    shown = {_answers(p) for p in engine.prompts}
    assert ("a long detailed answer", "short") in shown and (
        "short",
        "a long detailed answer",
    ) in shown


async def test_position_biased_judge_gives_flagged_ties() -> None:
    engine = ScriptedJudge(lambda prompt, seed: "Answer A is better. [[A]]")
    samples = [
        EvalSample(id=str(i), input="q", output=f"cand {i}", metadata={"baseline_output": "base"})
        for i in range(3)
    ]
    result = await PairwiseJudge(PairwiseJudgeConfig(k=3), engine=engine).evaluate(samples)
    assert result.aggregate["inconsistency_rate"] == 1.0
    assert result.aggregate["tie_rate"] == 1.0
    assert result.aggregate["win_rate"] == 0.0
    assert result.aggregate["preference"] == 0.5
    assert result.details["flagged"] == ["0", "1", "2"]


async def test_split_votes_flag_item_and_unparsable_rounds_fail() -> None:
    def moody(prompt: str, seed: int) -> str:
        if "mystery" in prompt:
            return "No idea."
        fair = prefers_longer(prompt, seed)
        if seed % 2:  # odd rounds prefer the shorter answer, consistently in both orders
            return {"[[A]]": "[[B]]", "[[B]]": "[[A]]"}.get(fair, fair)
        return fair

    samples = [
        EvalSample(id="split", output="longer answer", metadata={"baseline_output": "short"}),
        EvalSample(id="mystery", output="mystery", metadata={"baseline_output": "x"}),
    ]
    result = await PairwiseJudge(PairwiseJudgeConfig(k=2), engine=ScriptedJudge(moody)).evaluate(
        samples
    )
    split = result.samples[0]
    assert split.scores["win"] == 1 and split.scores["loss"] == 1
    assert split.details["flagged"]
    assert result.samples[1].scores == {} and result.details["failed"] == ["mystery"]
    assert result.aggregate["failed_rate"] == 0.5


async def test_human_verdict_agreement_and_input_errors() -> None:
    engine = ScriptedJudge(prefers_longer)
    samples = [
        EvalSample(
            id="1", output="long answer", metadata={"baseline_output": "s", "human_label": "A"}
        ),
        EvalSample(
            id="2", output="s", metadata={"baseline_output": "long answer", "human_label": "B"}
        ),
    ]
    result = await PairwiseJudge(PairwiseJudgeConfig(k=1), engine=engine).evaluate(samples)
    assert result.aggregate["human_kappa"] == pytest.approx(1.0)
    with pytest.raises(InvalidInputError, match="baseline_output"):
        await PairwiseJudge(engine=engine).evaluate([EvalSample(id="x", output="y")])
    odd = [
        EvalSample(id="1", output="a", metadata={"baseline_output": "b", "human_label": "maybe"})
    ]
    with pytest.raises(InvalidInputError, match="not A, B or tie"):
        await PairwiseJudge(PairwiseJudgeConfig(k=1), engine=engine).evaluate(odd)
