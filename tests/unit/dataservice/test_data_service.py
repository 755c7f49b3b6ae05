"""Data preparation through the services and the CLI: the planted corpus goes ingest -> profile
-> clean -> split, each a version with lineage; bad input leaves no half-written version."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmloop.cli.main import app as cli
from llmloop.config import load_settings
from llmloop.errors import ConfigError, ConflictError, InvalidInputError, NotFoundError
from llmloop.services.actors import local_actor
from llmloop.services.container import Container

CORPUS = Path(__file__).parents[2] / "fixtures" / "data" / "problem_corpus.jsonl"
RECIPE = """
name: planted-cleanup
steps:
  - fix_unicode: {}
  - strip_html: {}
  - whitespace: {}
  - drop_empty: {}
  - exact_dedup: {}
  - near_dedup: {threshold: 0.7}
  - pii: {action: redact}
  - toxicity_filter: {threshold: 0.8}
"""


@pytest.fixture
def container(tmp_path: Path) -> Iterator[Container]:
    c = Container(load_settings({"home": str(tmp_path / "home")}, env={}))
    yield c
    c.close()


def test_ingest_profile_clean_split_with_lineage(container: Container, tmp_path: Path) -> None:
    me = local_actor()
    raw, report = container.data.ingest(str(CORPUS), "tickets", me)
    assert raw.row_count == report.rows_read > 100 and raw.recipe and raw.recipe["step"] == "ingest"
    profile, html = container.data.profile("tickets", me)
    assert "<svg" in html and "<script src" not in html and "<link" not in html
    for finding in ("exact_duplicate", "near_duplicate", "pii", "html", "mojibake", "empty"):
        assert profile.findings[finding].count > 0, finding
    stored = container.datasets.get_version("tickets")
    assert stored.profile and "report_artifact" in stored.profile
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE)
    clean, rep = container.data.clean("tickets", recipe, me)
    assert clean.version == 2 and clean.parent_id == raw.id and clean.row_count < raw.row_count
    assert rep.step("exact_dedup").rows_removed > 0 and rep.step("pii").rows_changed > 0
    assert clean.recipe and clean.recipe["recipe"]["name"] == "planted-cleanup"
    rows = container.datasets.read_rows(clean)
    assert not any("@" in str(r.get("text", "")) and ".com" in str(r.get("text", "")) for r in rows)
    splits, leak = container.data.split("tickets", me, config={"seed": 1})
    assert set(splits) == {"train", "validation", "test"}
    assert sum(v.row_count for v in splits.values()) == clean.row_count
    assert leak["leakage"]["exact"] == 0
    graph = container.governance.lineage(splits["train"].id, "up")
    assert {raw.id, clean.id} <= {n.id for n in graph.nodes}
    diff = container.data.diff("tickets", 1, 2)
    assert diff.removed > 0


def test_bad_input_leaves_nothing(container: Container, tmp_path: Path) -> None:
    me = local_actor()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{broken\n{"text": "fine"}\n')
    with pytest.raises(InvalidInputError, match="line 2"):
        container.data.ingest(str(bad), "d", me)
    with pytest.raises(NotFoundError):
        container.datasets.get("d")
    version, report = container.data.ingest(str(bad), "d", me, {"on_error": "skip"})
    assert version.row_count == 2 and report.rows_skipped == 1
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(InvalidInputError):
        container.data.ingest(str(empty), "d", me)
    with pytest.raises(ConfigError, match="no_such_step"):
        container.data.clean("d", "name: r\nsteps:\n  - no_such_step: {}\n", me)
    secret = "name: r\nsteps:\n  - pii: {action: pseudonymise, key: abc}\n"
    with pytest.raises(ConfigError, match="LLMLOOP_PII_KEY"):
        container.data.clean("d", secret, me)
    assert [v.version for v in container.datasets.list_versions("d")] == [1]
    with pytest.raises(InvalidInputError):
        container.data.ingest(str(tmp_path / "missing.txt"), "d", me)


def test_cli_ingest_profile_clean(tmp_path: Path) -> None:
    runner = CliRunner()
    home = ["--home", str(tmp_path / "home")]
    ok = runner.invoke(cli, [*home, "data", "ingest", str(CORPUS), "--dataset", "t", "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["version"]["version"] == 1
    out = tmp_path / "report.html"
    prof = runner.invoke(cli, [*home, "data", "profile", "t", "--out", str(out)])
    assert prof.exit_code == 0 and out.read_text().lower().startswith("<!doctype html>")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    cleaned = runner.invoke(cli, [*home, "data", "clean", "t", "--recipe", str(recipe)])
    assert cleaned.exit_code == 0, cleaned.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{nope\n")
    refused = runner.invoke(cli, [*home, "data", "ingest", str(bad), "--dataset", "x"])
    assert refused.exit_code == 2 and "line 1" in refused.output


def test_rest_upload_profile_clean(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from llmloop.api.app import create_app
    from llmloop.core.governance import ApiKeyCreate

    app = create_app(load_settings({"home": str(tmp_path / "home")}, env={}))
    key = app.state.container.keys.create(ApiKeyCreate(name="k", role="editor"), local_actor())
    with TestClient(app, headers={"Authorization": f"Bearer {key.secret}"}) as tc:
        with CORPUS.open("rb") as fh:
            up = tc.post("/api/data/t/ingest", files={"file": ("c.jsonl", fh)})
        assert up.status_code == 201, up.text
        assert tc.get("/api/data/t/versions/1/report").status_code == 404
        assert tc.post("/api/data/t/versions/1/profile").json()["row_count"] > 100
        assert "<svg" in tc.get("/api/data/t/versions/1/report").text
        recipe = {"name": "r", "steps": [{"step": "exact_dedup", "config": {}}]}
        cleaned = tc.post("/api/data/t/versions/1/clean", json={"recipe": recipe})
        assert cleaned.status_code == 201 and cleaned.json()["version"]["version"] == 2
        assert tc.get("/api/data/t/diff", params={"a": 1, "b": 2}).json()["removed"] > 0
        bad = tc.post("/api/data/t/ingest", files={"file": ("x.txt", b"hello")})
        assert bad.status_code == 422
        broken = tc.post("/api/data/u/ingest", files={"file": ("x.jsonl", b"{nope\n")})
        assert broken.status_code == 422 and "line 1" in broken.json()["detail"]
        unknown = tc.post(
            "/api/data/t/versions/1/clean",
            json={"recipe": {"name": "r", "steps": [{"step": "zap"}]}},
        )
        assert unknown.status_code == 422 and "zap" in unknown.json()["detail"]
    app.state.container.close()


def test_sdk_data_in_process_and_over_http(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from llmloop.api.app import create_app
    from llmloop.client import Client
    from llmloop.client.transport import HttpTransport
    from llmloop.core.governance import ApiKeyCreate

    settings = load_settings({"home": str(tmp_path / "home")}, env={})
    with Client(settings=settings) as local:
        made = local.ingest(str(CORPUS), "local")
        assert made["version"]["version"] == 1
        assert local.profile_dataset("local")["row_count"] > 100
        cleaned = local.clean_dataset("local", {"name": "r", "steps": ["exact_dedup"]})
        assert cleaned.version == 2
        assert set(local.split_dataset("local")) == {"train", "validation", "test"}
    app = create_app(settings)
    key = app.state.container.keys.create(ApiKeyCreate(name="k", role="editor"), local_actor())
    remote = Client.__new__(Client)
    remote._t = HttpTransport("http://testserver", key.secret, client=TestClient(app))
    assert remote.ingest(str(CORPUS), "remote")["version"]["version"] == 1
    assert remote.clean_dataset("remote", {"name": "r", "steps": ["exact_dedup"]}).version == 2
    assert set(remote.split_dataset("remote")) == {"train", "validation", "test"}
    app.state.container.close()


def test_rest_bad_split_config_is_422(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from llmloop.api.app import create_app
    from llmloop.core.governance import ApiKeyCreate

    app = create_app(load_settings({"home": str(tmp_path / "home")}, env={}))
    key = app.state.container.keys.create(ApiKeyCreate(name="k", role="editor"), local_actor())
    with TestClient(app, headers={"Authorization": f"Bearer {key.secret}"}) as tc:
        with CORPUS.open("rb") as fh:
            assert tc.post("/api/data/t/ingest", files={"file": ("c.jsonl", fh)}).status_code == 201
        bad = tc.post("/api/data/t/versions/1/split", json={"config": {"ratios": {"a": 2}}})
        assert bad.status_code == 422 and "ratios" in bad.json()["detail"]
        odd = tc.post("/api/data/t/versions/1/split", json={"config": {"nonsense": 1}})
        assert odd.status_code == 422
    app.state.container.close()


def _jsonl_file(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_a_split_stores_all_its_parts_or_none(container: Container, tmp_path: Path) -> None:
    me = local_actor()
    rows = [{"text": f"row {i} " + "unique " * i} for i in range(10)]
    container.data.ingest(str(_jsonl_file(tmp_path / "d.jsonl", rows)), "d", me)
    bad_name = {"ratios": {"train": 0.5, "bad name": 0.5}}
    with pytest.raises(InvalidInputError, match="'d-bad name'"):
        container.data.split("d", me, config=bad_name)
    with pytest.raises(NotFoundError):
        container.datasets.get("d-train")  # not stored before the second part failed
    container.data.split("d", me, config={"ratios": {"train": 0.5, "test": 0.5}})
    # The same seed and shares give 'test' the rows it already holds (a conflict); 'fresh', a
    # new dataset, comes first and must not be stored when 'test' is refused.
    with pytest.raises(ConflictError, match="nothing was stored"):
        container.data.split("d", me, config={"ratios": {"fresh": 0.5, "test": 0.5}})
    with pytest.raises(NotFoundError):
        container.datasets.get("d-fresh")
    assert [v.version for v in container.datasets.list_versions("d-test")] == [1]
    made, _ = container.data.split(
        "d", me, config={"ratios": {"fresh": 0.5, "test": 0.5}}, reuse=True
    )
    assert made["test"].version == 1 and made["fresh"].version == 1


def test_page_rows_reads_only_the_page(container: Container, tmp_path: Path) -> None:
    me = local_actor()
    rows = [{"text": f"row {i}", "i": i} for i in range(2500)]
    version, _ = container.data.ingest(str(_jsonl_file(tmp_path / "d.jsonl", rows)), "d", me)
    assert container.datasets.page_rows(version, 2000, 3) == rows[2000:2003]
    assert container.datasets.page_rows(version, 2499, 10) == rows[2499:]
    assert container.datasets.page_rows(version, 5000, 10) == []
    with pytest.raises(InvalidInputError):
        container.datasets.page_rows(version, -1, 10)
