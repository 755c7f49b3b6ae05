"""Artifacts on S3 from the command line, configured the way the README says (the
``AWS_*`` variables, or ``FSSPEC_S3_*``): commands work against moto's server, and a missing
bucket or an endpoint that is down is a one-line error (exit 7), never a traceback. Skipped when
moto or s3fs is not installed."""

from __future__ import annotations

from pathlib import Path

from tests.cli.conftest import Invoke
from tests.fixtures import moto_s3

endpoint, bucket = moto_s3.endpoint, moto_s3.bucket  # the fixtures
free_port, s3_client = moto_s3.free_port, moto_s3.s3_client


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
    cli: Invoke, rows_file: Path, endpoint: str, bucket: str, tmp_path: Path
) -> None:
    s3 = s3_client(endpoint)
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
