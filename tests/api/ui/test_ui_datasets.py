"""Dashboard pages of datasets: list, versions and lineage, row preview, profile and EDA report."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from llmloop.core.datasets import DatasetVersionCreate, DatasetVersionPublic
from llmloop.errors import InvalidInputError
from llmloop.services.actors import local_actor
from llmloop.services.container import Container

HOSTILE = "team data/<script>x</script>"


def _c(app: FastAPI) -> Container:
    container: Container = app.state.container
    return container


def _add(app: FastAPI, name: str, rows: list[dict[str, Any]], **extra: Any) -> DatasetVersionPublic:
    spec = DatasetVersionCreate(rows=rows, **extra)
    return _c(app).datasets.create_version(name, spec, local_actor("alice"))


def _rows(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"prompt": f"question {i}", "response": f"answer {i}"} for i in range(start, start + n)]


def _flash(client: TestClient, response: Any) -> str:
    assert response.status_code == 303, response.text
    return client.get(response.headers["location"]).text


# --- list --------------------------------------------------------------------------------------


def test_the_empty_list_says_how_to_add_data(ui: TestClient) -> None:
    page = ui.get("/ui/datasets")
    assert page.status_code == 200
    assert "No datasets yet" in page.text
    assert "llmloop data ingest" in page.text
    assert 'aria-current="page">Datasets' in page.text


def test_the_list_shows_versions_latest_rows_and_links(app: FastAPI, ui: TestClient) -> None:
    _add(app, "support", _rows(3))
    _add(app, "support", _rows(5))
    _c(app).datasets.ensure("empty-one", local_actor(), "no versions yet")
    page = ui.get("/ui/datasets")
    assert page.status_code == 200
    row = re.search(r"<tr>\s*<td><a href=\"/ui/datasets/support\">support</a>.*?</tr>", page.text,
                    re.S)  # fmt: skip
    assert row is not None
    cells = re.findall(r'<td class="num">(.*?)</td>', row.group(0), re.S)
    assert cells[0] == "2"  # versions
    assert '<a href="/ui/datasets/support/versions/2">5</a>' in cells[1]  # latest version's rows
    assert "just now" in row.group(0)
    empty = re.search(r"empty-one</a>.*?</tr>", page.text, re.S)
    assert empty is not None and "no versions yet" in empty.group(0)
    assert '<td class="num">-</td>' in empty.group(0)


def test_the_list_pages(app: FastAPI, ui: TestClient) -> None:
    for name in ("a-set", "b-set", "c-set"):
        _add(app, name, _rows(1))
    first = ui.get("/ui/datasets?limit=2")
    assert "a-set" in first.text and "b-set" in first.text and "c-set" not in first.text
    assert "offset=2&limit=2" in first.text
    second = ui.get("/ui/datasets?limit=2&offset=2")
    assert "c-set" in second.text and "a-set" not in second.text
    assert "No more datasets" in ui.get("/ui/datasets?offset=10").text
    refused = ui.get("/ui/datasets?limit=0")
    assert refused.status_code == 422 and refused.headers["content-type"].startswith("text/html")
    assert ui.get("/ui/datasets?limit=501").status_code == 422


def test_pages_need_a_sign_in(app: FastAPI) -> None:
    with TestClient(app, follow_redirects=False) as anonymous:
        response = anonymous.get("/ui/datasets/x/versions/1")
        assert response.status_code == 303
        assert response.headers["location"].startswith("/ui/login?next=")


# --- one dataset -------------------------------------------------------------------------------


def test_the_dataset_page_lists_versions_with_lineage(app: FastAPI, ui: TestClient) -> None:
    v1 = _add(app, "support", _rows(10))
    v2 = _add(app, "support", _rows(8), parent_version=1, recipe={"step": "clean"},
              description="cleaned")  # fmt: skip
    _c(app).data.split("support", local_actor("bob"), 2, {"ratios": {"train": 0.5, "test": 0.5}})
    page = ui.get("/ui/datasets/support")
    assert page.status_code == 200
    text = page.text
    assert text.index(">v2</a>") < text.index(">v1</a>")  # newest first
    assert v1.content_hash[:12] + "…" in text and v2.content_hash[:12] + "…" in text
    assert f'title="{v2.content_hash}"' in text
    v2_row = re.search(r">v2</a>.*?</tr>", text, re.S)
    assert v2_row is not None
    assert "clean" in v2_row.group(0)
    assert '<a href="/ui/datasets/support/versions/1">support:v1</a>' in v2_row.group(0)
    assert "alice" in v2_row.group(0)
    assert "none" in v2_row.group(0)  # no profile
    train = ui.get("/ui/datasets/support-train")
    assert train.status_code == 200
    assert "split (train)" in train.text
    assert '<a href="/ui/datasets/support/versions/2">support:v2</a>' in train.text
    assert "bob" in train.text


def test_a_dataset_without_versions_says_how_to_add_one(app: FastAPI, ui: TestClient) -> None:
    _c(app).datasets.ensure("fresh", local_actor())
    page = ui.get("/ui/datasets/fresh")
    assert page.status_code == 200
    assert "No versions yet" in page.text
    assert "llmloop data ingest FILE --dataset fresh" in page.text


def test_the_versions_table_pages(app: FastAPI, ui: TestClient) -> None:
    for i in range(3):
        _add(app, "many", _rows(1, start=i))
    page = ui.get("/ui/datasets/many?limit=2")
    assert ">v3</a>" in page.text and ">v2</a>" in page.text and ">v1</a>" not in page.text
    older = ui.get("/ui/datasets/many?limit=2&offset=2")
    assert ">v1</a>" in older.text and ">v3</a>" not in older.text


def test_unknown_datasets_and_versions_are_404_pages(app: FastAPI, ui: TestClient) -> None:
    _add(app, "support", _rows(2))
    for url in (
        "/ui/datasets/nope",
        "/ui/datasets/nope/versions/1",
        "/ui/datasets/support/versions/7",
        "/ui/datasets/support/versions/7/report",
    ):
        response = ui.get(url)
        assert response.status_code == 404, url
        assert response.headers["content-type"].startswith("text/html")
    bad = ui.get("/ui/datasets/support/versions/first")
    assert bad.status_code == 422
    assert "version must be a number" in bad.text


# --- one version -------------------------------------------------------------------------------


def test_the_version_page_previews_rows_as_a_table(app: FastAPI, ui: TestClient) -> None:
    rows: list[dict[str, Any]] = [
        {"text": "x" * 500, "meta": {"tags": ["a", "b"], "n": 1}, "score": None},
        {"text": "<img src=x onerror=alert(1)>", "extra": 3},
    ]
    _add(app, "mixed", rows, description="two odd rows")
    page = ui.get("/ui/datasets/mixed/versions/1")
    assert page.status_code == 200
    text = page.text
    head = re.search(r"<thead><tr><th class=\"num\">#</th>(.*?)</tr></thead>", text, re.S)
    assert head is not None
    assert re.findall(r"<th>(.*?)</th>", head.group(1)) == ["meta", "score", "text", "extra"]
    assert "<code>{&#34;n&#34;:1,&#34;tags&#34;:[&#34;a&#34;,&#34;b&#34;]}</code>" in text
    assert re.search(r'title="x{500}">x{160}…</td>', text)  # cut, the whole text in the title
    assert '<td class="muted">null</td>' in text
    assert "&lt;img src=x onerror=alert(1)&gt;" in text and "<img src=x" not in text
    assert "two odd rows" in text
    latest = ui.get("/ui/datasets/mixed/versions/latest")
    assert latest.status_code == 200 and 'class="muted">v1</span></h1>' in latest.text


def test_the_row_preview_pages(app: FastAPI, ui: TestClient) -> None:
    _add(app, "long", _rows(7))
    page = ui.get("/ui/datasets/long/versions/1?limit=3&offset=3")
    assert "question 3" in page.text and "question 5" in page.text
    assert "question 2" not in page.text and "question 6" not in page.text
    assert "Rows 4–6 of 7" in page.text
    assert "offset=6&limit=3" in page.text and "offset=0&limit=3" in page.text
    last = ui.get("/ui/datasets/long/versions/1?limit=3&offset=6").text
    assert "question 6" in last and "next 3 rows" not in last and "previous 3 rows" in last
    assert "No rows past 50" in ui.get("/ui/datasets/long/versions/1?offset=50").text


def test_the_version_page_shows_lineage_both_ways(app: FastAPI, ui: TestClient) -> None:
    _add(app, "support", _rows(4))
    _add(app, "support", _rows(3), parent_version=1, recipe={"step": "clean", "k": "<b>"})
    first = ui.get("/ui/datasets/support/versions/1").text
    assert '<a href="/ui/datasets/support/versions/2">support:v2</a>' in first
    second = ui.get("/ui/datasets/support/versions/2").text
    assert '<a href="/ui/datasets/support/versions/1">support:v1</a>' in second
    assert "&#34;&lt;b&gt;&#34;" in second and '"<b>"' not in second  # recipe escaped


def test_profiling_from_the_page_stores_a_profile_and_serves_the_report(
    app: FastAPI, ui: TestClient
) -> None:
    version = _add(app, "support", _rows(12))
    before = ui.get("/ui/datasets/support/versions/1")
    assert "No profile yet" in before.text and "llmloop data profile support@1" in before.text
    assert "Profile this version" in before.text
    no_report = ui.get("/ui/datasets/support/versions/1/report")
    assert no_report.status_code == 404
    assert "llmloop data profile support@1" in no_report.text

    page = _flash(ui, ui.post("/ui/datasets/support/versions/1/profile"))
    assert "Profiled support v1." in page
    stored = _c(app).datasets.get_version("support", 1).profile
    assert stored is not None and stored["row_count"] == 12
    assert "exact_duplicate" in page and "Open the EDA report" in page
    assert "Profile again" in page
    listing = ui.get("/ui/datasets/support").text
    assert '<a href="/ui/datasets/support/versions/1/report">report</a>' in listing

    report = ui.get("/ui/datasets/support/versions/1/report")
    assert report.status_code == 200
    assert report.text.startswith("<!doctype html>") or "<html" in report.text[:200]
    assert "support v1" in report.text and "<script" not in report.text
    csp = report.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "style-src 'unsafe-inline'" in csp
    assert "frame-ancestors 'none'" in csp and "script-src" not in csp
    assert report.headers["x-content-type-options"] == "nosniff"
    assert version.id  # the same version the page showed


def test_a_viewer_sees_no_profile_button_and_is_refused(
    app: FastAPI, ui: TestClient, viewer_ui: TestClient
) -> None:
    _add(app, "support", _rows(3))
    page = viewer_ui.get("/ui/datasets/support/versions/1")
    assert page.status_code == 200
    assert "Profile this version" not in page.text and "/profile" not in page.text
    refused = viewer_ui.post("/ui/datasets/support/versions/1/profile")
    assert refused.status_code == 403
    assert "needs 'editor'" in html.unescape(refused.text)
    assert _c(app).datasets.get_version("support", 1).profile is None
    assert "Profile v1" not in viewer_ui.get("/ui/datasets/support/versions/1/report").text


def test_profiling_an_unknown_version_is_a_404_and_a_foreign_post_is_refused(
    app: FastAPI, ui: TestClient
) -> None:
    _add(app, "support", _rows(3))
    assert ui.post("/ui/datasets/support/versions/9/profile").status_code == 404
    foreign = ui.post("/ui/datasets/support/versions/1/profile",
                      headers={"Origin": "https://evil.example"})  # fmt: skip
    assert foreign.status_code == 403
    assert _c(app).datasets.get_version("support", 1).profile is None


def test_a_name_no_address_could_hold_is_refused(app: FastAPI, ui: TestClient) -> None:
    with pytest.raises(InvalidInputError):
        _add(app, HOSTILE, [{"text": "hello"}])
    assert "team data" not in ui.get("/ui/datasets").text


def test_hostile_rows_are_escaped_under_an_unusual_name(app: FastAPI, ui: TestClient) -> None:
    name = "team.data_v-1"
    _add(app, name, [{"text": "<script>x</script>"}])
    listing = ui.get("/ui/datasets").text
    link = f"/ui/datasets/{name}"
    assert f'href="{link}"' in listing
    assert f'href="{link}/versions/1"' in ui.get(link).text
    version = ui.get(f"{link}/versions/1")
    assert version.status_code == 200
    assert "<script>x</script>" not in version.text and "&lt;script&gt;x" in version.text
    assert ui.get(f"{link}/versions/1/report").status_code == 404
