"""MinHash signatures, LSH banding and the near-duplicate index; toxicity features."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmloop.data.dedup import (
    MinHasher,
    NearDupIndex,
    band_keys,
    candidate_duplicates,
    exact_key,
    lsh_params,
    words_of,
)
from llmloop.data.text import toxicity_scores
from llmloop.errors import ConfigError

WORDS = [f"w{i}" for i in range(500)]


def _text(rng: random.Random, n: int = 40) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def test_signatures_are_deterministic_and_estimate_jaccard() -> None:
    rng = random.Random(1)
    base = _text(rng).split()
    edited = base[:30] + _text(rng, 10).split()
    a, b = MinHasher(num_perm=256, seed=3), MinHasher(num_perm=256, seed=3)
    sigs = a.signatures([" ".join(base), " ".join(edited)])
    assert np.array_equal(sigs, b.signatures([" ".join(base), " ".join(edited)]))
    grams = [{tuple(w[i : i + 3]) for i in range(len(w) - 2)} for w in (base, edited)]
    true = len(grams[0] & grams[1]) / len(grams[0] | grams[1])
    assert abs(a.jaccard(sigs[0], sigs[1]) - true) < 0.1
    assert not np.array_equal(
        sigs, MinHasher(num_perm=256, seed=4).signatures([" ".join(base)] * 2)
    )


def test_short_and_empty_texts_have_signatures() -> None:
    hasher = MinHasher(num_perm=16)
    sigs = hasher.signatures(["", "one", "one two", "one two", "Two One"])
    assert sigs.shape == (5, 16)
    assert np.array_equal(sigs[2], sigs[3]) and not np.array_equal(sigs[1], sigs[2])
    assert hasher.signatures([]).shape == (0, 16)
    with pytest.raises(ConfigError):
        MinHasher(num_perm=4)


def test_index_finds_near_duplicates_only() -> None:
    rng = random.Random(2)
    texts = [_text(rng) for _ in range(300)]
    index = NearDupIndex(threshold=0.7, num_perm=128)
    assert index.check_and_add(texts) == [None] * 300
    near = texts[5].split()
    near[-1] = "changed"
    assert index.similar([" ".join(near), _text(rng)]) == [[5], []]
    assert index.check_and_add([" ".join(near)]) == [5]
    assert len(index) == 300
    assert index.add(["fresh text here"]) == [300]
    with pytest.raises(ConfigError):
        NearDupIndex(threshold=1.0)


def test_banding_marks_later_copies() -> None:
    hasher = MinHasher(num_perm=32)
    bands, rows = lsh_params(0.8, 32)
    assert bands * rows == 32
    keys = band_keys(hasher.signatures(["a b c d e", "x y z", "a b c d e"]), bands)
    assert candidate_duplicates(keys).tolist() == [False, False, True]
    assert exact_key("Hello,  World!") == exact_key("hello world")


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(alphabet="abc xyz,.!", max_size=30), min_size=1, max_size=8))
def test_fast_toxicity_features_match_the_package(texts: list[str]) -> None:
    extra = ["you are a fucking idiot", "have a lovely day"]
    fast = toxicity_scores(texts + extra, [words_of(t) for t in texts + extra])
    slow = toxicity_scores(texts + extra)
    assert np.allclose(fast, slow)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(max_size=40), max_size=6))
def test_batched_words_match_words_of(texts: list[str]) -> None:
    from llmloop.data.dedup import words_of_batch

    ascii_texts = ["".join(ch for ch in t if ch.isascii()) for t in texts]
    for batch in (texts, ascii_texts):
        assert words_of_batch(batch) == [words_of(t) for t in batch]
