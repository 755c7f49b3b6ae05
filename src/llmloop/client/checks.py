"""What the SDK checks before a call goes anywhere, the same way in process and over HTTP.

The REST routes refuse a malformed name, id or version in the path, a page size out of range or
an unknown choice with 422 before any service sees it, while the services called in process
would answer differently (a 404 for a name that cannot exist, an empty list for an unknown
status). Checking here first makes both ways raise the same :class:`InvalidInputError`. A
segment that passed is also safe to put in a URL path: it holds no ``/``, ``?`` or ``#``.
Values built from arguments that fail their pydantic model raise InvalidInputError too, not
pydantic's ValidationError. Times are read as the REST API reads them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from llmloop.core.base import NAME_PATTERN
from llmloop.core.monitoring import parse_duration, parse_since
from llmloop.errors import InvalidInputError

M = TypeVar("M", bound=BaseModel)
# The path patterns of api/routes/common.py (the SDK may not import the API).
ID_PATTERN = re.compile(r"^[a-z]{2,4}_[0-9A-Z]{26}$")
REF_PATTERN = re.compile(r"^([1-9][0-9]{0,8}|[a-z][a-z0-9_-]{0,63})$")
_EPOCH = re.compile(r"^\s*\d{1,15}(\.\d+)?\s*$")
MAX_PAGE = 1000
MAX_OFFSET = 10_000_000


def name(value: str, what: str) -> str:
    if not isinstance(value, str) or not NAME_PATTERN.match(value):
        raise InvalidInputError(
            f"not a valid {what} name: {value!r} (1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit)"
        )
    return value


def entity_id(value: str, what: str) -> str:
    if not isinstance(value, str) or not ID_PATTERN.match(value):
        raise InvalidInputError(f"not a valid {what} id: {value!r} (e.g. run_01J…, 26 characters)")
    return value


def ref(value: int | str) -> str:
    """A version number, a label or alias, or 'latest', as a path segment."""
    text = str(value) if not isinstance(value, bool) else ""
    if not REF_PATTERN.match(text):
        raise InvalidInputError(
            f"not a version reference: {value!r} (a number from 1, 'latest', or a lower-case "
            "label or alias)"
        )
    return text


def number(value: int, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInputError(f"{what} must be a whole number from {low} to {high}")
    return value


def page(limit: int, offset: int = 0, high: int = MAX_PAGE) -> None:
    number(limit, "limit", 1, high)
    number(offset, "offset", 0, MAX_OFFSET)


def choice(value: str | None, allowed: Iterable[str], what: str) -> str | None:
    options = tuple(allowed)
    if value is not None and value not in options:
        raise InvalidInputError(f"{what} must be one of {', '.join(options)}, not {value!r}")
    return value


def build(model: type[M], **fields: Any) -> M:
    """``model`` from keyword fields; a field that breaks its rules is InvalidInputError."""
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        raise invalid(exc) from None


def coerce(model: type[M], value: M | dict[str, Any] | None, **defaults: Any) -> M:
    """A value given as the model itself or as a plain dict (None: the defaults)."""
    if isinstance(value, BaseModel):
        if not isinstance(value, model):
            raise InvalidInputError(f"expected {model.__name__}, not {type(value).__name__}")
        return value
    if value is not None and not isinstance(value, dict):
        raise InvalidInputError(f"expected {model.__name__} or a dict, not {type(value).__name__}")
    return build(model, **{**defaults, **(value or {})})


def invalid(exc: ValidationError) -> InvalidInputError:
    """InvalidInputError worded as the REST API words a failed value (``api/problems.py``)."""
    found = [
        {"field": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg", "")}
        for e in exc.errors()
    ]
    detail = "; ".join(f"{e['field'] or exc.title}: {e['message']}" for e in found[:5])
    return InvalidInputError(detail or str(exc), errors=found)


def finite(value: Any, where: str = "") -> None:
    """Refuse NaN and infinity anywhere in a request body: JSON cannot carry them, so the REST
    API never sees them, and the SDK refuses them in process too."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="python")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInputError(f"{where or 'value'} must be a finite number")
    if isinstance(value, dict):
        for key, item in value.items():
            finite(item, key if not where else f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            finite(item, f"{where}.{i}" if where else str(i))


def time(value: datetime | str, what: str = "since") -> datetime:
    """A time as the REST API reads it: a duration back from now (1h), an ISO-8601 time (UTC
    without a zone) or Unix epoch seconds; a datetime as given (UTC when naive)."""
    if not isinstance(value, datetime | str) or len(str(value)) > 64:
        raise InvalidInputError(f"{what}: not a time or duration: {value!r}")
    try:
        if isinstance(value, datetime):
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        if _EPOCH.match(value):
            return datetime.fromtimestamp(float(value), UTC)
        return parse_since(value).astimezone(UTC)
    except (OverflowError, OSError, ValueError):
        raise InvalidInputError(f"time out of range: {value!r}") from None


def time_param(value: datetime | str) -> str:
    """A time for a query string: the text as given, or the datetime in ISO-8601 (with its
    zone; UTC when naive)."""
    return time(value).isoformat() if isinstance(value, datetime) else value


def duration(value: float | str, what: str) -> tuple[float, str]:
    """Seconds and their text for the REST API, from ``'5m'`` or a number of seconds."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidInputError(f"{what} must be a duration like '5m' or seconds, not {value!r}")
    text = value if isinstance(value, str) else format(value, "f").rstrip("0").rstrip(".") + "s"
    if len(text) > 16:
        raise InvalidInputError(f"{what}: not a duration: {value!r} (use e.g. 30s, 5m, 1h, 7d)")
    return parse_duration(text), text
