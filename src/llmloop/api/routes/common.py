"""Shared path and query parameter types of the REST routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

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


def parse_ref(ref: str) -> int | str:
    return int(ref) if ref.isascii() and ref.isdigit() else ref
