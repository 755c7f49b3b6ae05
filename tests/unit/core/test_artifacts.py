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


def test_unpacking_streams_instead_of_reading_the_archive_into_memory(tmp_path: Path) -> None:
    import tracemalloc

    store = FsspecArtifactStore(str(tmp_path / "a"), cache_dir=tmp_path / "cache")
    src = tmp_path / "weights"
    src.mkdir()
    (src / "model.bin").write_bytes(b"\x07" * (48 << 20))
    ref = store.put_dir(src)
    tracemalloc.start()
    try:
        out = store.materialize_dir(ref)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (out / "model.bin").stat().st_size == 48 << 20
    assert peak < 16 << 20, f"peak {peak / 2**20:.0f} MiB for a 48 MiB archive"


def test_concurrent_unpacks_of_one_artifact_agree(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    store = FsspecArtifactStore(str(tmp_path / "a"), cache_dir=tmp_path / "cache")
    src = tmp_path / "weights"
    src.mkdir()
    for i in range(20):
        (src / f"part{i}.bin").write_bytes(bytes([i]) * 50_000)
    ref = store.put_dir(src)
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda _: store.materialize_dir(ref), range(8)))
    assert len(set(outs)) == 1 and (outs[0] / ".complete").exists()
    assert sorted(p.name for p in outs[0].iterdir()) == sorted(
        [".complete", *(f"part{i}.bin" for i in range(20))]
    )
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [ref.sha256]  # no staging left


def test_an_interrupted_unpack_is_redone(tmp_path: Path) -> None:
    store = FsspecArtifactStore(str(tmp_path / "a"), cache_dir=tmp_path / "cache")
    src = tmp_path / "weights"
    src.mkdir()
    (src / "config.json").write_text("{}")
    ref = store.put_dir(src)
    half = tmp_path / "cache" / ref.sha256
    half.mkdir(parents=True)
    (half / "stale.bin").write_bytes(b"partial")  # an earlier unpack killed midway
    out = store.materialize_dir(ref)
    assert sorted(p.name for p in out.iterdir()) == [".complete", "config.json"]


def test_corrupted_content_is_refused(tmp_path: Path) -> None:
    from llmloop.errors import ConflictError

    store = FsspecArtifactStore(str(tmp_path / "a"), cache_dir=tmp_path / "cache")
    src = tmp_path / "weights"
    src.mkdir()
    (src / "config.json").write_text("{}")
    ref = store.put_dir(src)
    blob = Path(store._ref_path(ref))
    blob.write_bytes(blob.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ConflictError, match="does not match its digest"):
        store.materialize_dir(ref)
    assert not (tmp_path / "cache" / ref.sha256).exists()


def test_a_file_that_is_not_a_folder_archive_is_a_clear_error(
    store: FsspecArtifactStore, tmp_path: Path
) -> None:
    ref = store.put(b"not a tar archive at all")
    with pytest.raises(InvalidInputError, match="is not a directory archive"):
        store.materialize_dir(ref, tmp_path / "out")


def test_writes_leave_no_temporary_files(store: FsspecArtifactStore) -> None:
    refs = [store.put(f"blob {i}".encode()) for i in range(3)]
    names = [p.rsplit("/", 1)[1] for p in store.fs.find(store.root)]
    assert sorted(names) == sorted(r.sha256 for r in refs)


class VanishingFile(type(Path())):  # type: ignore[misc]
    """A local file that can be hashed once and then fails on the upload's read."""

    opened = 0

    def open(self, *args: object, **kwargs: object) -> object:
        type(self).opened += 1
        if type(self).opened > 1:
            raise OSError("the disk went away")
        return super().open(*args, **kwargs)  # type: ignore[arg-type]


def test_a_failed_write_leaves_nothing_behind(store: FsspecArtifactStore, tmp_path: Path) -> None:
    source = tmp_path / "blob.bin"
    source.write_bytes(b"payload")
    VanishingFile.opened = 0
    with pytest.raises(Exception, match="the disk went away"):
        store.put(VanishingFile(source))
    assert store.fs.find(store.root) == []
    assert store.exists(store.put(source))
