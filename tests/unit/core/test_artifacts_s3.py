"""The artifact store on S3 (moto's server on 127.0.0.1): round trips, uploads that fail halfway
leave nothing at the digest's key, and the object store's own failures (no bucket, no
credentials, endpoint down) are one clear error. Skipped when moto or s3fs is not installed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.fixtures import moto_s3

from llmloop.artifacts.fsspec_store import FsspecArtifactStore
from llmloop.errors import UpstreamError

endpoint, bucket = moto_s3.endpoint, moto_s3.bucket  # the fixtures
free_port, s3_client = moto_s3.free_port, moto_s3.s3_client


@pytest.fixture
def no_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def options(endpoint: str, **extra: Any) -> dict[str, Any]:
    return {
        "endpoint_url": endpoint,
        "key": "test",
        "secret": "test",
        "client_kwargs": {"region_name": "us-east-1"},
        "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 2},
        "skip_instance_cache": True,
        **extra,
    }


def keys(store: FsspecArtifactStore) -> list[str]:
    store.fs.invalidate_cache()
    return sorted(store.fs.find(store.root))


def test_round_trip_of_files_and_folders(
    endpoint: str, bucket: str, tmp_path: Path, no_aws_env: None
) -> None:
    store = FsspecArtifactStore(f"s3://{bucket}/team", tmp_path / "cache", options(endpoint))
    ref = store.put(b"hello")
    assert ref.uri.startswith(f"s3://{bucket}/team/sha256/") and store.read_bytes(ref) == b"hello"
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "model.bin").write_bytes(b"\x01" * 100_000)
    folder = store.put_dir(weights)
    out = store.materialize_dir(folder)
    assert (out / "model.bin").read_bytes() == b"\x01" * 100_000
    assert [k.rsplit("/", 1)[1] for k in keys(store)] == sorted([ref.sha256, folder.sha256])


class BrokenSource(type(Path())):  # type: ignore[misc]
    """A local file whose second read (the upload, after hashing) fails after 12 MiB."""

    reads = 0

    def open(self, *args: Any, **kwargs: Any) -> Any:
        handle = super().open(*args, **kwargs)
        type(self).reads += 1
        if type(self).reads < 2:
            return handle
        real_read, sent = handle.read, [0]

        class Reader:
            def __enter__(self) -> Reader:
                return self

            def __exit__(self, *exc: object) -> None:
                handle.close()

            def read(self, n: int = -1) -> bytes:
                if sent[0] >= 12 << 20:
                    raise OSError("disk went away")
                chunk: bytes = real_read(n)
                sent[0] += len(chunk)
                return chunk

        return Reader()


def test_an_upload_that_fails_halfway_leaves_nothing_behind(
    endpoint: str, bucket: str, tmp_path: Path, no_aws_env: None
) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(b"\x02" * (20 << 20))
    # 5 MiB parts: the failure comes after two parts of a multipart upload were sent
    store = FsspecArtifactStore(
        f"s3://{bucket}/p", tmp_path / "cache", options(endpoint, default_block_size=5 << 20)
    )
    BrokenSource.reads = 0
    with pytest.raises(UpstreamError, match="disk went away"):
        store.put(BrokenSource(big))
    assert keys(store) == []  # nothing committed at the digest's key, nor anywhere else
    assert s3_client(endpoint).list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    ref = store.put(big)  # and a later upload of the same content works
    assert store.exists(ref) and ref.size == 20 << 20


def test_a_missing_bucket_is_reported_not_created(
    endpoint: str, tmp_path: Path, no_aws_env: None
) -> None:
    store = FsspecArtifactStore("s3://no-such-bucket/p", tmp_path / "cache", options(endpoint))
    with pytest.raises(UpstreamError, match="bucket or container 'no-such-bucket' does not exist"):
        store.put(b"hello")
    assert not store.fs.exists("no-such-bucket")


def test_missing_credentials_are_reported(endpoint: str, bucket: str, no_aws_env: None) -> None:
    opts = options(endpoint)
    del opts["key"], opts["secret"]
    store = FsspecArtifactStore(f"s3://{bucket}/p", None, opts)
    with pytest.raises(UpstreamError, match=f"artifact store s3://{bucket}/p: .*no credentials"):
        store.put(b"hello")


def test_an_endpoint_that_is_down_is_reported(tmp_path: Path, no_aws_env: None) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    store = FsspecArtifactStore("s3://bucket/p", tmp_path / "cache", options(down))
    with pytest.raises(UpstreamError, match="the endpoint cannot be reached"):
        store.put(b"hello")


def test_datasets_on_s3_are_read_a_chunk_of_lines_at_a_time(
    endpoint: str, bucket: str, no_aws_env: None
) -> None:
    """JSONL and CSV sources on S3: fsspec's remote files take no readlines size hint, which
    failed every read of a stored dataset (clean, split, training, evaluation)."""
    import fsspec

    from llmloop.data.loaders import LoadOptions, RowReader

    opts = options(endpoint)
    rows = "".join(f'{{"text": "row {i}"}}\n' for i in range(2500))
    with fsspec.open(f"s3://{bucket}/d/rows.jsonl", "w", **opts) as fh:
        fh.write(rows)
    with fsspec.open(f"s3://{bucket}/d/rows.csv", "w", **opts) as fh:
        fh.write("text,n\n" + "".join(f"row {i},{i}\n" for i in range(300)))
    for name, count in (("rows.jsonl", 2500), ("rows.csv", 300)):
        reader = RowReader(f"s3://{bucket}/d/{name}", LoadOptions(storage_options=opts))
        read = list(reader.rows())
        assert len(read) == count and read[-1]["text"] == f"row {count - 1}"
