"""Shared path and query parameter types of the REST routes, and how a time parameter reads."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Path, Query

from llmloop.core.monitoring import parse_since
from llmloop.errors import InvalidInputError

NamePath = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", description="Name.")]
IdPath = Annotated[str, Path(pattern=r"^[a-z]{2,4}_[0-9A-Z]{26}$", description="Entity id.")]
RefPath = Annotated[
    str,
    Path(
        pattern=r"^([1-9][0-9]{0,8}|[a-z][a-z0-9_-]{0,63})$",
        description="A version number, a label/alias, or 'latest'.",
    ),
]
Limit = Annotated[int, Query(ge=1, le=1000, description="Page size.")]
Offset = Annotated[int, Query(ge=0, le=10_000_000, description="Items to skip.")]
TIME_HELP = (
    "A duration back from now (30m, 1h, 7d), an ISO-8601 time (UTC when it has no zone: "
    "2026-01-31T09:00:00, …Z, …+02:00) or Unix epoch seconds (1769850000)."
)
_EPOCH = re.compile(r"^\s*\d{1,15}(\.\d+)?\s*$")


def parse_ref(ref: str) -> int | str:
    return int(ref) if ref.isascii() and ref.isdigit() else ref


def parse_time(text: str) -> datetime:
    """A ``since``/``until`` parameter as an aware time (see :data:`TIME_HELP`); a time out of
    range (``99999999999d`` back, year 60000) is invalid input, not a server error."""
    try:
        if _EPOCH.match(text):
            return datetime.fromtimestamp(float(text), UTC)
        return parse_since(text).astimezone(UTC)
    except (OverflowError, OSError, ValueError):
        raise InvalidInputError(f"time out of range: {text!r}") from None
