"""The content-addressed artifact store on file:// and memory://, and its refusal of escapes."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from llmloop.artifacts.fsspec_store import FsspecArtifactStore, safe_key
from llmloop.core.base import ArtifactRef
from llmloop.errors import InvalidInputError, NotFoundError


@pytest.fixture(params=["file", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> FsspecArtifactStore:
    root = str(tmp_path / "a") if request.param == "file" else f"memory://t-{uuid.uuid4().hex}"
    return FsspecArtifactStore(root, cache_dir=tmp_path / "cache")


def test_put_is_content_addressed_and_idempotent(
    store: FsspecArtifactStore, tmp_path: Path
) -> None:
    ref = store.put(b"hello")
    assert ref.sha256 == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    assert store.put(b"hello") == ref and ref.size == 5
    with store.open(ref) as fh:
        assert fh.read() == b"hello"
    path = tmp_path / "f.bin"
    path.write_bytes(b"hello")
    assert store.put(path) == ref


def test_directories_round_trip(store: FsspecArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "model"
    (src / "sub").mkdir(parents=True)
    (src / "config.json").write_text("{}")
    (src / "sub" / "w.bin").write_bytes(b"\x00\x01")
    ref = store.put_dir(src)
    assert store.put_dir(src).sha256 == ref.sha256  # deterministic archive
    out = store.materialize_dir(ref, tmp_path / "out")
    assert (out / "sub" / "w.bin").read_bytes() == b"\x00\x01"


def test_missing_and_forged_refs(store: FsspecArtifactStore) -> None:
    missing = ArtifactRef(uri="x", sha256="0" * 64, size=1)
    assert not store.exists(missing)
    with pytest.raises(NotFoundError):
        store.open(missing)
    with pytest.raises(InvalidInputError):
        store.open(ArtifactRef(uri="x", sha256="../../etc/passwd", size=1))


@pytest.mark.parametrize(
    "key",
    [
        "../x",
        "a/../../x",
        "/etc/passwd",
        "%2e%2e/x",
        "%252e%252e/x",
        "a\\..\\x",
        "C:/x",
        "s3://bucket/x",
        "a/\x00",
        "",
        "./",
    ],
)
def test_escaping_keys_are_refused(key: str) -> None:
    with pytest.raises(InvalidInputError):
        safe_key(key)


def test_normal_keys_pass() -> None:
    assert safe_key("sha256/ab/cd/x") == "sha256/ab/cd/x"
    assert safe_key("a/./b") == "a/b"
