"""CSV files as Arrow batches of rows, with column types decided over the whole file.

pyarrow's CSV reader guesses a column's type from its first block (4 MiB) only: a later value
that does not fit (``n/a`` under numbers, a word in an id column) stops the read half way, and
ids such as ``00123`` lose their leading zeros. So every cell is read as bytes, and a first pass
(:func:`infer_column_types`) keeps a column as integers, floats or booleans only when every
value of the whole file converts (null markers such as ``""`` or ``NA`` aside) and none is a
number written with a leading zero; every other column stays text. The second pass
(:func:`typed_rows`) converts with the same casts, so it cannot fail where the first passed.

It does not open files or check records (``loaders``).
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Iterator
from typing import IO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from llmloop.errors import InvalidInputError

_DELIMITERS = ",;\t|"
_BLOCK_BYTES = 1 << 22
_NULLS = pa.array(pa_csv.ConvertOptions().null_values, pa.string())
_CANDIDATES: tuple[pa.DataType, ...] = (pa.int64(), pa.float64(), pa.bool_())
_LEADING_ZERO = r"^[+-]?0[0-9]"

ColumnTypes = dict[str, pa.DataType | None]  # None: text (decoded per cell when not UTF-8)


def sniff_delimiter(handle: IO[bytes], encoding: str = "utf-8") -> str:
    """The CSV separator the header line uses most (outside quotes): ',', ';', tab or '|'.

    Exports from spreadsheets in many locales use ';'; read with ',' they would become one
    column. A stream that cannot seek back, or a header with none of them, means ','.
    """
    if not handle.seekable():
        return ","
    head = handle.read(1 << 16)
    handle.seek(0)
    text = codecs.getincrementaldecoder(encoding)(errors="replace").decode(head)
    line = text.split("\n", 1)[0].lstrip("\ufeff")
    counts = dict.fromkeys(_DELIMITERS, 0)
    quoted = False
    for char in line:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in counts:
            counts[char] += 1
    best = max(counts, key=lambda d: counts[d])  # ties keep the earlier, so ',' wins
    return best if counts[best] else ","


Opener = Callable[[], IO[bytes]]


def column_names(opener: Opener, source: str, encoding: str, delimiter: str) -> list[str]:
    """The header's column names (``[]`` for an empty file); a repeated name is refused."""
    read = pa_csv.ReadOptions(encoding=encoding, block_size=_BLOCK_BYTES)
    try:
        with opener() as handle:
            reader = pa_csv.open_csv(
                handle, read_options=read, parse_options=pa_csv.ParseOptions(delimiter=delimiter)
            )
            names: list[str] = reader.schema.names
    except pa.ArrowInvalid as exc:
        if "Empty CSV file" in str(exc):
            return []
        raise InvalidInputError(f"{source}: cannot read as CSV: {exc}")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise InvalidInputError(
            f"{source}: the header repeats column(s) {', '.join(map(repr, repeated))}; "
            "give every column its own name (a row keeps one value per name)"
        )
    return names


def raw_batches(
    opener: Opener, source: str, encoding: str, delimiter: str, names: list[str]
) -> Iterator[pa.RecordBatch]:
    """Record batches with every column as bytes (no type guessing)."""
    read = pa_csv.ReadOptions(encoding=encoding, block_size=_BLOCK_BYTES)
    convert = pa_csv.ConvertOptions(
        column_types={name: pa.binary() for name in names}, strings_can_be_null=False
    )
    with opener() as handle:
        try:
            reader = pa_csv.open_csv(
                handle,
                read_options=read,
                parse_options=pa_csv.ParseOptions(delimiter=delimiter),
                convert_options=convert,
            )
            yield from reader
        except pa.ArrowInvalid as exc:
            raise InvalidInputError(f"{source}: cannot read as CSV: {exc}")


def _as_text(column: pa.Array) -> pa.Array | None:
    """The column as UTF-8 strings, or ``None`` when some cell is not valid UTF-8."""
    try:
        return pc.cast(column, pa.string())
    except pa.ArrowInvalid:
        return None


def _present(column: pa.Array) -> pa.Array:
    """The cells of a text column that are not null markers."""
    return pc.filter(column, pc.invert(pc.is_in(column, value_set=_NULLS)))


def _converts(values: pa.Array, target: pa.DataType) -> bool:
    if target != pa.bool_() and pc.any(pc.match_substring_regex(values, _LEADING_ZERO)).as_py():
        return False  # ids and codes keep their zeros
    try:
        pc.cast(values, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


def infer_column_types(batches: Iterator[pa.RecordBatch]) -> ColumnTypes:
    """Column -> the narrowest type every value of the file converts to (``None``: text;
    ``pa.null()``: a column of null markers only)."""
    options: dict[str, list[pa.DataType]] = {}
    filled: set[str] = set()
    for batch in batches:
        for name, column in zip(batch.schema.names, batch.columns, strict=True):
            left = options.setdefault(name, list(_CANDIDATES))
            text = _as_text(column) if left else None
            if text is None:  # not UTF-8 (decoded per cell later) or already text
                left.clear()
                filled.add(name)
                continue
            values = _present(text)
            if len(values):
                filled.add(name)
                options[name] = [t for t in left if _converts(values, t)]
    types: ColumnTypes = {}
    for name, left in options.items():
        types[name] = (left[0] if left else None) if name in filled else pa.null()
    return types


def _convert(column: pa.Array, target: pa.DataType | None) -> pa.Array:
    if target is None:
        text = _as_text(column)
        return column if text is None else text  # bytes: decoded per cell by the caller
    if target == pa.null():
        return pa.nulls(len(column))
    text = pc.cast(column, pa.string())
    nulls = pc.is_in(text, value_set=_NULLS)
    return pc.cast(pc.if_else(nulls, pa.scalar(None, pa.string()), text), target)


def typed_batches(
    batches: Iterator[pa.RecordBatch], types: ColumnTypes
) -> Iterator[pa.RecordBatch]:
    """The batches with their columns converted to ``types``."""
    for batch in batches:
        names = batch.schema.names
        columns = [_convert(col, types.get(n)) for n, col in zip(names, batch.columns, strict=True)]
        yield pa.RecordBatch.from_arrays(columns, names=names)
