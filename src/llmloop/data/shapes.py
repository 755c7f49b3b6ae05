"""Record shapes and the canonical form of a row.

Recognises and validates the four training shapes (chat ``messages``, instruction
``prompt``/``response``, preference ``prompt``/``chosen``/``rejected``, plain ``text``; anything
else is a ``table``), renames columns through a mapping, reaches the text fields of a row, and
serialises rows canonically (sorted-key JSON lines) with a sha256 content hash. Batch forms
(``rows_all_valid``, ``batch_texts``, ``field_types``) answer the same questions a column at a
time with C-level ``map``s when the rows share their fields, and fall back to row by row.

It does not read files (``loaders``) nor judge content (``profile``, ``steps``).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from operator import itemgetter
from pathlib import Path
from typing import IO, Any

import orjson
import yaml

from llmloop.core.datasets import RecordShape
from llmloop.errors import ConfigError, InvalidInputError

Row = dict[str, Any]
Batch = list[Row]

REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "chat": ("messages",),
    "preference": ("prompt", "chosen", "rejected"),
    "instruction": ("prompt", "response"),
    "text": ("text",),
}
TEXT_FIELDS = ("prompt", "response", "chosen", "rejected", "text")
_ROLES = {"system", "user", "assistant", "tool", "developer"}


def detect_shape(row: Mapping[str, Any]) -> RecordShape:
    """The shape whose required fields ``row`` has; ``table`` when none matches."""
    for shape, fields in REQUIRED_FIELDS.items():
        if all(name in row for name in fields):
            return shape  # type: ignore[return-value]
    return "table"


def row_problem(row: Mapping[str, Any], shape: RecordShape) -> str | None:
    """Why ``row`` is not a valid ``shape`` record, or ``None`` when it is."""
    if not isinstance(row, Mapping):
        return f"record is a {type(row).__name__}, not an object"
    if shape == "table":
        return None
    missing = [name for name in REQUIRED_FIELDS[shape] if name not in row]
    if missing:
        return f"missing column(s) {', '.join(missing)} for shape '{shape}'"
    if shape == "chat":
        return _messages_problem(row["messages"])
    for name in REQUIRED_FIELDS[shape]:
        if not isinstance(row[name], str):
            return f"'{name}' must be a string, got {type(row[name]).__name__}"
    return None


def rows_all_valid(rows: Sequence[Any], shape: RecordShape) -> bool:
    """``True`` when C-level checks over whole columns show every row is a valid ``shape``
    record; ``False`` means "look row by row" (``row_problem``), not that a row is invalid."""
    if not all(type(row) is dict for row in rows):
        return False
    if shape == "table":
        return True
    if shape == "chat":  # messages need a look inside each row
        return False
    try:
        for name in REQUIRED_FIELDS[shape]:
            if not set(map(type, map(itemgetter(name), rows))) <= {str}:
                return False
    except KeyError:  # a missing column
        return False
    return True


def _messages_problem(messages: Any) -> str | None:
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty list"
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            return f"messages[{i}] must be an object with 'role' and 'content'"
        if message.get("role") not in _ROLES:
            return f"messages[{i}].role must be one of {sorted(_ROLES)}"
        if not isinstance(message.get("content"), str):
            return f"messages[{i}].content must be a string"
    return None


def json_type_of_class(cls: type) -> str:
    """The JSON type name of values of Python class ``cls``."""
    if cls is type(None):
        return "null"
    if issubclass(cls, bool):
        return "boolean"
    if issubclass(cls, int | float):
        return "number"
    if issubclass(cls, str):
        return "string"
    return "array" if issubclass(cls, list) else "object"


def field_types(batch: Sequence[Any]) -> dict[str, Counter[type]]:
    """Field name -> Python type -> rows, by C-level passes when rows share their fields."""
    if all(type(row) is dict for row in batch):
        layouts = Counter(map(tuple, batch))
        if len(layouts) == 1:  # the usual case: one type Counter per column over map()s
            names = next(iter(layouts))
            return {name: Counter(map(type, map(itemgetter(name), batch))) for name in names}
    pairs = Counter(
        (name, type(value))
        for row in batch
        if isinstance(row, Mapping)
        for name, value in row.items()
    )
    out: dict[str, Counter[type]] = {}
    for (name, cls), count in pairs.items():
        out.setdefault(name, Counter())[cls] += count
    return out


def load_mapping(mapping: Mapping[str, str] | str | Path | None) -> dict[str, str]:
    """A column mapping (source name -> canonical name) from a dict or a YAML file."""
    if mapping is None:
        return {}
    if isinstance(mapping, str | Path):
        path = Path(mapping)
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read column mapping {path}: {exc}")
        mapping = loaded if loaded is not None else {}
    if not isinstance(mapping, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
    ):
        raise ConfigError("a column mapping must map column names to column names (strings)")
    targets = list(mapping.values())
    if len(set(targets)) != len(targets):
        raise ConfigError(f"column mapping sends two columns to one name: {targets}")
    return dict(mapping)


def rename_columns(row: Row, mapping: Mapping[str, str]) -> Row:
    """``row`` with mapped columns renamed; other columns kept."""
    if not mapping:
        return row
    return {mapping.get(name, name): value for name, value in row.items()}


def row_text(row: Mapping[str, Any]) -> str:
    """All the text of a row (message contents and text fields), joined by newlines."""
    parts: list[str] = []
    messages = row.get("messages")
    if isinstance(messages, list):
        parts.extend(
            m["content"]
            for m in messages
            if isinstance(m, Mapping) and isinstance(m.get("content"), str)
        )
    parts.extend(row[name] for name in TEXT_FIELDS if isinstance(row.get(name), str))
    if not parts:
        parts.extend(v for v in row.values() if isinstance(v, str))
    return "\n".join(parts)


def batch_texts(rows: Sequence[Any]) -> list[str]:
    """``row_text`` of each row ("" for a non-object): by whole columns when the rows share their
    fields and each text column holds only strings or no strings (the usual case), else row by
    row."""
    if rows and all(type(row) is dict for row in rows):
        layouts = set(map(tuple, rows))
        if len(layouts) == 1 and "messages" not in (names := next(iter(layouts))):
            texts = _texts_by_column(rows, names)
            if texts is not None:
                return texts
    return [row_text(row) if isinstance(row, Mapping) else "" for row in rows]


def _string_column(rows: Sequence[Row], name: str) -> bool | None:
    """Strings in every row (``True``), in none (``False``), or a mix (``None``)."""
    types = set(map(type, map(itemgetter(name), rows)))
    if types == {str}:
        return True
    return None if any(issubclass(t, str) for t in types) else False


def _texts_by_column(rows: Sequence[Row], names: tuple[str, ...]) -> list[str] | None:
    # row_text's rules, a column at a time: the text fields that are strings, else every
    # string value, in the row's own order.
    chosen = [name for name in TEXT_FIELDS if name in names]
    kinds = [_string_column(rows, name) for name in chosen]
    if None in kinds:
        return None
    strings = [name for name, kind in zip(chosen, kinds, strict=True) if kind]
    if not strings:
        kinds = [_string_column(rows, name) for name in names]
        if None in kinds:
            return None
        strings = [name for name, kind in zip(names, kinds, strict=True) if kind]
    columns = [list(map(itemgetter(name), rows)) for name in strings]
    if not columns:
        return [""] * len(rows)
    if len(columns) == 1:
        return columns[0]
    return ["\n".join(parts) for parts in zip(*columns, strict=True)]


def map_text(row: Row, fn: Callable[[str], str]) -> Row:
    """A copy of ``row`` with ``fn`` applied to every text field and message content."""
    out = dict(row)
    messages = row.get("messages")
    if isinstance(messages, list):
        out["messages"] = [
            {**m, "content": fn(m["content"])}
            if isinstance(m, Mapping) and isinstance(m.get("content"), str)
            else m
            for m in messages
        ]
    touched = False
    for name in TEXT_FIELDS:
        if isinstance(row.get(name), str):
            out[name] = fn(row[name])
            touched = True
    if not touched and not isinstance(messages, list):
        for name, value in row.items():
            if isinstance(value, str):
                out[name] = fn(value)
    return out


def text_values(row: Mapping[str, Any]) -> list[str]:
    """Each text value of a row on its own (for filters that must hold for every field)."""
    values: list[str] = []
    messages = row.get("messages")
    if isinstance(messages, list):
        values.extend(
            m["content"]
            for m in messages
            if isinstance(m, Mapping) and isinstance(m.get("content"), str)
        )
    values.extend(row[name] for name in TEXT_FIELDS if isinstance(row.get(name), str))
    return values or [v for v in row.values() if isinstance(v, str)]


def canonical_line(row: Mapping[str, Any]) -> bytes:
    """The canonical JSON line of a row: sorted keys, UTF-8, no spaces, newline-terminated."""
    try:
        return orjson.dumps(row, option=orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE)
    except TypeError as exc:
        raise InvalidInputError(f"row cannot be serialised to JSON: {exc}")


def row_hash(row: Mapping[str, Any]) -> str:
    """sha256 of the canonical line of one row (a stable row identity)."""
    return hashlib.sha256(canonical_line(row)).hexdigest()


def write_canonical(
    batches: Iterable[Iterable[Mapping[str, Any]]], out: IO[bytes]
) -> tuple[str, int]:
    """Write canonical JSONL to ``out``; returns (sha256 of the bytes written, row count)."""
    digest = hashlib.sha256()
    count = 0
    for batch in batches:
        try:
            lines = [canonical_line(row) for row in batch]
        except InvalidInputError:
            lines = [_numbered_line(count + index, row) for index, row in enumerate(batch, 1)]
        chunk = b"".join(lines)
        digest.update(chunk)
        out.write(chunk)
        count += len(lines)
    return digest.hexdigest(), count


def _numbered_line(number: int, row: Mapping[str, Any]) -> bytes:
    """``canonical_line``, its refusal naming the row (e.g. a lone surrogate from a JSON
    escape, which UTF-8 cannot hold)."""
    try:
        return canonical_line(row)
    except InvalidInputError as exc:
        raise InvalidInputError(f"row {number} {exc.detail.removeprefix('row ')}", row=number)


def content_hash(rows: Iterable[Mapping[str, Any]]) -> str:
    """sha256 over the canonical JSONL of ``rows`` (the dataset version's content hash)."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(canonical_line(row))
    return digest.hexdigest()


def iter_rows(batches: Iterable[Batch]) -> Iterator[Row]:
    """Flatten batches into rows."""
    for batch in batches:
        yield from batch
