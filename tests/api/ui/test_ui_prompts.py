"""Dashboard pages of prompts: list, versions, diff, label and version forms, and the playground
(rendering, and running through the gateway on an echo deployment)."""

from __future__ import annotations

import html
import re
import time
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from llmloop import __version__
from llmloop.core.deployments import DeploymentSpec
from llmloop.core.governance import ApiKeyCreate
from llmloop.core.prompts import PromptCreate, PromptVersionCreate, PromptVersionPublic
from llmloop.errors import InvalidInputError, NotFoundError
from llmloop.services.actors import local_actor
from llmloop.services.container import Container

HOSTILE = "team a/<script>x</script>"


def _c(app: FastAPI) -> Container:
    container: Container = app.state.container
    return container


def _add(app: FastAPI, name: str, template: str, **extra: Any) -> PromptVersionPublic:
    spec = PromptVersionCreate(template=template, **extra)
    return _c(app).prompts.create_version(name, spec, local_actor("alice"))


def _deploy(app: FastAPI, name: str = "echo", **options: Any) -> None:
    spec = {"name": name, "targets": [{"engine": {"kind": "echo", "model": "echo",
                                                  "options": options}}]}  # fmt: skip
    _c(app).deployments.apply(DeploymentSpec.model_validate(spec), local_actor())


def _follow(client: TestClient, response: Any) -> str:
    assert response.status_code == 303, response.text
    return html.unescape(client.get(response.headers["location"]).text)


def _main(page: Any) -> str:
    text: str = page.text
    return html.unescape(text[text.index("<main>") : text.index("</main>")])


# --- list and create ---------------------------------------------------------------------------


def test_the_empty_list_says_how_to_add_a_prompt(ui: TestClient, viewer_ui: TestClient) -> None:
    page = ui.get("/ui/prompts")
    assert page.status_code == 200
    assert "No prompts yet" in page.text and "llmloop prompts add-version" in page.text
    assert 'action="/ui/prompts"' in page.text  # an admin gets the create form
    viewer = viewer_ui.get("/ui/prompts")
    assert viewer.status_code == 200 and 'action="/ui/prompts"' not in viewer.text


def test_the_list_shows_latest_version_and_labels(app: FastAPI, ui: TestClient) -> None:
    _c(app).prompts.create(PromptCreate(
        name="greet", description="Says hello"), local_actor())  # fmt: skip
    _add(app, "greet", "Hello {{ name }}")
    _add(app, "greet", "Hi {{ name }}!")
    _c(app).prompts.set_label("greet", "production", 1, local_actor())
    _c(app).prompts.set_label("greet", "staging", 2, local_actor())
    _c(app).prompts.create(PromptCreate(name="bare"),
                           local_actor())  # fmt: skip
    page = ui.get("/ui/prompts")
    row = re.search(r'href="/ui/prompts/greet">greet</a>.*?</tr>', page.text, re.S)
    assert row is not None
    assert "Says hello" in row.group(0) and ">v2<" in row.group(0)
    assert "production → v1" in row.group(0) and "staging → v2" in row.group(0)
    assert "just now" in row.group(0) and "/ui/prompts/greet/playground" in row.group(0)
    bare = re.search(r'href="/ui/prompts/bare">bare</a>.*?</tr>', page.text, re.S)
    assert bare is not None and "none" in bare.group(0) and "playground" not in bare.group(0)


def test_the_list_pages(app: FastAPI, ui: TestClient) -> None:
    for name in ("p-a", "p-b", "p-c"):
        _add(app, name, "x")
    first = ui.get("/ui/prompts?limit=2").text
    assert "p-a" in first and "p-b" in first and "p-c" not in first
    assert "offset=2&limit=2" in first
    assert "p-c" in ui.get("/ui/prompts?limit=2&offset=2").text
    assert ui.get("/ui/prompts?limit=9999").status_code == 422


def test_creating_a_prompt(app: FastAPI, ui: TestClient, viewer_ui: TestClient) -> None:
    page = _follow(ui, ui.post("/ui/prompts", data={"name": "faq", "description": "FAQ bot"}))
    assert "Created prompt faq" in page
    assert _c(app).prompts.get("faq").description == "FAQ bot"
    again = _follow(ui, ui.post("/ui/prompts", data={"name": "faq"}))
    assert "already exists" in again
    bad = _follow(ui, ui.post("/ui/prompts", data={"name": "<bad name>"}))
    assert "Prompt not created" in bad and "letters, digits" in bad
    assert [p.name for p in _c(app).prompts.list()] == ["faq"]
    refused = viewer_ui.post("/ui/prompts", data={"name": "viewer-made"})
    assert refused.status_code == 403
    with pytest.raises(NotFoundError):
        _c(app).prompts.get("viewer-made")


# --- one prompt --------------------------------------------------------------------------------


def test_the_prompt_page_lists_versions_and_diffs_the_newest_two(
    app: FastAPI, ui: TestClient
) -> None:
    _add(app, "greet", "Hello {{ name }}\nBye", params={"temperature": 0.2}, message="first")
    _add(app, "greet", "Hi {{ name }} from {{ place }}\nBye", params={"temperature": 0.7})
    _c(app).prompts.set_label("greet", "production", 1, local_actor())
    page = ui.get("/ui/prompts/greet")
    assert page.status_code == 200
    text = page.text
    assert text.index('id="v2"') < text.index('id="v1"')  # newest first
    v1 = re.search(r'id="v1">.*?</tr>', text, re.S)
    assert v1 is not None
    assert 'badge production">production<' in v1.group(0) and "first" in v1.group(0)
    assert "<code>name</code>" in v1.group(0) and "alice" in v1.group(0)
    assert "temperature" in v1.group(0)
    assert '<span class="del" style="display:block">-Hello {{ name }}</span>' in text
    assert '<span class="add" style="display:block">+Hi {{ name }} from {{ place }}</span>' in text
    assert '<span class="ctx" style="display:block"> Bye</span>' in text
    assert "variables added: <code>place</code>" in text
    assert '<td class="del"><code>0.2</code></td><td class="add"><code>0.7</code></td>' in text


def test_choosing_versions_to_compare(app: FastAPI, ui: TestClient) -> None:
    for text in ("one", "two", "three"):
        _add(app, "p", text)
    page = ui.get("/ui/prompts/p?a=1&b=3").text
    assert '<span class="del" style="display:block">-one</span>' in page
    assert '<span class="add" style="display:block">+three</span>' in page
    assert '<option value="3" selected>' in page
    same = ui.get("/ui/prompts/p?a=2&b=2").text
    assert "The templates are the same." in same
    missing = ui.get("/ui/prompts/p?a=1&b=9")
    assert missing.status_code == 200 and "has no version 9" in html.unescape(missing.text)
    odd = ui.get("/ui/prompts/p?a=1&b=%3Cx%3E")
    assert odd.status_code == 200 and "compare versions by number or label" in odd.text
    assert "<x>" not in odd.text


def test_unknown_prompts_are_404_pages(ui: TestClient) -> None:
    for url in ("/ui/prompts/nope", "/ui/prompts/nope/playground"):
        response = ui.get(url)
        assert response.status_code == 404, url
        assert "no prompt named" in html.unescape(response.text)
    label = {"label": "x", "version": "1"}
    assert ui.post("/ui/prompts/nope/labels", data=label).status_code == 404
    assert ui.post("/ui/prompts/nope/versions", data={"template": "x"}).status_code == 404
    assert ui.post("/ui/prompts/nope/playground", data={}).status_code == 404


def test_a_prompt_without_versions_offers_the_first_one(app: FastAPI, ui: TestClient) -> None:
    _c(app).prompts.create(PromptCreate(name="new"),
                           local_actor())  # fmt: skip
    page = ui.get("/ui/prompts/new")
    assert "No versions yet" in page.text and 'action="/ui/prompts/new/versions' in page.text
    assert "Move a label" not in page.text and "playground" not in page.text
    play = ui.get("/ui/prompts/new/playground")
    assert play.status_code == 200 and "No versions yet" in play.text


# --- moving labels -----------------------------------------------------------------------------


def test_moving_a_label(app: FastAPI, ui: TestClient) -> None:
    _add(app, "greet", "one")
    _add(app, "greet", "two")
    page = _follow(ui, ui.post("/ui/prompts/greet/labels", data={"label": "staging",
                                                                  "version": "2"}))  # fmt: skip
    assert "Label 'staging' now points at version 2." in page
    assert _c(app).prompts.get("greet").labels == {"staging": 2}
    _follow(ui, ui.post("/ui/prompts/greet/labels", data={"label": "staging", "version": "1"}))
    assert _c(app).prompts.get("greet").labels == {"staging": 1}


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"label": "Prod!", "version": "1"}, "A label is lower-case letters"),
        ({"label": "", "version": "1"}, "A label is lower-case letters"),
        ({"label": "prod", "version": "x"}, "Choose a version"),
        ({"label": "prod", "version": "0"}, "Choose a version"),
        ({"label": "prod", "version": "9"}, "has no version 9"),
    ],
)
def test_a_bad_label_move_says_why_and_changes_nothing(
    app: FastAPI, ui: TestClient, form: dict[str, str], message: str
) -> None:
    _add(app, "greet", "one")
    response = ui.post("/ui/prompts/greet/labels", data=form)
    assert response.headers["location"] == "/ui/prompts/greet"
    page = _follow(ui, response)
    assert 'class="flash error"' in page and message in page
    assert _c(app).prompts.get("greet").labels == {}


def test_a_protected_label_shows_the_approval_message(app: FastAPI, ui: TestClient) -> None:
    _add(app, "greet", "one")
    _add(app, "greet", "two")
    _c(app).prompts.set_label("greet", "production", 1, local_actor())
    _c(app).governance.protect("prompt_label", "greet", "production", True, local_actor())
    page = _follow(ui, ui.post("/ui/prompts/greet/labels", data={"label": "production",
                                                                  "version": "2"}))  # fmt: skip
    assert "'production' is protected: it moves only through an approval" in page
    assert _c(app).prompts.get("greet").labels == {"production": 1}


def test_a_viewer_cannot_move_labels_or_add_versions(app: FastAPI, viewer_ui: TestClient) -> None:
    _add(app, "greet", "one")
    page = viewer_ui.get("/ui/prompts/greet")
    assert page.status_code == 200
    assert "/labels" not in page.text and "/versions" not in page.text
    refused = viewer_ui.post("/ui/prompts/greet/labels", data={"label": "production",
                                                               "version": "1"})  # fmt: skip
    assert refused.status_code == 403 and "needs 'editor'" in html.unescape(refused.text)
    assert viewer_ui.post("/ui/prompts/greet/versions", data={"template": "x"}).status_code == 403
    assert _c(app).prompts.get("greet").labels == {}
    assert _c(app).prompts.get("greet").latest_version == 1


def test_a_form_from_another_site_is_refused(app: FastAPI, ui: TestClient) -> None:
    _add(app, "greet", "one")
    evil = {"Origin": "https://evil.example"}
    response = ui.post("/ui/prompts/greet/labels", data={"label": "production", "version": "1"},
                       headers=evil)  # fmt: skip
    assert response.status_code == 403
    assert ui.post("/ui/prompts/greet/playground", data={}, headers=evil).status_code == 403
    assert _c(app).prompts.get("greet").labels == {}


# --- new versions ------------------------------------------------------------------------------


def test_creating_a_version(app: FastAPI, ui: TestClient) -> None:
    _add(app, "greet", "Hello {{ name }}", params={"temperature": 0.5})
    page = ui.get("/ui/prompts/greet").text
    assert ">Hello {{ name }}</textarea>" in page  # the form starts from the latest version
    assert "&#34;temperature&#34;: 0.5" in page
    form = {
        "template": "Hi {{ name }}, about {{ topic }}",
        "variables": "name, topic extra",
        "params": '{"temperature": 0.1, "max_tokens": 64}',
        "message": "friendlier",
    }
    done = _follow(ui, ui.post("/ui/prompts/greet/versions", data=form))
    assert "Created version 2." in done
    created = _c(app).prompts.get_version("greet", 2)
    assert created.template == form["template"]
    assert created.variables == ["extra", "name", "topic"]
    assert created.params == {"temperature": 0.1, "max_tokens": 64}
    assert created.message == "friendlier"
    inferred = _follow(ui, ui.post("/ui/prompts/greet/versions", data={"template": "{{ q }}"}))
    assert "Created version 3." in inferred
    assert _c(app).prompts.get_version("greet", 3).variables == ["q"]


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"template": "Hello {{ name "}, "template syntax error on line 1"),
        ({"template": "Hi {{ a }} {{ b }}", "variables": "a"}, "undeclared variables: b"),
        ({"template": "x", "params": "{temperature: 1}"}, "model params must be a JSON object"),
        ({"template": "x", "params": "[1, 2]"}, "model params must be a JSON object"),
        ({"template": ""}, "template: String should have at least 1 character"),
    ],
)
def test_a_bad_version_is_refused_with_the_form_kept(
    app: FastAPI, ui: TestClient, form: dict[str, str], message: str
) -> None:
    _add(app, "greet", "one")
    response = ui.post("/ui/prompts/greet/versions", data=form)
    assert response.status_code == 422
    text = html.unescape(response.text)
    assert message in text
    assert f">{form['template']}</textarea>" in text  # what was typed is still there
    assert _c(app).prompts.get("greet").latest_version == 1
    reload = ui.get("/ui/prompts/greet/versions")  # the refused form's URL, opened again
    assert reload.headers["location"] == "/ui/prompts/greet#new-version"


def test_a_hostile_template_is_escaped(app: FastAPI, ui: TestClient) -> None:
    _add(app, "greet", "<script>alert(1)</script> {{ who }}", message="<b>bold</b>")
    page = ui.get("/ui/prompts/greet").text
    assert "<script>alert(1)</script>" not in page and "<b>bold</b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    play = ui.get("/ui/prompts/greet/playground").text
    assert "<script>alert(1)</script>" not in play


def test_a_name_no_address_could_hold_is_refused(app: FastAPI, ui: TestClient) -> None:
    with pytest.raises(InvalidInputError):
        _add(app, HOSTILE, "Hello {{ name }}")
    assert "team a" not in ui.get("/ui/prompts").text


def test_an_unusual_name_is_linked_and_usable(app: FastAPI, ui: TestClient) -> None:
    name = "team.a_b-1"
    _add(app, name, "Hello {{ name }}")
    link = f"/ui/prompts/{name}"
    assert f'href="{link}"' in ui.get("/ui/prompts").text
    detail = ui.get(link)
    assert detail.status_code == 200
    assert f'action="{link}/versions#new-version"' in detail.text
    moved = ui.post(f"{link}/labels", data={"label": "production", "version": "1"})
    assert moved.headers["location"] == link
    assert _c(app).prompts.get(name).labels == {"production": 1}
    play = ui.post(f"{link}/playground", data={"ref": "production", "var.name": "Ann",
                                               "action": "render"})  # fmt: skip
    assert play.status_code == 200 and "Hello Ann" in play.text


# --- playground --------------------------------------------------------------------------------


def test_the_playground_renders_with_one_input_per_variable(app: FastAPI, ui: TestClient) -> None:
    _add(app, "greet", "Hello {{ name }}, welcome to {{ place }}!")
    _add(app, "greet", "Yo {{ name }}")
    _c(app).prompts.set_label("greet", "production", 1, local_actor())
    page = ui.get("/ui/prompts/greet/playground")
    assert page.status_code == 200
    assert page.text.count('name="var.') == 2  # production (v1) is the default
    assert 'name="var.name"' in page.text and 'name="var.place"' in page.text
    assert '<option value="production" selected>' in page.text
    assert "No deployments yet" in page.text and "llmloop deployments apply" in page.text
    latest = ui.get("/ui/prompts/greet/playground?ref=latest")
    assert latest.text.count('name="var.') == 1
    form = {"ref": "production", "var.name": "<Ann>", "var.place": "Oslo", "action": "render"}
    done = ui.post("/ui/prompts/greet/playground", data=form)
    assert done.status_code == 200
    assert '<div class="msg user"><span class="role">user</span>Hello &lt;Ann&gt;, welcome to ' \
           "Oslo!</div>" in done.text  # fmt: skip
    assert ">&lt;Ann&gt;</textarea>" in done.text  # the inputs keep their values
    assert "msg assistant" not in done.text
    for shown in (page, done):  # the page's own values never hide the footer's version
        assert f"llmloop {__version__} ·" in shown.text


def test_the_playground_takes_json_values(app: FastAPI, ui: TestClient) -> None:
    _add(app, "list", "{% for x in items %}[{{ x }}]{% endfor %}")
    form = {"ref": "1", "var.items": '["a", "b"]', "json_values": "on", "action": "render"}
    done = ui.post("/ui/prompts/list/playground", data=form)
    assert done.status_code == 200 and "[a][b]" in done.text
    bad = ui.post("/ui/prompts/list/playground", data={**form, "var.items": "[oops"})
    assert bad.status_code == 422
    assert "variable 'items' is not valid JSON" in html.unescape(bad.text)


def test_the_playground_refuses_bad_refs(app: FastAPI, ui: TestClient) -> None:
    _add(app, "greet", "Hello")
    assert ui.get("/ui/prompts/greet/playground?ref=%3Cx%3E").status_code == 422
    missing = ui.get("/ui/prompts/greet/playground?ref=production")
    assert missing.status_code == 404 and "has no label 'production'" in html.unescape(missing.text)


def test_running_on_an_echo_deployment(app: FastAPI, ui: TestClient, keys: dict[str, str]) -> None:
    _add(app, "greet", "Hello {{ name }}", params={"max_tokens": 32, "temperature": 0.3})
    _deploy(app, "echo", prefix="echo: ")
    page = ui.get("/ui/prompts/greet/playground")
    assert '<option value="echo" selected>echo</option>' in page.text
    assert 'name="max_tokens" type="number" min="1" max="131072" value="32"' in page.text
    form = {"ref": "latest", "var.name": "Ann", "deployment": "echo", "max_tokens": "16",
            "temperature": "0", "action": "run"}  # fmt: skip
    done = ui.post("/ui/prompts/greet/playground", data=form)
    assert done.status_code == 200, done.text
    main = _main(done)
    assert "assistant · echo" in main and "echo: Hello Ann" in main
    assert "tokens in / out" in main and " ms" in main and "stop" in main
    trace_id = re.search(r'href="/ui/traces/([^"]+)"', done.text)
    assert trace_id is not None
    trace = _wait_for_trace(_c(app), trace_id.group(1))
    assert trace.deployment == "echo" and trace.status == "ok"
    admin = next(k for k in _c(app).keys.list() if k.name == "admin-key")
    assert trace.key_id == admin.id  # the signed-in key, not an anonymous one


def test_a_viewer_may_run_the_playground_as_on_v1(app: FastAPI, viewer_ui: TestClient) -> None:
    _add(app, "greet", "Hello {{ name }}")
    _deploy(app, "echo")
    form = {"var.name": "Vi", "deployment": "echo", "max_tokens": "8", "temperature": "1",
            "action": "run"}  # fmt: skip
    done = viewer_ui.post("/ui/prompts/greet/playground", data=form)
    assert done.status_code == 200 and "Hello Vi" in _main(done)


def _wait_for_trace(c: Container, trace_id: str) -> Any:
    deadline = time.monotonic() + 10
    while True:
        try:
            return c.gateway.traces.get(trace_id)
        except NotFoundError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.mark.parametrize(
    ("form", "status", "message"),
    [
        ({"deployment": "nope"}, 422, "choose a deployment"),
        ({"max_tokens": "lots"}, 422, "max tokens must be a whole number"),
        ({"max_tokens": "0"}, 422, "sampling settings: max_tokens"),
        ({"temperature": "9"}, 422, "sampling settings: temperature"),
    ],
)
def test_bad_run_settings_say_why(
    app: FastAPI, ui: TestClient, form: dict[str, str], status: int, message: str
) -> None:
    _add(app, "greet", "Hello {{ name }}")
    _deploy(app, "echo")
    base = {"var.name": "Ann", "deployment": "echo", "max_tokens": "8", "temperature": "1",
            "action": "run"}  # fmt: skip
    response = ui.post("/ui/prompts/greet/playground", data={**base, **form})
    assert response.status_code == status
    assert message in html.unescape(response.text)
    assert "Hello Ann" in _main(response)  # the render still shows
    assert "msg assistant" not in response.text


def test_an_engine_failure_is_a_message_not_a_500(app: FastAPI, ui: TestClient) -> None:
    _add(app, "greet", "Hello")
    _deploy(app, "flaky", fail_rate=1.0)
    form = {"deployment": "flaky", "max_tokens": "8", "temperature": "1", "action": "run"}
    response = ui.post("/ui/prompts/greet/playground", data=form)
    assert response.status_code == 502
    assert "echo engine: simulated failure" in response.text
    assert 'class="flash error"' in response.text and "msg assistant" not in response.text


def test_a_broken_engine_is_a_message_not_a_500(app: FastAPI, ui: TestClient) -> None:
    _add(app, "greet", "Hello")
    _deploy(app, "broken", fail_rate="not a number")  # stored unchecked: it cannot start
    form = {"deployment": "broken", "max_tokens": "8", "temperature": "1", "action": "run"}
    response = ui.post("/ui/prompts/greet/playground", data=form)
    assert response.status_code == 502
    assert "bad echo engine options: fail_rate" in _main(response)


def test_a_rate_limit_is_a_message(app: FastAPI) -> None:
    _add(app, "greet", "Hello")
    _deploy(app, "echo")
    spec = ApiKeyCreate(name="limited", role="viewer", limits={"rpm": 1})
    secret = _c(app).keys.create(spec, local_actor()).secret
    form = {"deployment": "echo", "max_tokens": "8", "temperature": "1", "action": "run"}
    with TestClient(app, follow_redirects=False) as tc:
        assert tc.post("/ui/login", data={"key": secret}).status_code == 303
        assert tc.post("/ui/prompts/greet/playground", data=form).status_code == 200
        limited = tc.post("/ui/prompts/greet/playground", data=form)
        assert limited.status_code == 429
        assert "rate limit: 1 requests per minute for this key" in _main(limited)
        assert "msg assistant" not in limited.text


def test_model_params_read_as_they_were_written(app: FastAPI, ui: TestClient) -> None:
    # Jinja's tojson wrote them as \u0027-style escapes, shown raw on the page.
    _add(app, "quoted", "Hi {{ x }}", params={"stop": ["</s>"], "note": "don't & <b>"})
    _add(app, "quoted", "Hello {{ x }}", params={"note": "do"})
    for path in ("/ui/prompts/quoted", "/ui/prompts/quoted/playground?ref=1"):
        page = ui.get(path)
        assert page.status_code == 200
        assert "\\u00" not in page.text, path
        assert "don&#39;t &amp; &lt;b&gt;" in page.text, path  # escaped once, as text is
        assert '{"note": "don\'t & <b>", "stop": ["</s>"]}' in html.unescape(page.text), path


def test_a_template_preview_keeps_text_without_spaces(app: FastAPI, ui: TestClient) -> None:
    # Cutting at the last space left only "v2..." of a template whose next word is long.
    _add(app, "url", "see https://example.org/" + "a" * 200 + " now")
    _add(app, "cjk", "系统: " + "请用中文回答客户的问题" * 10)
    for name, start in (("url", "see https://example.org/aaaa"), ("cjk", "系统: 请用中文回答")):
        summary = ui.get(f"/ui/prompts/{name}").text.split("<summary><code>")[1]
        assert summary.startswith(start) and summary.index("…</code>") == 69, name
