"""Every dashboard page, given odd path segments and odd query values, answers a page (2xx, 3xx
or 4xx with HTML), never a server error: the routes are found from the app, not listed by hand,
so a new page is covered the day it is added."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from llmloop.core.datasets import DatasetVersionCreate
from llmloop.core.models import ModelVersionCreate
from llmloop.core.prompts import PromptVersionCreate
from llmloop.services.actors import local_actor
from llmloop.ui import pages
from llmloop.ui.web import PREFIX

ODD = ["x", "<script>", "..", "0", "-1", "99999999999999999999", "ü%", "a b", "latest", "1e3",
       " ", "x" * 300, "null", "[]", "²"]  # fmt: skip
DOWNLOAD_TYPE = "text/markdown"


def _pages(app: FastAPI) -> list[str]:
    """The path of every GET page the dashboard mounts."""
    return [
        PREFIX + route.path
        for router in pages.routers()
        for route in router.routes
        if "GET" in getattr(route, "methods", ())
    ]


def _seed(app: FastAPI) -> None:
    c, me = app.state.container, local_actor()
    c.datasets.create_version("d", DatasetVersionCreate(rows=[{"a": 1}]), me)
    c.prompts.create_version("p", PromptVersionCreate(template="Hi {{ x }}"), me)
    c.models.create_version("m", ModelVersionCreate(), me)


def test_the_dashboard_has_its_pages(app: FastAPI) -> None:
    assert len(_pages(app)) >= 20


@pytest.mark.parametrize("odd", ODD)
def test_odd_path_segments_never_break_a_page(app: FastAPI, ui: TestClient, odd: str) -> None:
    _seed(app)
    for template in _pages(app):
        names = re.findall(r"{(\w+)(?::path)?}", template)
        # one odd segment at a time, the others real, so the deep pages are reached too
        real = {"name": "d" if "/datasets/" in template else "p" if "/prompts/" in template
                else "m", "version": "1", "ref": "1"}  # fmt: skip
        for odd_name in names:
            values = {n: real.get(n, "x") for n in names}
            values[odd_name] = odd
            path = template
            for name in names:
                path = re.sub("{" + name + r"(?::path)?}", quote(values[name], safe=""), path)
            page = ui.get(path)
            assert page.status_code < 500, (path, page.text[-800:])
            if page.status_code < 300 or page.status_code >= 400:  # redirects have no body
                # A download (the model card's Markdown) is its own type; its errors are pages.
                download = page.status_code < 300 and template.endswith(".md")
                kind = DOWNLOAD_TYPE if download else "text/html"
                assert page.headers["content-type"].startswith(kind), path


@pytest.mark.parametrize("odd", ODD)
def test_odd_query_values_never_break_a_page(app: FastAPI, ui: TestClient, odd: str) -> None:
    params = ["limit", "offset", "window", "deployment", "group_by", "status", "kind", "since",
              "until", "user", "key", "ids", "a", "b", "ref", "entity_id", "actor", "before_id",
              "pending", "decided", "parent_id", "next"]  # fmt: skip
    for path in _pages(app):
        if "{" in path:
            continue
        for param in params:
            page = ui.get(path, params={param: odd})
            assert page.status_code < 500, (path, param, page.text[-800:])


def _forms(app: FastAPI) -> list[str]:
    return [
        PREFIX + route.path
        for router in pages.routers()
        for route in router.routes
        if "POST" in getattr(route, "methods", ())
    ]


@pytest.mark.parametrize("odd", ODD)
def test_odd_form_fields_never_break_an_action(app: FastAPI, ui: TestClient, odd: str) -> None:
    _seed(app)
    fields = ["name", "label", "version", "alias", "stage", "value", "text", "comment", "kind",
              "threshold", "window", "for", "metric", "comparison", "template", "params",
              "variables", "status", "scale_min", "scale_max", "preferred", "alternative",
              "correction", "deployment", "max_tokens", "temperature", "ref", "action",
              "protected", "source", "limit", "order", "message"]  # fmt: skip
    real = {"name": "m", "version": "1", "ref": "1", "item_id": "1", "trace_id": "tr_x",
            "run_id": "run_x", "approval_id": "apr_x"}  # fmt: skip
    for template in _forms(app):
        path = template
        for name in re.findall(r"{(\w+)(?::path)?}", template):
            value = real.get(name, "x")
            if "/prompts/" in template and name == "name":
                value = "p"
            path = re.sub("{" + name + r"(?::path)?}", value, path)
        response = ui.post(path, data=dict.fromkeys(fields, odd))
        assert response.status_code < 500, (path, response.text[-800:])
