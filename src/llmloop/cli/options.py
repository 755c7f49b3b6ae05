"""Parsing of the small option languages the commands share: ``key=value`` pairs, version
references (``3``, ``latest``, ``production``), ``ID[:role]`` inputs and comma lists.

Bad syntax raises :class:`InvalidInputError` naming the option and the offending text, so the
one error handler in ``cli/main.py`` prints it and exits 2. Nothing here touches services.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

from llmloop.errors import InvalidInputError


def parse_value(text: str) -> Any:
    """A JSON scalar or list when the text is one (``0.2``, ``true``, ``[1,2]``), else the text.

    Quote a value to force a string: ``--param seed='"42"'``.
    """
    try:
        return json.loads(text)
    except ValueError:
        return text


def split_pair(raw: str, option: str) -> tuple[str, str]:
    """``key=value`` -> (key, value); the key must be non-empty."""
    key, sep, value = raw.partition("=")
    key = key.strip()
    if not sep or not key:
        raise InvalidInputError(f"{option} expects key=value, got {raw!r}")
    return key, value


def parse_pairs(values: Iterable[str] | None, option: str) -> dict[str, Any]:
    """Repeated ``key=value`` options as a dict; values read by :func:`parse_value`."""
    result: dict[str, Any] = {}
    for raw in values or []:
        key, value = split_pair(raw, option)
        if key in result:
            raise InvalidInputError(f"{option} sets '{key}' twice")
        result[key] = parse_value(value)
    return result


def parse_number_pairs(values: Iterable[str] | None, option: str) -> dict[str, float]:
    """Repeated ``key=number`` options (metrics, limits) as a dict of finite floats."""
    result: dict[str, float] = {}
    for raw in values or []:
        key, value = split_pair(raw, option)
        try:
            number = float(value)
        except ValueError:
            raise InvalidInputError(f"{option} {key}: {value!r} is not a number")
        if not math.isfinite(number):
            raise InvalidInputError(f"{option} {key}: {value!r} is not a finite number")
        result[key] = number
    return result


def parse_ref(ref: str) -> int | str:
    """A version reference: a number, ``latest``, or a label/alias name."""
    ref = ref.strip()
    if not ref:
        raise InvalidInputError("a version reference cannot be empty")
    return int(ref) if ref.isascii() and ref.isdigit() else ref


def split_name_ref(text: str, default: str) -> tuple[str, str]:
    """``NAME@REF`` -> (name, ref); ``NAME`` alone -> (name, default)."""
    name, _, ref = text.partition("@")
    return name, ref or default


def parse_input(raw: str) -> tuple[str, str]:
    """``ID[:role]`` -> (id, role); the role defaults to ``input``."""
    ident, sep, role = raw.partition(":")
    ident, role = ident.strip(), role.strip()
    if not ident or (sep and not role):
        raise InvalidInputError(f"--input expects ID or ID:role, got {raw!r}")
    return ident, role or "input"


def split_list(text: str | None) -> list[str] | None:
    """``a,b , c`` -> ``["a", "b", "c"]``; None stays None (meaning: not given)."""
    if text is None:
        return None
    return [part.strip() for part in text.split(",") if part.strip()]
