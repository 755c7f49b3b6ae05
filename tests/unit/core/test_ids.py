"""Ids: Crockford base32 of 48 bits of milliseconds and 80 random bits, sortable by time."""

from __future__ import annotations

import random
import time

import pytest

from llmloop.core.ids import encode_id, entity_of, new_id
from llmloop.core.traces import new_trace_id

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def reference(millis: int, random_bits: int) -> str:
    """The encoding as the format describes it: 26 characters of 5 bits, most significant first."""
    value = (millis << 80) | random_bits
    return "".join(CROCKFORD[(value >> (5 * i)) & 31] for i in range(25, -1, -1))


def test_encoding_matches_the_format_bit_for_bit() -> None:
    rng = random.Random(7)
    edges = [(0, 0), ((1 << 48) - 1, (1 << 80) - 1), (1, 1), (1 << 47, 1 << 79)]
    pairs = edges + [(rng.getrandbits(48), rng.getrandbits(80)) for _ in range(5000)]
    for millis, bits in pairs:
        assert encode_id(millis, bits) == reference(millis, bits)


def test_ids_sort_by_time_and_name_their_entity() -> None:
    first = new_id("run")
    time.sleep(0.002)
    second = new_id("run")
    assert first < second and len(first) == len("run_") + 26
    assert entity_of(first) == "run" and entity_of("nope") is None
    trace = new_trace_id()
    assert trace.startswith("tr_") and entity_of(trace) == "trace"
    assert set(trace[3:]) <= set(CROCKFORD)


@pytest.mark.parametrize("n", [10_000])
def test_trace_ids_do_not_repeat(n: int) -> None:
    assert len({new_trace_id() for _ in range(n)}) == n
