"""Shared building blocks of the core values: frozen pydantic models, artifact references, names."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
LABEL_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
MAX_VERSION = 2_147_483_647  # version columns are 32-bit integers on every store


def _check_name(value: str) -> str:
    if not NAME_PATTERN.match(value):
        raise ValueError(
            "must be 1-128 characters of letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return value


def _check_label(value: str) -> str:
    if not LABEL_PATTERN.match(value):
        raise ValueError("must be lower-case letters, digits, '_' or '-', starting with a letter")
    return value


Name = Annotated[str, AfterValidator(_check_name)]
Label = Annotated[str, AfterValidator(_check_label)]
JsonDict = dict[str, Any]


class Value(BaseModel):
    """A frozen value; unknown fields are refused at the boundaries."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ArtifactRef(Value):
    """A content-addressed, immutable blob in the artifact store."""

    uri: str = Field(description="Where the blob lives (fsspec URL).")
    sha256: str = Field(description="Hex SHA-256 of the content.")
    size: int = Field(ge=0, description="Size in bytes.")


class Timestamped(Value):
    created_at: datetime = Field(description="When the record was created (UTC).")
