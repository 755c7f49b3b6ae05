"""Dashboard pages of traces: the filtered, paged list, one trace (request, answer, attributes,
guard verdicts, shadow copies, feedback), the feedback form, and TraceQuery's filters."""

from __future__ import annotations

import html
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from markupsafe import escape

from llmloop.core.chat import ChatMessage, GenerationRequest
from llmloop.core.deployments import DeploymentSpec
from llmloop.core.feedback import FeedbackCreate
from llmloop.core.models import ModelVersionCreate
from llmloop.core.traces import TraceRecord, join_turns, new_trace_id, split_turns
from llmloop.services.actors import local_actor
from llmloop.services.container import Container
from llmloop.services.gateway.intake import request_text
from llmloop.services.gateway.trace_table import TraceTable

ME = local_actor("ops")
HOSTILE = "<script>alert('x')</script>"
NOW = datetime.now(UTC)


@pytest.fixture
def app(threaded_app: FastAPI) -> FastAPI:
    return threaded_app


def container(app: FastAPI) -> Container:
    c: Container = app.state.container
    return c


def record(**fields: Any) -> TraceRecord:
    base: dict[str, Any] = {
        "id": new_trace_id(),
        "at": NOW,
        "operation": "chat",
        "deployment": "chat",
        "request_model": "chat",
        "response_model": "echo",
        "target": "primary0:echo:echo",
        "request_text": "user: hi",
        "response_text": "hello",
        "latency_ms": 12.5,
        "input_tokens": 3,
        "output_tokens": 5,
    }
    return TraceRecord(**{**base, **fields})


def write(app: FastAPI, *records: TraceRecord) -> list[TraceRecord]:
    """Store ``records`` as the trace writer would (same rows, same table)."""
    table = TraceTable(container(app).store, max_text=100_000)
    table.insert([table.row(r) for r in records])
    return list(records)


def flash_of(ui: TestClient, response: Any) -> str:
    """Follow a 303 and return the page it leads to."""
    assert response.status_code == 303, response.text
    return ui.get(response.headers["location"]).text


def rows_of(page: str) -> str:
    """The table body of a list page (so the filter form's options do not count as hits)."""
    return page.split("<tbody>", 1)[1].split("</tbody>", 1)[0] if "<tbody>" in page else ""


# --- the list -----------------------------------------------------------------------------


def test_empty_list_says_what_to_do(ui: TestClient) -> None:
    page = ui.get("/ui/traces")
    assert page.status_code == 200
    assert "No traces yet" in page.text and "/v1/chat/completions" in page.text
    filtered = ui.get("/ui/traces?status=error")
    assert "No traces match these filters" in filtered.text


def test_list_shows_newest_first_with_every_column(app: FastAPI, ui: TestClient) -> None:
    c = container(app)
    version = c.models.create_version("bot", ModelVersionCreate(format="echo"), ME)
    old = record(at=NOW - timedelta(minutes=5), request_text="user: the older one")
    new = record(
        model_version_id=version.id, user="alice", ttft_ms=4.25, cost=0.0125,
        cache_hit=True, input_tokens=1234, output_tokens=56, latency_ms=87.5,
        request_text="user: the newer question",
    )  # fmt: skip
    write(app, old, new)
    page = ui.get("/ui/traces")
    assert page.status_code == 200
    body = rows_of(page.text)
    assert body.index(new.id) < body.index(old.id)
    for text in ("bot v1", "alice", "87.5", "4.25", "1,234 / 56", "0.0125", "badge ok",
                 "the newer question", ">hit<", f'href="/ui/traces/{new.id}"'):  # fmt: skip
        assert text in body, text
    assert 'href="/ui/traces?deployment=chat"' in body


def test_shadow_copies_are_marked_and_link_their_primary(app: FastAPI, ui: TestClient) -> None:
    primary = record()
    shadow = record(kind="shadow", parent_id=primary.id, at=NOW + timedelta(milliseconds=1))
    write(app, primary, shadow)
    body = rows_of(ui.get("/ui/traces").text)
    assert body.count(">shadow<") == 1
    assert f'href="/ui/traces/{primary.id}" title="the primary request"' in body
    only = rows_of(ui.get("/ui/traces?kind=shadow").text)
    assert shadow.id in only and f'href="/ui/traces/{primary.id}">' not in only
    primaries = rows_of(ui.get("/ui/traces?kind=primary").text)
    assert primary.id in primaries and shadow.id not in primaries


def test_filters_by_deployment_status_user_key_and_time(app: FastAPI, ui: TestClient) -> None:
    a = record(deployment="alpha", user="u1", key_id="ak_one")
    b = record(deployment="beta", status="error", error="boom", http_status=502, user="u2")
    old = record(deployment="alpha", at=NOW - timedelta(days=2), user="u1")
    write(app, a, b, old)

    def ids(query: str) -> set[str]:
        page = ui.get(f"/ui/traces?{query}")
        assert page.status_code == 200, page.text
        body = rows_of(page.text)
        return {t.id for t in (a, b, old) if t.id in body}

    assert ids("deployment=alpha") == {a.id, old.id}
    assert ids("status=error") == {b.id}
    assert ids("user=u1") == {a.id, old.id}
    assert ids("key=ak_one") == {a.id}
    since = (NOW - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    assert ids(f"since={since}") == {a.id, b.id}
    assert ids(f"until={since}") == {old.id}
    assert ids(f"deployment=alpha&since={since}") == {a.id}
    assert ids("since=1d") == {a.id, b.id}  # a time ago
    assert ids("since=3d&until=36h") == {old.id}
    assert ids("since=2024-01-01 00:00") == {a.id, b.id, old.id}
    assert ids("deployment=nobody") == set()
    # the chosen filters stay chosen, and the deployment list offers every deployment seen
    page = ui.get("/ui/traces?deployment=alpha&status=error&since=2h").text
    assert '<option value="error" selected>' in page
    assert '<option value="alpha" selected>' in page
    assert 'name="since" value="2h"' in page
    # the quick ranges keep the other filters and replace the time range
    assert 'href="/ui/traces?deployment=alpha&amp;status=error&amp;since=24h"' in page


def test_paging_walks_every_trace_once(app: FastAPI, ui: TestClient) -> None:
    traces = write(app, *[record(at=NOW - timedelta(seconds=i)) for i in range(7)])
    seen: list[str] = []
    url = "/ui/traces?deployment=chat&limit=3"
    for _ in range(5):
        page = ui.get(url).text
        body = rows_of(page)
        seen += [t.id for t in traces if t.id in body]
        if "older →" not in page:
            break
        href = page.split("older →")[0].rsplit('href="', 1)[1].split('"')[0]
        url = html.unescape(href)
        assert "deployment=chat" in url  # the filters ride along
    assert seen == [t.id for t in traces]  # newest first, none twice, none missing
    last = ui.get("/ui/traces?deployment=chat&limit=3&offset=6").text
    assert "← newer" in last and "older →" not in last
    beyond = ui.get("/ui/traces?limit=3&offset=30").text
    assert "No more traces here" in beyond


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("status=bogus", "status must be one of ok, error, cancelled"),
        ("kind=ghost", "kind must be one of primary, shadow"),
        ("since=yesterday", "since: 'yesterday' is not a time (use 2h, 7d"),
        ("until=2024-13-45", "until: '2024-13-45' is not a time"),
        ("since=2024-02-02&until=2024-02-01", "since must be before until"),
    ],
)
def test_bad_filters_are_explained_not_a_500(
    app: FastAPI, ui: TestClient, query: str, message: str
) -> None:
    write(app, record())
    page = ui.get(f"/ui/traces?{query}")
    assert page.status_code == 422
    assert str(escape(message)) in page.text
    assert "<tbody>" not in page.text  # no traces under a filter that means nothing


def test_out_of_range_paging_is_refused(ui: TestClient) -> None:
    refused = ui.get("/ui/traces?limit=0")
    assert refused.status_code == 422 and refused.headers["content-type"].startswith("text/html")
    assert ui.get("/ui/traces?limit=501").status_code == 422
    assert ui.get("/ui/traces?offset=-1").status_code == 422


def test_hostile_text_is_escaped_in_the_list(app: FastAPI, ui: TestClient) -> None:
    write(app, record(deployment="x y/z", user=HOSTILE, request_text=f"user: {HOSTILE}"))
    page = ui.get("/ui/traces").text
    assert HOSTILE not in page
    assert "&lt;script&gt;" in page
    assert 'href="/ui/traces?deployment=x%20y%2Fz"' in page
    filtered = ui.get("/ui/traces", params={"deployment": "x y/z"})
    assert filtered.status_code == 200 and "&lt;script&gt;" in rows_of(filtered.text)
    assert ui.get("/ui/traces", params={"deployment": HOSTILE}).text.count(HOSTILE) == 0


def test_admins_pick_keys_by_name_others_type_an_id(
    app: FastAPI, ui: TestClient, viewer_ui: TestClient
) -> None:
    assert ">admin-key</option>" in ui.get("/ui/traces").text
    page = viewer_ui.get("/ui/traces")
    assert page.status_code == 200
    assert "admin-key" not in page.text and 'name="key"' in page.text


def test_pages_need_a_sign_in(app: FastAPI) -> None:
    trace = write(app, record())[0]
    with TestClient(app, follow_redirects=False) as tc:
        for url in ("/ui/traces", f"/ui/traces/{trace.id}"):
            assert tc.get(url).status_code == 303
        refused = tc.post(f"/ui/traces/{trace.id}/feedback", data={"kind": "thumbs", "value": "1"})
        assert refused.status_code == 303 and "/ui/login" in refused.headers["location"]
    assert container(app).feedback.list(trace_id=trace.id) == []


# --- one trace ----------------------------------------------------------------------------


def test_detail_shows_the_chat_answer_timings_and_attributes(app: FastAPI, ui: TestClient) -> None:
    c = container(app)
    version = c.models.create_version("bot", ModelVersionCreate(format="echo"), ME)
    trace = record(
        request_text="system: be brief\nuser: what is 2+2?\nline two\nassistant: 4\nuser: sure?",
        response_text="yes, 4", model_version_id=version.id, ttft_ms=3.5, stream=True,
        finish_reason="stop", user="bob", cost=0.002, extra={"llmloop.prompt_version": "pv_1"},
    )  # fmt: skip
    write(app, trace)
    page = ui.get(f"/ui/traces/{trace.id}")
    assert page.status_code == 200
    text = page.text
    assert '<div class="msg system"><span class="role">system</span>be brief</div>' in text
    assert '<span class="role">user</span>what is 2+2?\nline two</div>' in text
    assert '<div class="msg assistant"><span class="role">assistant</span>4</div>' in text
    assert '<span class="role">assistant</span>yes, 4</div>' in text  # the response
    for shown in ("bot v1", "3.5 ms", "12.5 ms", "3 / 5", "$0.002", "stop", "bob",
                  "gen_ai.request.model", "gen_ai.usage.output_tokens", "llmloop.prompt_version",
                  "pv_1", "[&#34;stop&#34;]", 'href="/ui/deployments/chat"'):  # fmt: skip
        assert shown in text, shown
    assert "No guard ran" in text and "No feedback on this trace yet" in text
    assert "Macro" not in text  # no name of this page shadows one of the layout's
    assert "None: the deployment has no shadow target" in text


def test_detail_of_a_failed_completion_shows_its_error_and_plain_text(
    app: FastAPI, ui: TestClient
) -> None:
    trace = record(
        operation="text_completion", request_text="Once upon a time", response_text="",
        status="error", http_status=504, error="the target did not answer in time",
    )  # fmt: skip
    write(app, trace)
    text = ui.get(f"/ui/traces/{trace.id}").text
    assert "<pre>Once upon a time</pre>" in text
    assert "the target did not answer in time" in text
    assert "error (HTTP 504)" in text and "badge error" in text
    assert 'class="msg' not in text.split("<h2>Outcome</h2>")[0]


def test_detail_escapes_html_in_request_response_and_attributes(
    app: FastAPI, ui: TestClient
) -> None:
    trace = record(
        request_text=f"user: {HOSTILE}", response_text=f"<img src=x onerror=alert(1)>{HOSTILE}",
        error=HOSTILE, user=HOSTILE, extra={"llmloop.note": HOSTILE, HOSTILE: 1},
        guard_verdicts=[{"guard": HOSTILE, "rule_id": "r", "action": "flag", "stage": "input",
                         "reason": HOSTILE, "score": 0.9}],
    )  # fmt: skip
    write(app, trace)
    text = ui.get(f"/ui/traces/{trace.id}").text
    assert HOSTILE not in text and "<img src=x" not in text
    assert text.count("&lt;script&gt;") >= 7


def test_guard_verdicts_are_a_table(app: FastAPI, ui: TestClient) -> None:
    trace = record(
        guard_verdicts=[
            {"guard": "pii", "rule_id": "pii.email", "action": "redact", "stage": "input",
             "reason": "an email address", "score": None, "redacted": "mail [EMAIL]"},
            {"guard": "deny_list", "rule_id": "deny_list.secret", "action": "block",
             "stage": "output", "reason": "secret word", "score": 0.75},
        ]
    )  # fmt: skip
    write(app, trace)
    text = ui.get(f"/ui/traces/{trace.id}").text
    section = text.split("<h2>Guard verdicts</h2>")[1].split("</table>")[0]
    for shown in ("pii.email", "an email address", "badge redact", "deny_list.secret",
                  "badge block", "0.75", "output"):  # fmt: skip
        assert shown in section, shown


def test_shadow_answers_sit_beside_the_primary(app: FastAPI, ui: TestClient) -> None:
    primary = record(response_text="P: the primary answer")
    shadow = record(kind="shadow", parent_id=primary.id, response_text="S: the shadow answer",
                    target="shadow1:echo:echo", latency_ms=40.0)  # fmt: skip
    failed = record(kind="shadow", parent_id=primary.id, status="error", response_text="",
                    error="shadow engine failed")  # fmt: skip
    write(app, primary, shadow, failed)
    text = ui.get(f"/ui/traces/{primary.id}").text
    section = text.split("<h2>Shadow copies</h2>")[1].split("<h2>")[0]
    assert section.index("P: the primary answer") < section.index("S: the shadow answer")
    assert f'href="/ui/traces/{shadow.id}"' in section and "40 ms" in section
    assert "shadow engine failed" in section and "(no text stored)" in section
    copy = ui.get(f"/ui/traces/{shadow.id}").text
    assert f'Shadow copy of <a href="/ui/traces/{primary.id}">' in copy
    assert "<h2>Shadow copies</h2>" not in copy


def test_unknown_trace_is_a_404_page(ui: TestClient) -> None:
    for trace_id in ("tr_00000000000000000000000000", "nope", "<b>x"):
        page = ui.get(f"/ui/traces/{trace_id}")
        assert page.status_code == 404
        assert page.headers["content-type"].startswith("text/html")
        assert "no trace with id" in page.text and "<b>x" not in page.text


# --- feedback -----------------------------------------------------------------------------


def _post(ui: TestClient, trace_id: str, **data: str) -> Any:
    return ui.post(f"/ui/traces/{trace_id}/feedback", data=data)


def test_every_kind_of_feedback_is_stored_and_listed(app: FastAPI, ui: TestClient) -> None:
    trace = write(app, record(response_text="Paris is in Spain."))[0]
    page = ui.get(f"/ui/traces/{trace.id}").text
    assert page.count(f'action="/ui/traces/{trace.id}/feedback"') == 5
    assert ">Paris is in Spain.</textarea>" in page  # the correction starts from the answer
    posts = [
        {"kind": "thumbs", "value": "0", "comment": "wrong country"},
        {"kind": "thumbs", "value": "1"},
        {"kind": "score", "name": "helpfulness", "value": "4", "scale_min": "1",
         "scale_max": "5"},
        {"kind": "comment", "comment": "check the geography"},
        {"kind": "correction", "correction": "Paris is in France.", "comment": ""},
        {"kind": "preference", "alternative": "Paris is in France!", "preferred": "b"},
    ]  # fmt: skip
    for data in posts:
        response = _post(ui, trace.id, **data)
        assert response.status_code == 303
        assert response.headers["location"] == f"/ui/traces/{trace.id}#feedback"
        assert f"Saved {data['kind']} feedback." in flash_of(ui, response)
    stored = container(app).feedback.list(trace_id=trace.id)
    assert [(f.kind, f.value) for f in stored] == [
        ("thumbs", 0.0), ("thumbs", 1.0), ("score", 4.0), ("comment", None),
        ("correction", None), ("preference", None),
    ]  # fmt: skip
    assert stored[0].comment == "wrong country" and stored[0].user == "admin-key"
    assert (stored[2].name, stored[2].scale_min, stored[2].scale_max) == ("helpfulness", 1, 5)
    assert stored[4].correction == "Paris is in France."
    assert (stored[5].alternative, stored[5].preferred) == ("Paris is in France!", "b")
    section = ui.get(f"/ui/traces/{trace.id}").text.split('id="feedback"')[1]
    for shown in ("badge down", "badge up", "wrong country", "4 on 1–5", "check the geography",
                  "<pre>Paris is in France.</pre>", "the alternative (b)"):  # fmt: skip
        assert shown in section, shown


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"kind": "thumbs", "value": "2"}, "thumbs feedback needs value 1 (up) or 0 (down)"),
        ({"kind": "thumbs"}, "thumbs feedback needs value 1"),
        (
            {"kind": "score", "name": "q", "value": "9", "scale_min": "1", "scale_max": "5"},
            "score 9.0 is outside 1.0-5.0",
        ),
        (
            {"kind": "score", "name": "q", "value": "abc", "scale_min": "1", "scale_max": "5"},
            "value: 'abc' is not a number",
        ),
        (
            {"kind": "score", "name": "q", "value": "nan", "scale_min": "1", "scale_max": "5"},
            "value: 'nan' is not a finite number",
        ),
        (
            {"kind": "score", "value": "3", "scale_min": "1", "scale_max": "5"},
            "a score needs the name of its scale",
        ),
        (
            {"kind": "score", "name": "q", "value": "3", "scale_min": "5", "scale_max": "1"},
            "scale_min must be below scale_max",
        ),
        ({"kind": "comment", "comment": "   "}, "a comment cannot be empty"),
        ({"kind": "correction", "correction": ""}, "a correction needs the corrected answer"),
        ({"kind": "preference", "alternative": "x"}, "a preference needs preferred"),
        ({"kind": "preference", "alternative": "x", "preferred": "c"}, "preferred: Input should"),
        ({"kind": "love"}, "kind: Input should be"),
        ({}, "kind: Input should be"),
        ({"kind": "comment", "comment": "x" * 20_001}, "comment: String should have at most"),
    ],
)
def test_bad_feedback_is_explained_and_nothing_is_stored(
    app: FastAPI, ui: TestClient, data: dict[str, str], message: str
) -> None:
    trace = write(app, record())[0]
    response = _post(ui, trace.id, **data)
    assert response.status_code == 303
    assert response.headers["location"] == f"/ui/traces/{trace.id}"  # the message shows at the top
    assert "e:" in response.headers["set-cookie"]  # an error flash
    page = flash_of(ui, response)
    assert 'class="flash error"' in page
    assert str(escape(message)) in page
    assert container(app).feedback.list(trace_id=trace.id) == []


def test_feedback_on_an_unknown_trace_is_a_404(app: FastAPI, ui: TestClient) -> None:
    response = _post(ui, "tr_00000000000000000000000000", kind="thumbs", value="1")
    assert response.status_code == 404
    assert "no trace with id" in response.text


def test_a_viewer_may_give_feedback(app: FastAPI, viewer_ui: TestClient) -> None:
    trace = write(app, record())[0]
    response = _post(viewer_ui, trace.id, kind="thumbs", value="1")
    assert response.status_code == 303
    [saved] = container(app).feedback.list(trace_id=trace.id)
    assert (saved.created_by, saved.value) == ("viewer-key", 1.0)


def test_feedback_text_is_escaped(app: FastAPI, ui: TestClient) -> None:
    trace = write(app, record())[0]
    c = container(app)
    c.feedback.add(trace.id, FeedbackCreate(kind="comment", comment=HOSTILE, user=HOSTILE), ME)
    c.feedback.add(trace.id, FeedbackCreate(kind="correction", correction=HOSTILE), ME)
    text = ui.get(f"/ui/traces/{trace.id}").text
    assert HOSTILE not in text
    assert text.split('id="feedback"')[1].count("&lt;script&gt;") >= 3


def test_feedback_from_another_site_is_refused(app: FastAPI, ui: TestClient) -> None:
    trace = write(app, record())[0]
    response = ui.post(
        f"/ui/traces/{trace.id}/feedback",
        data={"kind": "thumbs", "value": "1"},
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 403
    assert container(app).feedback.list(trace_id=trace.id) == []


# --- a real request through the gateway ---------------------------------------------------


def test_a_request_through_the_gateway_shows_up(
    app: FastAPI, ui: TestClient, keys: dict[str, str]
) -> None:
    c = container(app)
    spec = {"name": "echoes", "targets": [{"engine": {"kind": "echo", "model": "echo",
            "options": {"prefix": "E:"}}}], "shadow": {"engine": {"kind": "echo",
            "model": "echo", "options": {"prefix": "S:"}}}}  # fmt: skip
    c.deployments.apply(DeploymentSpec.model_validate(spec), ME)
    body = {
        "model": "echoes",
        "user": "carol",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "<b>bold</b> & more"},
        ],
    }
    answer = ui.post(
        "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {keys['editor']}"}
    )
    assert answer.status_code == 200, answer.text
    trace_id = answer.headers["x-llmloop-trace-id"]
    assert ui.portal is not None
    ui.portal.call(c.gateway.drain_background)
    ui.portal.call(c.gateway.writer.flush)

    listed = ui.get("/ui/traces?deployment=echoes").text
    assert trace_id in listed and "carol" in listed and "badge canary" in listed
    page = ui.get(f"/ui/traces/{trace_id}").text
    assert '<span class="role">user</span>&lt;b&gt;bold&lt;/b&gt; &amp; more</div>' in page
    assert "E:&lt;b&gt;bold&lt;/b&gt; &amp; more" in page
    assert "S:&lt;b&gt;bold&lt;/b&gt; &amp; more" in page  # the shadow's answer beside it
    editor = next(k for k in c.keys.list() if k.name == "editor-key")
    assert f'href="/ui/traces?key={editor.id}">editor-key</a>' in page

    assert _post(ui, trace_id, kind="thumbs", value="1").status_code == 303
    [saved] = c.feedback.list(trace_id=trace_id)
    assert saved.kind == "thumbs"


# --- helpers and TraceQuery's filters ----------------------------------------------------


def test_chat_turns_split_on_role_marks_only_at_line_starts() -> None:
    text = "system: s\nuser: a\nb user: not a mark\nassistant: c\n\nuser: d"
    assert split_turns(text) == [
        ("system", "s"), ("user", "a\nb user: not a mark"), ("assistant", "c\n"), ("user", "d"),
    ]  # fmt: skip
    assert split_turns("plain prompt\nuser: late") == []
    assert split_turns("") == []
    turns = [("system", "be brief"), ("user", "two\nlines"), ("assistant", "ok")]
    assert split_turns(join_turns(turns)) == turns  # what the gateway writes reads back
    req = GenerationRequest(model="m", messages=[ChatMessage(role=r, content=c) for r, c in turns])
    assert request_text(req) == join_turns(turns)  # the gateway's inline copy of the format


def test_trace_query_filters(app: FastAPI) -> None:
    query = container(app).gateway.traces
    a = record(deployment="d1", user="u", key_id="k1", at=NOW - timedelta(hours=3))
    b = record(deployment="d1", status="error", at=NOW - timedelta(hours=2))
    s = record(deployment="d1", kind="shadow", parent_id=b.id, at=NOW - timedelta(hours=1))
    e = record(deployment="d2", user="u", at=NOW)
    write(app, a, b, s, e)

    def ids(*args: Any, **kw: Any) -> list[str]:
        return [t.id for t in query.list(*args, **kw)]

    assert ids(limit=10) == [e.id, s.id, b.id, a.id]
    assert ids("d1", None, 2) == [s.id, b.id]  # the old positional signature still works
    assert ids(parent_id=b.id) == [s.id]
    assert ids(status="error") == [b.id]
    assert ids(user="u") == [e.id, a.id]
    assert ids(key_id="k1") == [a.id]
    assert ids(kind="primary") == [e.id, b.id, a.id]
    assert ids(since=NOW - timedelta(hours=2, minutes=1)) == [e.id, s.id, b.id]
    assert ids(until=NOW - timedelta(hours=2)) == [a.id]  # until is exclusive
    assert ids(since=b.at, until=e.at) == [s.id, b.id]
    naive = (NOW - timedelta(hours=1, minutes=30)).replace(tzinfo=None)
    assert ids(since=naive) == [e.id, s.id]  # naive means UTC
    local = (NOW - timedelta(hours=1, minutes=30)).astimezone(timezone(timedelta(hours=5)))
    assert ids(since=local) == [e.id, s.id]  # another zone is converted, not misread
    assert ids(limit=2, offset=1) == [s.id, b.id]
    assert ids(limit=2, offset=4) == []
    assert ids(deployment="d1", kind="primary", user="u") == [a.id]
    assert ids(status="") == ids(limit=100)  # an empty filter does not filter


def test_trace_query_pages_traces_of_the_same_instant_without_overlap(app: FastAPI) -> None:
    same = sorted((record(at=NOW) for _ in range(5)), key=lambda r: r.id, reverse=True)
    write(app, *same)  # stored highest id first: the store's own order is the opposite
    query = container(app).gateway.traces
    pages = [[t.id for t in query.list(limit=2, offset=o)] for o in (0, 2, 4)]
    assert [i for page in pages for i in page] == [r.id for r in same]


def test_the_request_preview_keeps_text_without_spaces(app: FastAPI, ui: TestClient) -> None:
    # Cut at the last space, a message in Chinese showed as "user:..." in the lists.
    chinese = "我的订单" * 40
    write(app, record(request_text=f"user: {chinese}"))
    for path in ("/ui/traces", "/ui/"):
        page = ui.get(path).text
        assert f"user: {chinese[:40]}" in page, path
        assert "user:..." not in page and "user:…" not in page, path


def test_a_long_user_does_not_widen_the_traces_table(app: FastAPI, ui: TestClient) -> None:
    user = "customer-" + "x" * 200
    write(app, record(user=user))
    page = ui.get("/ui/traces").text
    row = page.split("<tbody>")[1]
    assert f'<span title="{user}">{user[:24]}…</span>' in row
    assert 'white-space:nowrap">customer' not in row
