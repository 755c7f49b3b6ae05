"""Ingest: formats, fsspec URLs, mappings, shapes, bad input, canonical form and hash."""

from __future__ import annotations

import io
import json
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llmloop.data.loaders import LoadOptions, RowReader, read_batches, resolve_format
from llmloop.data.shapes import (
    canonical_line,
    content_hash,
    detect_shape,
    load_mapping,
    map_text,
    row_problem,
    row_text,
    write_canonical,
)
from llmloop.errors import ConfigError, InvalidInputError

CHAT = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


def _jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _rows(reader: RowReader) -> list[dict[str, object]]:
    return [row for batch in reader for row in batch]


def test_jsonl_in_batches(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "d.jsonl", [{"text": f"row {i}"} for i in range(25)])
    reader = RowReader(str(path), LoadOptions(batch_size=10))
    batches = list(reader)
    assert [len(b) for b in batches] == [10, 10, 5]
    assert reader.report.rows_read == 25
    assert reader.report.shape == "text"


@pytest.mark.parametrize(
    ("row", "shape"),
    [
        (CHAT, "chat"),
        ({"prompt": "p", "response": "r"}, "instruction"),
        ({"prompt": "p", "chosen": "a", "rejected": "b"}, "preference"),
        ({"text": "t"}, "text"),
        ({"a": 1}, "table"),
    ],
)
def test_shapes_are_recognised(tmp_path: Path, row: dict[str, object], shape: str) -> None:
    reader = RowReader(str(_jsonl(tmp_path / "d.jsonl", [row])))
    assert _rows(reader) == [row]
    assert reader.report.shape == shape == detect_shape(row)


def test_csv_with_mapping_dict_and_yaml(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("question,answer\nhi,there\nfoo,bar\n", encoding="utf-8")
    mapping = {"question": "prompt", "answer": "response"}
    reader = RowReader(str(path), LoadOptions(mapping=mapping))
    assert _rows(reader) == [
        {"prompt": "hi", "response": "there"},
        {"prompt": "foo", "response": "bar"},
    ]
    assert reader.report.shape == "instruction"
    yaml_file = tmp_path / "map.yaml"
    yaml_file.write_text("question: prompt\nanswer: response\n", encoding="utf-8")
    assert load_mapping(yaml_file) == mapping


def test_parquet_and_hf_folders(tmp_path: Path) -> None:
    pq.write_table(pa.table({"text": ["a", "b", "c"]}), tmp_path / "d.parquet")
    assert _rows(RowReader(str(tmp_path / "d.parquet"), LoadOptions(batch_size=2))) == [
        {"text": "a"},
        {"text": "b"},
        {"text": "c"},
    ]
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"prompt": ["p1", "p2"], "response": ["r1", "r2"]})
    ds.save_to_disk(str(tmp_path / "hf"))
    assert resolve_format(str(tmp_path / "hf")) == "hf"
    assert len(_rows(RowReader(str(tmp_path / "hf")))) == 2
    datasets.DatasetDict({"train": ds, "test": ds.select([0])}).save_to_disk(str(tmp_path / "hfd"))
    assert _rows(RowReader(str(tmp_path / "hfd"), LoadOptions(split="test"))) == [
        {"prompt": "p1", "response": "r1"}
    ]
    with pytest.raises(InvalidInputError, match="no split 'dev'"):
        _rows(RowReader(str(tmp_path / "hfd"), LoadOptions(split="dev")))


def test_fsspec_memory_url() -> None:
    fs = fsspec.filesystem("memory")
    fs.pipe("/llmloop-test/d.jsonl", b'{"text": "remote"}\n')
    assert _rows(RowReader("memory://llmloop-test/d.jsonl")) == [{"text": "remote"}]


def test_malformed_lines_fail_or_skip_with_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "ok"}\n{broken\n\n[1, 2]\n{"text": "also ok"}\n', encoding="utf-8")
    with pytest.raises(InvalidInputError, match="line 2: malformed JSON"):
        _rows(RowReader(str(path)))
    reader = RowReader(str(path), LoadOptions(on_error="skip"))
    assert _rows(reader) == [{"text": "ok"}, {"text": "also ok"}]
    assert [(e.line, e.message.split(":")[0]) for e in reader.report.errors] == [
        (2, "malformed JSON"),
        (4, "record is a list, not an object"),
    ]
    assert reader.report.rows_skipped == 2


def test_missing_columns_are_named(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "d.jsonl", [{"prompt": "p", "response": "r"}, {"prompt": "only"}])
    with pytest.raises(InvalidInputError, match="line 2: missing column"):
        _rows(RowReader(str(path)))
    with pytest.raises(InvalidInputError, match=r"missing column.*messages"):
        _rows(RowReader(str(path), LoadOptions(shape="chat")))
    bad_chat = _jsonl(tmp_path / "c.jsonl", [{"messages": [{"role": "wizard", "content": "x"}]}])
    with pytest.raises(InvalidInputError, match=r"messages\[0\]\.role"):
        _rows(RowReader(str(bad_chat)))


def test_wrong_encoding_names_file_and_offset(tmp_path: Path) -> None:
    path = tmp_path / "latin.jsonl"
    path.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(
        InvalidInputError, match=r"latin\.jsonl: bytes at offset 28 \(line 2\)"
    ) as err:
        _rows(RowReader(str(path)))
    assert err.value.extra["byte_offset"] == 28
    reader = RowReader(str(path), LoadOptions(fallback_encoding="cp1252"))
    assert _rows(reader)[1] == {"text": "café"}
    assert reader.report.fallback_lines == [2]
    with pytest.raises(ConfigError):
        _rows(RowReader(str(path), LoadOptions(fallback_encoding="no-such-codec")))


def test_csv_encoding_errors_name_row_and_column(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes(b"id,text\n1,ok\n2,caf\xe9\n")
    with pytest.raises(InvalidInputError, match=r"latin\.csv: row 2, column 'text' is not valid"):
        _rows(RowReader(str(path)))
    reader = RowReader(str(path), LoadOptions(fallback_encoding="cp1252"))
    assert _rows(reader)[1] == {"id": 2, "text": "café"}
    assert reader.report.fallback_lines == [2]
    assert _rows(RowReader(str(path), LoadOptions(encoding="latin-1")))[1]["text"] == "café"
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("a,b\n1,2,3\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"cannot read as CSV: .*Expected 2 columns"):
        _rows(RowReader(str(ragged)))


def test_other_encodings_and_bom(tmp_path: Path) -> None:
    path = tmp_path / "u16.jsonl"
    path.write_bytes('{"text": "é"}\n'.encode("latin-1"))
    assert _rows(RowReader(str(path), LoadOptions(encoding="latin-1"))) == [{"text": "é"}]
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b'\xef\xbb\xbf{"text": "x"}\n')
    assert _rows(RowReader(str(bom))) == [{"text": "x"}]


def test_empty_missing_and_unknown_files(tmp_path: Path) -> None:
    (tmp_path / "e.jsonl").write_text("\n\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="is empty"):
        _rows(RowReader(str(tmp_path / "e.jsonl")))
    (tmp_path / "e.csv").write_text("", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="is empty"):
        _rows(RowReader(str(tmp_path / "e.csv")))
    with pytest.raises(InvalidInputError, match="no such file"):
        _rows(RowReader(str(tmp_path / "nope.jsonl")))
    with pytest.raises(InvalidInputError, match="no such file"):
        resolve_format(str(tmp_path / "missing"))  # not "cannot tell the format"
    (tmp_path / "data.txt").write_text("x\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="cannot tell the format"):
        resolve_format(str(tmp_path / "data.txt"))
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(InvalidInputError, match="not a Parquet file"):
        _rows(RowReader(str(tmp_path / "bad.parquet")))
    (tmp_path / "hfless").mkdir()
    with pytest.raises(InvalidInputError, match=r"state\.json"):
        _rows(RowReader(str(tmp_path / "hfless")))


def test_all_bad_rows_skipped_is_still_an_error(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text("{x\n{y\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="has no valid records"):
        _rows(RowReader(str(tmp_path / "d.jsonl"), LoadOptions(on_error="skip")))


def test_bad_mappings() -> None:
    with pytest.raises(ConfigError, match="two columns to one name"):
        load_mapping({"a": "text", "b": "text"})
    with pytest.raises(ConfigError):
        load_mapping({"a": 1})  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match="cannot read"):
        load_mapping("/no/such/mapping.yaml")


def test_canonical_form_and_hash(tmp_path: Path) -> None:
    assert canonical_line({"b": 1, "a": "é"}) == '{"a":"é","b":1}\n'.encode()
    assert content_hash([{"b": 1, "a": 2}]) == content_hash([{"a": 2, "b": 1}])
    assert content_hash([{"a": 1}, {"a": 2}]) != content_hash([{"a": 2}, {"a": 1}])
    out = io.BytesIO()
    digest, count = write_canonical([[{"a": 1}], [{"a": 2}, {"a": 3}]], out)
    assert count == 3
    assert digest == content_hash([{"a": 1}, {"a": 2}, {"a": 3}])
    assert out.getvalue().count(b"\n") == 3
    with pytest.raises(InvalidInputError):
        canonical_line({"a": object()})


def test_read_batches_and_text_helpers(tmp_path: Path) -> None:
    batches, report = read_batches(str(_jsonl(tmp_path / "d.jsonl", [CHAT])))
    assert list(batches) == [[CHAT]] and report.rows_read == 1
    assert row_text(CHAT) == "hi\nhello"
    assert map_text(CHAT, str.upper)["messages"][1]["content"] == "HELLO"
    assert row_problem({"messages": []}, "chat") == "'messages' must be a non-empty list"
    assert (
        row_problem({"prompt": 1, "response": "r"}, "instruction")
        == "'prompt' must be a string, got int"
    )


def test_compressed_files_are_read_through(tmp_path: Path) -> None:
    import bz2
    import gzip

    rows = [{"prompt": "a", "response": "b"}, {"prompt": "c", "response": "d"}]
    (tmp_path / "d.jsonl.gz").write_bytes(gzip.compress(b"".join(canonical_line(r) for r in rows)))
    assert _rows(RowReader(str(tmp_path / "d.jsonl.gz"))) == rows
    (tmp_path / "d.csv.bz2").write_bytes(bz2.compress(b'prompt,response\n"two\nlines",x\n'))
    assert _rows(RowReader(str(tmp_path / "d.csv.bz2"))) == [
        {"prompt": "two\nlines", "response": "x"}
    ]
    (tmp_path / "bad.jsonl.gz").write_bytes(b"not gzip at all")
    with pytest.raises(InvalidInputError, match=r"cannot read .*bad\.jsonl\.gz"):
        _rows(RowReader(str(tmp_path / "bad.jsonl.gz")))


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32"])
def test_utf16_and_utf32_files_are_recognised_by_their_byte_order_mark(
    tmp_path: Path, encoding: str
) -> None:
    bom = {"utf-16": "", "utf-16-be": "\ufeff", "utf-32": ""}[encoding]  # the codec adds one
    text = bom + '{"text": "café 日本 🎉"}\r\n{"text": "two"}\n'
    (tmp_path / "d.jsonl").write_bytes(text.encode(encoding))
    reader = RowReader(str(tmp_path / "d.jsonl"))
    assert _rows(reader) == [{"text": "café 日本 🎉"}, {"text": "two"}]
    assert reader.report.encoding.startswith(encoding[:6])
    (tmp_path / "d.csv").write_bytes((bom + "text;n\ncafé;1\n").encode(encoding))
    assert _rows(RowReader(str(tmp_path / "d.csv"))) == [{"text": "café", "n": 1}]
    named = RowReader(str(tmp_path / "d.jsonl"), LoadOptions(encoding=encoding))
    assert len(_rows(named)) == 2


def test_csv_column_types_hold_for_the_whole_file(tmp_path: Path) -> None:
    # pyarrow alone guesses from the first 4 MiB block and fails on a later 'n/a'.
    path = tmp_path / "late.csv"
    lines = [f"row {i} {'x' * 40},{i},{i}.5,00{i % 7},,true" for i in range(120_000)]
    lines.append("last row,not a number,NA,0,,false")
    path.write_text("text,n,f,code,empty,flag\n" + "\n".join(lines) + "\n", encoding="utf-8")
    assert path.stat().st_size > 1 << 22
    rows = _rows(RowReader(str(path)))
    assert len(rows) == 120_001
    assert rows[1] == {
        "text": f"row 1 {'x' * 40}",
        "n": "1",  # one word in the column keeps it text, first block included
        "f": 1.5,
        "code": "001",  # leading zeros are kept
        "empty": None,
        "flag": True,
    }
    assert rows[-1]["n"] == "not a number" and rows[-1]["f"] is None


def test_repeated_column_names_are_refused_not_merged(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("a,b,a\n1,2,3\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"repeats column.*'a'"):
        _rows(RowReader(str(tmp_path / "d.csv")))
    table = pa.Table.from_arrays([pa.array(["x"]), pa.array(["y"])], names=["t", "t"])
    pq.write_table(table, tmp_path / "d.parquet")
    with pytest.raises(InvalidInputError, match=r"repeats column.*'t'"):
        _rows(RowReader(str(tmp_path / "d.parquet")))


def test_parquet_decimals_become_numbers_and_binary_is_named(tmp_path: Path) -> None:
    import decimal

    price = pa.array([decimal.Decimal("1.50")], pa.decimal128(10, 2))
    utf8 = pa.array([b"caf\xc3\xa9"], pa.binary())
    pq.write_table(pa.table({"text": ["a"], "price": price, "raw": utf8}), tmp_path / "d.parquet")
    assert _rows(RowReader(str(tmp_path / "d.parquet"))) == [
        {"text": "a", "price": 1.5, "raw": "café"}
    ]
    blob = pa.array([b"\xff\x00"], pa.binary())
    pq.write_table(pa.table({"text": ["a"], "blob": blob}), tmp_path / "b.parquet")
    with pytest.raises(InvalidInputError, match="column 'blob' holds binary data"):
        _rows(RowReader(str(tmp_path / "b.parquet")))
    fixed = pa.array([b"\xff\xfe"], pa.binary(2))
    pq.write_table(pa.table({"text": ["a"], "uuid": fixed}), tmp_path / "f.parquet")
    with pytest.raises(InvalidInputError, match="column 'uuid' holds binary data"):
        _rows(RowReader(str(tmp_path / "f.parquet")))


def test_a_row_json_cannot_hold_is_named_by_number(tmp_path: Path) -> None:
    # A lone surrogate escape parses, but UTF-8 cannot store it.
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "fine"}\n{"text": "bad \\ud800 half"}\n', encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"^row 2 cannot be serialised to JSON"):
        write_canonical(RowReader(str(path)), io.BytesIO())
