"""Ingest: read JSONL, CSV, Parquet and HF ``save_to_disk`` folders into batches of canonical rows.

A :class:`RowReader` streams any fsspec URL in batches of plain dicts (bounded memory), renames
columns through a mapping, checks every row against the record shape, and fills a
:class:`LoadReport` as it goes (rows read and skipped, errors with line numbers, encoding used).
``on_error="fail"`` refuses the whole ingest at the first bad record; ``"skip"`` ingests the rest.
CSV separators (``,``, ``;``, tab, ``|``) are read off the header line unless one is given, and
CSV column types are decided over the whole file (``csvread``). Files named ``.gz``, ``.bz2``,
``.xz`` or ``.zst`` are decompressed as they stream; UTF-16 and UTF-32 files are recognised by
their byte order mark. Columns JSON cannot hold (repeated names, binary data) are refused by name.

It does not store anything: the service hashes (``shapes.write_canonical``) and stores the rows.
HF folders are read as the Arrow files they are; the ``datasets`` package is not imported.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import json
import lzma
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import PurePosixPath
from typing import IO, Any, Literal

import fsspec
import orjson
import pyarrow as pa
import pyarrow.ipc as pa_ipc
import pyarrow.parquet as pa_parquet
from pydantic import BaseModel, ConfigDict, Field

from llmloop.core.datasets import RecordShape
from llmloop.data.shapes import (
    Batch,
    Row,
    detect_shape,
    load_mapping,
    rename_columns,
    row_problem,
    rows_all_valid,
)
from llmloop.errors import ConfigError, InvalidInputError

FileFormat = Literal["auto", "jsonl", "csv", "parquet", "hf"]
_SUFFIXES: dict[str, FileFormat] = {
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
MAX_REPORTED_ERRORS = 100
# Byte order marks of the encodings whose lines are not ASCII-compatible (UTF-32 first: its LE
# mark starts with UTF-16's).
_WIDE_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_READ_ERRORS = (OSError, EOFError, zlib.error, lzma.LZMAError)
_JSONL_CHUNK_BYTES = 1 << 20  # lines read (and parsed in one loop) at a time


class LoadOptions(BaseModel):
    """How to read one source."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: FileFormat = Field(default="auto", description="File format; 'auto' uses the suffix.")
    batch_size: int = Field(default=10_000, ge=1, le=1_000_000, description="Rows per batch.")
    on_error: Literal["fail", "skip"] = Field(
        default="fail", description="'fail' refuses the ingest on a bad record; 'skip' drops it."
    )
    encoding: str = Field(default="utf-8", description="Text encoding of JSONL and CSV files.")
    fallback_encoding: str | None = Field(
        default=None,
        description="Encoding to decode a line with when 'encoding' fails (e.g. 'cp1252'); "
        "unset means undecodable bytes are an error.",
    )
    delimiter: str | None = Field(
        default=None,
        min_length=1,
        max_length=1,
        description="CSV field separator; unset picks ',', ';', tab or '|' from the header line.",
    )
    mapping: dict[str, str] = Field(
        default_factory=dict, description="Column renames, source name -> canonical name."
    )
    shape: RecordShape | None = Field(
        default=None, description="Expected record shape; unset infers it from the first row."
    )
    split: str | None = Field(default=None, description="Split of an HF DatasetDict folder.")
    storage_options: dict[str, Any] = Field(
        default_factory=dict, description="fsspec storage options (credentials, endpoints)."
    )


class RowError(BaseModel):
    """One refused record."""

    line: int = Field(description="1-based line (JSONL) or row number (other formats).")
    message: str = Field(description="What is wrong with it.")


class LoadReport(BaseModel):
    """What an ingest read, refused and assumed."""

    source: str
    format: str = ""
    shape: str = ""
    rows_read: int = 0
    rows_skipped: int = 0
    errors: list[RowError] = Field(default_factory=list, description="First 100 errors.")
    columns: list[str] = Field(default_factory=list)
    encoding: str = ""
    fallback_lines: list[int] = Field(
        default_factory=list, description="Lines decoded with the fallback encoding (first 100)."
    )


def resolve_format(
    source: str, requested: FileFormat = "auto", storage_options: dict[str, Any] | None = None
) -> FileFormat:
    """The format of ``source``: the requested one, or one guessed from its suffix or layout."""
    if requested != "auto":
        return requested
    fs, path = fsspec.core.url_to_fs(source, **(storage_options or {}))
    if fs.isdir(path):
        return "hf"
    if not fs.exists(path):
        raise InvalidInputError(f"no such file: {source}")
    suffixes = PurePosixPath(path).suffixes
    for suffix in reversed(suffixes):
        if suffix.lower() in _SUFFIXES:
            return _SUFFIXES[suffix.lower()]
    raise InvalidInputError(
        f"cannot tell the format of {source}: use a .jsonl/.csv/.parquet suffix or set format"
    )


class RowReader:
    """Streams one source as batches of rows; ``report`` is complete once iteration ends."""

    def __init__(
        self, source: str, options: LoadOptions | None = None, name: str | None = None
    ) -> None:
        self.source = str(source)
        self.name = name or self.source  # what messages and the report call it (an upload's name)
        self.options = options if options is not None else LoadOptions()
        for label, name in (
            ("", self.options.encoding),
            ("fallback ", self.options.fallback_encoding),
        ):
            try:
                codecs.lookup(name or "utf-8")
            except LookupError:
                raise ConfigError(f"unknown {label}encoding {name!r}")
        self.mapping = load_mapping(self.options.mapping)
        self.report = LoadReport(source=self.name, encoding=self.options.encoding)
        self._shape: RecordShape | None = self.options.shape

    def __iter__(self) -> Iterator[Batch]:
        fmt = resolve_format(self.source, self.options.format, self.options.storage_options)
        self.report.format = fmt
        readers = {
            "jsonl": self._jsonl,
            "csv": self._arrow_csv,
            "parquet": self._parquet,
            "hf": self._hf,
        }
        batch: Batch = []
        chunks = readers[fmt]()
        while True:
            try:
                numbers, rows = next(chunks)
            except StopIteration:
                break
            except _READ_ERRORS as exc:  # a truncated archive, a failing disk or network
                raise InvalidInputError(f"cannot read {self.name}: {exc}")
            batch.extend(self._accept_many(numbers, rows))
            while len(batch) >= self.options.batch_size:
                yield batch[: self.options.batch_size]
                batch = batch[self.options.batch_size :]
        if batch:
            yield batch
        if self.report.rows_read == 0:
            what = "has no valid records" if self.report.rows_skipped else "is empty"
            raise InvalidInputError(f"{self.name} {what}", errors=self._error_dicts())

    def rows(self) -> Iterator[Row]:
        """The rows one by one."""
        for batch in self:
            yield from batch

    def _accept_many(self, numbers: Sequence[int], rows: list[Any]) -> list[Row]:
        """The accepted rows of one chunk: whole-column checks when they settle it (no mapping,
        every row a valid record of the known shape), else ``_accept`` row by row."""
        start = 0
        accepted: list[Row] = []
        while start < len(rows) and not (self._shape and self.report.shape):
            first = self._accept(numbers[start], rows[start])  # fixes the shape and columns
            accepted.extend(() if first is None else (first,))
            start += 1
        if start == len(rows):
            return accepted
        rest = rows[start:] if start else rows
        if not self.mapping and self._shape and rows_all_valid(rest, self._shape):
            self.report.rows_read += len(rest)
            return accepted + rest if accepted else rest
        checked = (self._accept(n, row) for n, row in zip(numbers[start:], rest, strict=True))
        return accepted + [row for row in checked if row is not None]

    def _accept(self, number: int, row: Any) -> Row | None:
        if not isinstance(row, dict):
            self._refuse(number, f"record is a {type(row).__name__}, not an object")
            return None
        row = rename_columns(row, self.mapping)
        if self._shape is None:
            self._shape = detect_shape(row)
            self.report.shape = self._shape
            self.report.columns = sorted(row)
        elif not self.report.shape:
            self.report.shape = self._shape
            self.report.columns = sorted(row)
        problem = row_problem(row, self._shape)
        if problem is not None:
            self._refuse(number, problem)
            return None
        self.report.rows_read += 1
        return row

    def _refuse(self, number: int, message: str) -> None:
        where = "line" if self.report.format == "jsonl" else "row"
        if self.options.on_error == "fail":
            raise InvalidInputError(
                f"{self.name} {where} {number}: {message}", line=number, source=self.name
            )
        self.report.rows_skipped += 1
        if len(self.report.errors) < MAX_REPORTED_ERRORS:
            self.report.errors.append(RowError(line=number, message=message))

    def _error_dicts(self) -> list[dict[str, Any]]:
        return [e.model_dump() for e in self.report.errors]

    def _open(self, path: str | None = None) -> IO[bytes]:
        """The source as bytes, decompressed when its name ends in .gz, .bz2, .xz, .zst..."""
        target = path or self.source
        compression = fsspec.utils.infer_compression(target)
        try:
            if "://" not in target and not self.options.storage_options and not compression:
                # A plain local path: the OS's file (fsspec's local layer only adds imports).
                return open(target, "rb")
            handle = fsspec.open(
                target, "rb", compression=compression, **self.options.storage_options
            ).open()
            if isinstance(handle, fsspec.spec.AbstractBufferedFile):
                # A remote file (s3, gcs, http...): its readlines takes no size hint, and
                # lines are read a chunk at a time. The standard buffer gives both.
                return io.BufferedReader(handle, _JSONL_CHUNK_BYTES)  # type: ignore[arg-type]
            return handle  # type: ignore[no-any-return]
        except FileNotFoundError:
            raise InvalidInputError(f"no such file: {target}")
        except IsADirectoryError:
            raise InvalidInputError(f"cannot open {target}: it is a folder")
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"cannot open {target}: {exc}")

    def _decode(self, raw: bytes, number: int, offset: int) -> str:
        try:
            return raw.decode(self.options.encoding)
        except UnicodeDecodeError as exc:
            if self.options.fallback_encoding is None:
                raise InvalidInputError(
                    f"{self.name}: bytes at offset {offset + exc.start} (line {number}) are not "
                    f"valid {self.options.encoding}; set fallback_encoding (--fallback-encoding "
                    "cp1252 on the CLI) or re-encode the file",
                    byte_offset=offset + exc.start,
                    line=number,
                )
            if len(self.report.fallback_lines) < MAX_REPORTED_ERRORS:
                self.report.fallback_lines.append(number)
            return raw.decode(self.options.fallback_encoding, errors="replace")

    def _effective_encoding(self) -> str:
        """The encoding asked for; UTF-16 or UTF-32 instead of the default UTF-8 when the
        file starts with their byte order mark (as spreadsheet "Unicode text" exports do)."""
        if codecs.lookup(self.options.encoding).name != "utf-8":
            return self.options.encoding
        with self._open() as handle:
            head = handle.read(4)
        for bom, wide in _WIDE_BOMS:
            if head.startswith(bom):
                self.report.encoding = wide
                return wide
        return self.options.encoding

    def _line_chunks(self, handle: IO[bytes], encoding: str) -> Iterator[list[bytes]]:
        """Lists of raw lines; UTF-16/32 text is decoded and handed on as UTF-8 lines (its
        newline bytes are not b"\\n", so splitting the raw bytes would cut characters)."""
        if not codecs.lookup(encoding).name.startswith(("utf-16", "utf-32")):
            while lines := handle.readlines(_JSONL_CHUNK_BYTES):
                yield lines
            return
        text = io.TextIOWrapper(handle, encoding=encoding, newline="")  # type: ignore[type-var]
        try:
            while decoded := text.readlines(_JSONL_CHUNK_BYTES):
                yield [line.encode("utf-8") for line in decoded]
        except UnicodeError as exc:
            raise InvalidInputError(f"{self.name} is not valid {encoding}: {exc}")

    def _jsonl(self) -> Iterator[tuple[Sequence[int], list[Any]]]:
        encoding = self._effective_encoding()
        wide = codecs.lookup(encoding).name.startswith(("utf-16", "utf-32"))
        utf8 = wide or self.options.encoding.lower().replace("_", "-") in ("utf-8", "utf8")
        number, offset = 1, 0
        with self._open() as handle:
            for lines in self._line_chunks(handle, encoding):
                if number == 1 and lines[0].startswith(b"\xef\xbb\xbf"):
                    offset += 3
                    lines[0] = lines[0][3:]
                try:
                    # The usual chunk: every line one UTF-8 JSON value, parsed by a C-level loop.
                    rows = [orjson.loads(raw) for raw in lines] if utf8 else None
                except orjson.JSONDecodeError:  # blank, malformed or not UTF-8: line by line
                    rows = None
                if rows is not None:
                    yield range(number, number + len(lines)), rows
                else:
                    yield self._jsonl_lines(lines, number, offset, utf8)
                number += len(lines)
                offset += sum(map(len, lines))

    def _jsonl_lines(
        self, lines: list[bytes], number: int, offset: int, utf8: bool
    ) -> tuple[list[int], list[Any]]:
        numbers: list[int] = []
        rows: list[Any] = []
        for number, raw in enumerate(lines, start=number):  # noqa: B020 -- a running count
            start, offset = offset, offset + len(raw)
            if not raw.strip():
                continue
            try:
                # orjson reads UTF-8 bytes directly; other encodings are decoded first.
                data = orjson.loads(raw) if utf8 else json.loads(self._decode(raw, number, start))
            except orjson.JSONDecodeError as exc:
                if "utf-8" in str(exc).lower() or "surrogate" in str(exc).lower():
                    data = self._retry_decoded(raw, number, start)
                    if data is _BAD:
                        continue
                else:
                    self._refuse(number, f"malformed JSON: {exc}")
                    continue
            except json.JSONDecodeError as exc:
                self._refuse(number, f"malformed JSON: {exc}")
                continue
            numbers.append(number)
            rows.append(data)
        return numbers, rows

    def _retry_decoded(self, raw: bytes, number: int, offset: int) -> Any:
        text = self._decode(raw, number, offset)
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            self._refuse(number, f"malformed JSON: {exc}")
            return _BAD

    def _arrow_csv(self) -> Iterator[tuple[Sequence[int], list[Any]]]:
        # Imported here: pyarrow.compute costs ~40 MB that JSONL and Parquet reads never use.
        from llmloop.data.csvread import (
            column_names,
            infer_column_types,
            raw_batches,
            sniff_delimiter,
            typed_batches,
        )

        encoding = self._effective_encoding()
        with self._open() as handle:
            delimiter = self.options.delimiter or sniff_delimiter(handle, encoding)
        args = (self._open, self.name, encoding, delimiter)
        names = column_names(*args)
        if not names:
            return
        types = infer_column_types(raw_batches(*args, names))  # the whole file, then read
        batches = typed_batches(raw_batches(*args, names), types)
        for numbers, rows in self._arrow_batches(batches):
            yield (
                numbers,
                [self._decode_cells(n, row) for n, row in zip(numbers, rows, strict=True)],
            )

    def _decode_cells(self, number: int, row: dict[str, Any]) -> dict[str, Any]:
        # pyarrow leaves a CSV column it cannot decode as binary; name the row and column.
        for name, value in row.items():
            if not isinstance(value, bytes):
                continue
            try:
                row[name] = value.decode(self.options.encoding)
            except UnicodeDecodeError as exc:
                if self.options.fallback_encoding is None:
                    raise InvalidInputError(
                        f"{self.name}: row {number}, column {name!r} is not valid "
                        f"{self.options.encoding} (byte {exc.start} of the cell); set "
                        "fallback_encoding (--fallback-encoding cp1252 on the CLI) or re-encode "
                        "the file",
                        line=number,
                        column=name,
                    )
                row[name] = value.decode(self.options.fallback_encoding, errors="replace")
                if len(self.report.fallback_lines) < MAX_REPORTED_ERRORS:
                    self.report.fallback_lines.append(number)
        return row

    def _parquet(self) -> Iterator[tuple[Sequence[int], list[Any]]]:
        handle = self._open()
        try:
            try:
                parquet = pa_parquet.ParquetFile(handle)
            except (pa.ArrowInvalid, OSError) as exc:
                raise InvalidInputError(f"{self.name}: not a Parquet file: {exc}")
            batches = parquet.iter_batches(batch_size=self.options.batch_size)
            yield from self._arrow_batches(map(self._jsonable, batches))
        finally:
            handle.close()

    def _hf(self) -> Iterator[tuple[Sequence[int], list[Any]]]:
        fs, root = fsspec.core.url_to_fs(self.source, **self.options.storage_options)
        root = root.rstrip("/")
        if fs.exists(f"{root}/dataset_dict.json"):
            splits = json.loads(fs.cat_file(f"{root}/dataset_dict.json"))["splits"]
            split = self.options.split or ("train" if "train" in splits else splits[0])
            if split not in splits:
                raise InvalidInputError(f"{self.name} has no split {split!r}; it has {splits}")
            root = f"{root}/{split}"
        if not fs.exists(f"{root}/state.json"):
            raise InvalidInputError(
                f"{self.name} is not a datasets save_to_disk folder (no state.json)"
            )
        state = json.loads(fs.cat_file(f"{root}/state.json"))
        for entry in state.get("_data_files", []):
            with fs.open(f"{root}/{entry['filename']}", "rb") as handle:
                yield from self._arrow_batches(map(self._jsonable, pa_ipc.open_stream(handle)))

    def _jsonable(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """``batch`` with the columns JSON has no value for made plain: decimals become floats,
        UTF-8 bytes text; other bytes and repeated column names are refused by name."""
        names = batch.schema.names
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise InvalidInputError(
                f"{self.name} repeats column(s) {', '.join(map(repr, repeated))}; a row keeps "
                "one value per name, so give every column its own name"
            )
        columns = list(batch.columns)
        for index, (name, column) in enumerate(zip(names, columns, strict=True)):
            kind = column.type
            if pa.types.is_decimal(kind):
                columns[index] = column.cast(pa.float64())
                continue
            binary = (pa.types.is_binary, pa.types.is_large_binary, pa.types.is_fixed_size_binary)
            if not any(test(kind) for test in binary):
                continue
            try:  # bytes that are UTF-8 text (as some writers store strings) become strings
                columns[index] = column.cast(pa.string())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise InvalidInputError(
                    f"{self.name}: column {name!r} holds binary data, which a dataset row "
                    "cannot; drop it or encode it as text (e.g. base64) first"
                )
        return pa.RecordBatch.from_arrays(columns, names=names)

    def _arrow_batches(
        self, batches: Iterable[pa.RecordBatch]
    ) -> Iterator[tuple[Sequence[int], list[Any]]]:
        number = 0
        for record_batch in batches:
            rows = record_batch.to_pylist()
            yield range(number + 1, number + len(rows) + 1), rows
            number += len(rows)


_BAD = object()


def source_fingerprint(source: str, storage_options: dict[str, Any] | None = None) -> str:
    """A digest that changes when ``source`` (a file, or any file of a folder) changes, from
    the file system's metadata (size, modification time, ETag...) without reading the data."""
    fs, path = fsspec.core.url_to_fs(source, **(storage_options or {}))
    paths = sorted(fs.find(path)) if fs.isdir(path) else [path]
    infos = [fs.info(item) for item in paths]
    return hashlib.sha256(json.dumps(infos, sort_keys=True, default=str).encode()).hexdigest()


def read_batches(
    source: str, options: LoadOptions | None = None
) -> tuple[Iterator[Batch], LoadReport]:
    """Batches of ``source`` and the report they fill as they are consumed."""
    reader = RowReader(source, options)
    return iter(reader), reader.report
