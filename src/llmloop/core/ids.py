"""Identifiers: time-ordered, prefixed by the entity they name, so lineage nodes read by themselves.

An id looks like ``dsv_01JD3K6Z8ZQ4N2X5C9V7B1M0PA``: a prefix, then 26 Crockford base32 characters
(48 bits of milliseconds, 80 random bits). It does not parse or validate foreign ids.
"""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
#: Two characters per 10 bits: 13 lookups instead of 26 shifts (ids are made on every request).
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]
_SHIFTS = tuple(range(120, -1, -10))

PREFIXES = {
    "dataset": "ds",
    "dataset_version": "dsv",
    "prompt": "pr",
    "prompt_version": "prv",
    "run": "run",
    "model": "mdl",
    "model_version": "mv",
    "approval": "apr",
    "api_key": "key",
    "deployment": "dep",
    "trace": "tr",
    "feedback": "fb",
    "eval": "ev",
}
ENTITY_OF_PREFIX = {v: k for k, v in PREFIXES.items()}


def encode_id(millis: int, random_bits: int) -> str:
    """The 26 characters of an id: 48 bits of milliseconds, then 80 random bits, in Crockford
    base32 (most significant first, so ids sort by time)."""
    value = (millis << 80) | random_bits
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in _SHIFTS])


def new_id(entity: str) -> str:
    """A new sortable id for ``entity`` (one of :data:`PREFIXES`)."""
    body = encode_id(int(time.time() * 1000), int.from_bytes(os.urandom(10), "big"))
    return f"{PREFIXES[entity]}_{body}"


def entity_of(identifier: str) -> str | None:
    """The entity an id names, from its prefix, or None for a foreign id."""
    prefix, _, rest = identifier.partition("_")
    return ENTITY_OF_PREFIX.get(prefix) if rest else None
