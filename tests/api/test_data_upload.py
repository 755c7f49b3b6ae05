"""Data over REST with awkward uploads: compressed and TSV files, error messages and lineage that
name the upload (never the server's temp file), a worker thread for the ingest, the report's
content security policy and row pages of large versions."""

from __future__ import annotations

import gzip
import threading
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient


def test_compressed_and_tsv_uploads_are_ingested(client: TestClient) -> None:
    body = gzip.compress(b'{"prompt": "a", "response": "b"}\n')
    up = client.post("/api/data/t/ingest", files={"file": ("export.jsonl.gz", body)})
    assert up.status_code == 201, up.text
    assert up.json()["version"]["row_count"] == 1
    tsv = client.post("/api/data/t/ingest", files={"file": ("x.tsv", b"text\tn\nhello\t1\n")})
    assert tsv.status_code == 201, tsv.text
    assert client.get("/api/datasets/t/versions/2/rows").json()["rows"] == [
        {"n": 1, "text": "hello"}
    ]
    semi = client.post(
        "/api/data/t/ingest",
        files={"file": ("x.csv", "text;n\ncafé;2\n".encode("cp1252"))},
        data={"encoding": "cp1252", "delimiter": ";"},
    )
    assert semi.status_code == 201, semi.text
    for name in ("x.gz", "x.txt.gz", "x.exe"):
        refused = client.post("/api/data/t/ingest", files={"file": (name, b"x")})
        assert refused.status_code == 422 and name in refused.json()["detail"]


def test_messages_and_lineage_name_the_upload(app: FastAPI, client: TestClient) -> None:
    broken = client.post("/api/data/u/ingest", files={"file": ("mine.jsonl", b'{"text": 1}\n{x\n')})
    problem = broken.json()
    assert broken.status_code == 422 and problem["detail"].startswith("mine.jsonl line 2")
    assert str(app.state.container.settings.home) not in broken.text
    ok = client.post("/api/data/u/ingest", files={"file": ("../../mine.jsonl", b'{"text": "a"}\n')})
    assert ok.status_code == 201, ok.text
    assert ok.json()["version"]["recipe"]["source"] == "mine.jsonl"
    assert ok.json()["report"]["source"] == "mine.jsonl"


def test_ingest_runs_off_the_event_loop(app: FastAPI, client: TestClient) -> None:
    service = app.state.container.data
    seen: list[str] = []
    real = service.ingest

    def watched(*args: Any, **kwargs: Any) -> Any:
        seen.append(threading.current_thread().name)
        return real(*args, **kwargs)

    service.ingest = watched
    loop_thread: list[str] = []

    @app.get("/test-loop-thread")
    async def where() -> str:  # an async route runs on the event loop's thread
        loop_thread.append(threading.current_thread().name)
        return "ok"

    assert client.get("/test-loop-thread").status_code == 200
    up = client.post("/api/data/t/ingest", files={"file": ("x.jsonl", b'{"text": "a"}\n')})
    assert up.status_code == 201 and seen and seen[0] != loop_thread[0]


def test_report_page_may_not_run_scripts(client: TestClient) -> None:
    row = b'{"text": "<script>alert(1)</script> hi"}\n'
    assert client.post("/api/data/t/ingest", files={"file": ("x.jsonl", row)}).status_code == 201
    assert client.post("/api/data/t/versions/1/profile").status_code == 200
    page = client.get("/api/data/t/versions/1/report")
    assert page.status_code == 200 and "<script>alert" not in page.text
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src" not in policy


def test_row_pages_count_from_the_version(client: TestClient) -> None:
    body = b"".join(b'{"text": "row %d"}\n' % i for i in range(300))
    assert client.post("/api/data/t/ingest", files={"file": ("x.jsonl", body)}).status_code == 201
    page = client.get("/api/datasets/t/versions/1/rows", params={"offset": 250, "limit": 2})
    assert page.json() == {"total": 300, "rows": [{"text": "row 250"}, {"text": "row 251"}]}
    assert (
        client.get("/api/datasets/t/versions/1/rows", params={"offset": 900}).json()["rows"] == []
    )
