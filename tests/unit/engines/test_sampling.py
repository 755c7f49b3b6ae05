"""Batched per-row sampling: greedy, top-k/top-p, seeds, penalties and logprobs."""

from __future__ import annotations

import pytest

from llmloop.core.chat import SamplingParams
from llmloop.engines.sampling import BatchSampler, SamplingRow, gather_logprobs

torch = pytest.importorskip("torch")


def rows(*params: SamplingParams, prompts: list[list[int]] | None = None) -> list[SamplingRow]:
    out = []
    for i, p in enumerate(params):
        gen = torch.Generator().manual_seed(p.seed) if p.seed is not None else None
        out.append(SamplingRow(p, gen, (prompts or [[]] * len(params))[i], []))
    return out


def test_greedy_rows_take_the_argmax_even_beside_sampled_rows() -> None:
    logits = torch.tensor([[0.0, 3.0, 1.0], [2.0, 0.0, 1.0], [0.0, 0.0, 5.0]])
    sampler = BatchSampler(
        rows(
            SamplingParams(temperature=0),
            SamplingParams(temperature=1.5),
            SamplingParams(temperature=0),
        ),
        3,
        torch.device("cpu"),
    )
    for _ in range(20):
        tokens = sampler.sample(logits).tolist()
        assert tokens[0] == 1 and tokens[2] == 2


def test_top_k_one_and_tiny_top_p_reduce_to_the_argmax() -> None:
    logits = torch.randn(4, 50)
    params = [SamplingParams(temperature=1.0, top_k=1), SamplingParams(temperature=1.0, top_p=1e-6)]
    sampler = BatchSampler(rows(*params, *params), 50, torch.device("cpu"))
    best = logits.argmax(dim=-1)
    for _ in range(10):
        assert torch.equal(sampler.sample(logits), best)


def test_samples_follow_the_softmax_distribution() -> None:
    torch.manual_seed(0)
    logits = torch.tensor([[0.0, 1.0, 2.0]]).repeat(4000, 1)
    sampler = BatchSampler(rows(*[SamplingParams(temperature=1.0)] * 4000), 3, torch.device("cpu"))
    counts = torch.bincount(sampler.sample(logits), minlength=3).float() / 4000
    expected = torch.softmax(logits[0], dim=-1)
    assert torch.allclose(counts, expected, atol=0.03)


def test_top_p_keeps_only_the_nucleus() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(2000, 1)
    sampler = BatchSampler(rows(*[SamplingParams(top_p=0.8)] * 2000), 4, torch.device("cpu"))
    seen = set(sampler.sample(logits).tolist())
    assert seen == {0, 1}


def test_a_seeded_row_draws_the_same_tokens_whatever_shares_the_batch() -> None:
    logits = torch.zeros(1, 100)
    alone = BatchSampler(rows(SamplingParams(seed=7)), 100, torch.device("cpu"))
    first = [int(alone.sample(logits)[0]) for _ in range(8)]
    crowd = BatchSampler(
        rows(SamplingParams(), SamplingParams(seed=7), SamplingParams(seed=1)),
        100,
        torch.device("cpu"),
    )
    second = [int(crowd.sample(logits.repeat(3, 1))[1]) for _ in range(8)]
    assert first == second
    assert len(set(first)) > 1


def test_frequency_and_presence_penalties_push_away_used_tokens() -> None:
    logits = torch.tensor([[2.0, 1.5, 0.0]])
    sampler = BatchSampler(
        rows(SamplingParams(temperature=0, frequency_penalty=1.0)), 3, torch.device("cpu")
    )
    first = sampler.sample(logits)
    assert first.tolist() == [0]
    sampler.record(first)
    assert sampler.sample(logits).tolist() == [1]  # 2.0 - 1.0 < 1.5
    presence = BatchSampler(
        rows(SamplingParams(temperature=0, presence_penalty=0.4)), 3, torch.device("cpu")
    )
    presence.record(torch.tensor([0]))
    presence.record(torch.tensor([0]))
    assert presence.sample(logits).tolist() == [0]  # presence counts once: 1.6 > 1.5


def test_repetition_penalty_covers_prompt_tokens() -> None:
    logits = torch.tensor([[2.0, 1.5, -1.0]])
    plain = BatchSampler(rows(SamplingParams(temperature=0)), 3, torch.device("cpu"))
    assert plain.sample(logits).tolist() == [0]
    penalised = BatchSampler(
        rows(SamplingParams(temperature=0, repetition_penalty=2.0), prompts=[[0]]),
        3,
        torch.device("cpu"),
    )
    assert penalised.sample(logits).tolist() == [1]  # 2.0 / 2 < 1.5


def test_gather_logprobs_matches_log_softmax() -> None:
    logits = torch.randn(3, 10)
    tokens = torch.tensor([1, 5, 9])
    chosen, tops = gather_logprobs(logits, tokens, 2)
    reference = torch.log_softmax(logits, dim=-1)
    assert chosen == pytest.approx([float(reference[i, t]) for i, t in enumerate(tokens)], abs=1e-5)
    assert [t[0][0] for t in tops] == reference.argmax(dim=-1).tolist()
    assert all(len(t) == 2 for t in tops)
