"""Identifiers: time-ordered, prefixed by the entity they name, so lineage nodes read by themselves.

An id looks like ``dsv_01JD3K6Z8ZQ4N2X5C9V7B1M0PA``: a prefix, then 26 Crockford base32 characters
(48 bits of milliseconds, 80 random bits). It does not parse or validate foreign ids.
"""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

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


def new_id(entity: str) -> str:
    """A new sortable id for ``entity`` (one of :data:`PREFIXES`)."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return f"{PREFIXES[entity]}_{''.join(reversed(chars))}"


def entity_of(identifier: str) -> str | None:
    """The entity an id names, from its prefix, or None for a foreign id."""
    prefix, _, rest = identifier.partition("_")
    return ENTITY_OF_PREFIX.get(prefix) if rest else None
