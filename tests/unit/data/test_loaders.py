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
