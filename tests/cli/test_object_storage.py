"""Artifacts on S3 from the command line, configured the way the README says (the
``AWS_*`` variables, or ``FSSPEC_S3_*``): commands work against moto's server, and a missing
bucket or an endpoint that is down is a one-line error (exit 7), never a traceback. Skipped when
moto or s3fs is not installed."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.cli.conftest import Invoke

pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")
boto3 = pytest.importorskip("boto3")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def aws_env(endpoint: str, bucket: str, tmp_path: Path) -> dict[str, str]:
    return {
        "LLMLOOP_ARTIFACTS_URL": f"s3://{bucket}/team",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_MAX_ATTEMPTS": "1",
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
    }


def test_commands_store_artifacts_on_s3(
    cli: Invoke, rows_file: Path, endpoint: str, tmp_path: Path
) -> None:
    bucket = f"b-{uuid.uuid4().hex[:12]}"
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
    )
    s3.create_bucket(Bucket=bucket)
    env = aws_env(endpoint, bucket, tmp_path)
    cli("datasets", "add-version", "tickets", "--file", str(rows_file), env=env, ok=True)
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="team/sha256/")
    assert listed["KeyCount"] == 1


def test_a_missing_bucket_is_one_line(
    cli: Invoke, rows_file: Path, endpoint: str, tmp_path: Path
) -> None:
    env = aws_env(endpoint, "no-such-bucket", tmp_path)
    result = cli("datasets", "add-version", "tickets", "--file", str(rows_file), env=env)
    assert result.exit_code == 7, result.output
    assert "bucket or container 'no-such-bucket' does not exist" in result.output
    assert "Traceback" not in result.output and "please report" not in result.output


def test_an_endpoint_that_is_down_is_one_line(cli: Invoke, rows_file: Path, tmp_path: Path) -> None:
    env = aws_env(f"http://127.0.0.1:{free_port()}", "bucket", tmp_path)
    result = cli("datasets", "add-version", "tickets", "--file", str(rows_file), env=env)
    assert result.exit_code == 7, result.output
    assert "artifact store s3://bucket/team" in result.output
    assert "the endpoint cannot be reached" in result.output
    assert "please report" not in result.output
