"""The store contract: the same registry behaviour on every backend (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import sqlalchemy as sa

from llmloop.core.datasets import DatasetVersionCreate
from llmloop.core.governance import ApprovalCreate
from llmloop.core.models import ModelVersionCreate
from llmloop.core.prompts import PromptVersionCreate
from llmloop.core.runs import MetricPoint, RunCreate, RunInput
from llmloop.errors import (
    ApprovalRequiredError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    SchemaOutdatedError,
)
from llmloop.services.actors import Actor
from llmloop.services.container import Container
from llmloop.store import db
from llmloop.store.registry import Store

ALICE = Actor("alice", "admin")
BOB = Actor("bob", "admin")
VIEWER = Actor("val", "viewer")


def test_dataset_versions_are_content_addressed(container: Container) -> None:
    rows = [{"text": "b", "n": 1}, {"text": "a", "n": 2.5}]
    v1 = container.datasets.create_version("d", DatasetVersionCreate(rows=rows), ALICE)
    same_keys_reordered = [{"n": 1, "text": "b"}, {"n": 2.5, "text": "a"}]
    with pytest.raises(ConflictError, match="version 1"):
        container.datasets.create_version(
            "d", DatasetVersionCreate(rows=same_keys_reordered), ALICE
        )
    v2 = container.datasets.create_version(
        "d",
        DatasetVersionCreate(rows=rows[:1], parent_version=1, recipe={"steps": ["head"]}),
        ALICE,
    )
    assert (v1.version, v2.version) == (1, 2)
    assert v1.schema_ == {"n": "number", "text": "string"}
    assert v2.parent_id == v1.id and v2.recipe == {"steps": ["head"]}
    assert container.datasets.read_rows(v1) == same_keys_reordered
    assert container.artifacts.exists(v1.artifact)
    assert container.datasets.get_version("d").version == 2
    with pytest.raises(NotFoundError):
        container.datasets.get_version("d", 7)
    with pytest.raises(NotFoundError):
        container.datasets.create_version(
            "d", DatasetVersionCreate(rows=[{"x": 1}], parent_version=9), ALICE
        )


def test_prompt_versions_labels_render_diff(container: Container) -> None:
    svc = container.prompts
    svc.create_version("p", PromptVersionCreate(template="Hi {{ name }}"), ALICE)
    svc.create_version(
        "p", PromptVersionCreate(template="Hello {{ name }}!", params={"t": 0}), ALICE
    )
    svc.set_label("p", "production", 1, ALICE)
    svc.set_label("p", "staging", 2, ALICE)
    assert svc.get("p").labels == {"production": 1, "staging": 2}
    assert svc.render("p", {"name": "Ada"}).text == "Hi Ada"
    assert svc.render("p", {"name": "Ada"}, "staging").text == "Hello Ada!"
    with pytest.raises(InvalidInputError, match="missing template variable"):
        svc.render("p", {})
    with pytest.raises(InvalidInputError, match="sandbox"):
        svc.create_version("evil", PromptVersionCreate(template="{{ x.__class__.__mro__ }}"), ALICE)
        svc.render("evil", {"x": 1}, "latest")
    diff = svc.diff("p", 1, 2)
    assert diff["params_changed"] == {"t": {"from": None, "to": 0}}
    with pytest.raises(NotFoundError):
        svc.set_label("p", "production", 5, ALICE)


def test_runs_metric_series_and_status(container: Container) -> None:
    dv = container.datasets.create_version("d", DatasetVersionCreate(rows=[{"t": 1}]), ALICE)
    run = container.runs.create(
        RunCreate(
            name="r", kind="finetune", params={"lr": 0.1}, inputs=[RunInput(id=dv.id, role="train")]
        ),
        ALICE,
    )
    child = container.runs.create(RunCreate(name="trial", kind="trial", parent_id=run.id), ALICE)
    points = [MetricPoint(key="loss", value=3.0 - s, step=s) for s in range(3)]
    container.runs.log_metrics(run.id, points, ALICE)
    container.runs.log_metrics(run.id, [MetricPoint(key="acc", value=0.5, step=2)], ALICE)
    got = container.runs.get(run.id)
    assert got.latest_metrics == {"loss": 1.0, "acc": 0.5}
    assert got.inputs == [RunInput(id=dv.id, role="train")]
    assert [p["step"] for p in container.runs.metric_series(run.id, "loss")["loss"]] == [0, 1, 2]
    assert [r.id for r in container.runs.list(parent_id=run.id)] == [child.id]
    with pytest.raises(InvalidInputError):
        container.runs.log_metrics(run.id, [MetricPoint(key="x", value=float("nan"))], ALICE)
    container.runs.finish(run.id, "finished", ALICE)
    with pytest.raises(ConflictError):
        container.runs.log_metrics(run.id, points, ALICE)
    with pytest.raises(ConflictError):
        container.runs.finish(run.id, "failed", ALICE)


def test_protected_alias_moves_only_through_approval(container: Container) -> None:
    models, gov = container.models, container.governance
    v1 = models.create_version("m", ModelVersionCreate(base_model="base"), ALICE)
    models.create_version("m", ModelVersionCreate(base_model=v1.id), ALICE)
    models.set_alias("m", "champion", 1, ALICE)
    gov.protect("model_alias", "m", "champion", True, ALICE)
    with pytest.raises(ApprovalRequiredError):
        models.set_alias("m", "champion", 2, ALICE)
    with pytest.raises(PermissionDeniedError):
        gov.protect("model_alias", "m", "champion", False, Actor("ed", "editor"))
    request = gov.request(
        ApprovalCreate(kind="model_alias", name="m", label="champion", version=2), ALICE
    )
    with pytest.raises(PermissionDeniedError, match="someone else"):
        gov.decide(request.id, True, ALICE)
    again = gov.request(  # asked twice while pending: the same request, not a second one
        ApprovalCreate(kind="model_alias", name="m", label="champion", version=2), ALICE
    )
    assert again.id == request.id
    assert gov.decide(request.id, False, BOB, "no").status == "rejected"
    assert models.get("m").aliases == {"champion": 1}
    request = gov.request(  # a decided request does not stand in the way of a new one
        ApprovalCreate(kind="model_alias", name="m", label="champion", version=2), ALICE
    )
    assert request.id != again.id
    assert gov.decide(request.id, True, BOB, "ok").status == "approved"
    assert models.get("m").aliases == {"champion": 2}
    with pytest.raises(ConflictError):
        gov.decide(request.id, True, BOB)
    with pytest.raises(ConflictError, match="already points at version 2"):
        gov.request(
            ApprovalCreate(kind="model_alias", name="m", label="champion", version=2), ALICE
        )
    moves = [e for e in gov.audit(limit=1000) if e.action == "model_alias.move"]
    assert moves[-1].after == {"target_id": models.get_version("m", 2).id, "via_approval": True}


def test_lineage_graph_up_and_down(container: Container) -> None:
    dv = container.datasets.create_version("d", DatasetVersionCreate(rows=[{"t": 1}]), ALICE)
    pv = container.prompts.create_version("p", PromptVersionCreate(template="x"), ALICE)
    run = container.runs.create(
        RunCreate(kind="finetune", inputs=[RunInput(id=dv.id), RunInput(id=pv.id)]), ALICE
    )
    mv = container.models.create_version("m", ModelVersionCreate(run_id=run.id), ALICE)
    up = container.governance.lineage(mv.id, "up")
    assert {n.id for n in up.nodes} == {mv.id, run.id, dv.id, pv.id}
    down = container.governance.lineage(dv.id, "down")
    assert {n.id for n in down.nodes} == {dv.id, run.id, mv.id}
    assert {n.label for n in up.nodes} >= {"d:v1", "p:v1", "m:v1"}
    with pytest.raises(NotFoundError):
        container.governance.lineage("mv_00000000000000000000000000")


def test_owners_are_counted(container: Container) -> None:
    assert (container.models.count(), container.datasets.count(), container.prompts.count()) == (
        0, 0, 0,
    )  # fmt: skip
    for name in ("a", "b"):
        container.prompts.create_version(name, PromptVersionCreate(template="x"), ALICE)
        container.models.create_version(name, ModelVersionCreate(), ALICE)
    container.prompts.create_version("a", PromptVersionCreate(template="y"), ALICE)  # a version
    container.datasets.create_version("d", DatasetVersionCreate(rows=[{"t": 1}]), ALICE)
    assert (container.models.count(), container.datasets.count(), container.prompts.count()) == (
        2, 1, 2,
    )  # fmt: skip


def test_audit_log_is_append_only_and_ordered(container: Container) -> None:
    container.prompts.create_version("p", PromptVersionCreate(template="x"), ALICE)
    container.prompts.set_label("p", "production", 1, BOB)
    entries = container.governance.audit(limit=100)
    ids = [e.id for e in entries]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert [e.actor for e in entries][-1] == "bob"
    assert container.governance.audit(after_id=ids[-1]) == []
    newest = container.governance.audit(limit=2, before_id=0)
    assert [e.id for e in newest] == ids[::-1][:2]
    older = container.governance.audit(limit=100, before_id=newest[-1].id)
    assert [e.id for e in older] == ids[::-1][2:]
    assert [e.actor for e in container.governance.audit(actor_name="bob", before_id=0)] == ["bob"]


def test_viewers_cannot_write(container: Container) -> None:
    with pytest.raises(PermissionDeniedError):
        container.datasets.create_version("d", DatasetVersionCreate(rows=[{"t": 1}]), VIEWER)
    with pytest.raises(NotFoundError):
        container.datasets.get("d")


def test_concurrent_versions_get_unique_numbers(container: Container) -> None:
    container.prompts.create_version("p", PromptVersionCreate(template="seed"), ALICE)
    errors: list[BaseException] = []

    def add(i: int) -> None:
        try:
            container.prompts.create_version("p", PromptVersionCreate(template=f"t{i}"), ALICE)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(12)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert [v.version for v in container.prompts.list_versions("p")] == list(range(1, 14))


def test_api_keys_hash_and_revoke(container: Container) -> None:
    from llmloop.core.governance import ApiKeyCreate
    from llmloop.errors import AuthenticationError

    created = container.keys.create(ApiKeyCreate(name="k", role="editor"), ALICE)
    assert container.keys.authenticate(created.secret).role == "editor"
    with container.store.read() as tx:
        from llmloop.store import tables as t

        row = tx.get(t.api_keys, id=created.id)
    assert row is not None and created.secret not in str(row)
    container.keys.revoke(created.id, ALICE)
    with pytest.raises(AuthenticationError, match="revoked"):
        container.keys.authenticate(created.secret)


def test_outdated_schema_is_refused(container: Container) -> None:
    url = container.settings.database_url
    container.store  # noqa: B018 - create the schema
    with container.store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0000'"))
    with pytest.raises(SchemaOutdatedError, match=r"newer|llmloop db upgrade"):
        Store(url)


def test_upgrade_from_empty_then_current(database_url: str) -> None:
    store = Store(database_url, check=False)
    with pytest.raises(SchemaOutdatedError, match="llmloop db upgrade"):
        db.check_schema(store.engine, auto_create_empty=False)
    db.upgrade(store.engine)
    assert db.current_revision(store.engine) == db.head_revision(store.engine)
    db.check_schema(store.engine, auto_create_empty=False)
    store.dispose()


def test_a_long_alias_or_label_moves_and_is_audited(container: Container) -> None:
    """An alias move is audited as '<model id>:<alias>': past nine characters of alias that
    outgrew the 40 an id column held, and PostgreSQL refused every 'challenger' move."""
    models = container.models
    models.create_version("m", ModelVersionCreate(base_model="base"), ALICE)
    alias = "challenger-" + "x" * 53  # the longest a label may be (64)
    models.set_alias("m", alias, 1, ALICE)
    assert models.get("m").aliases == {alias: 1}
    moves = [e for e in container.governance.audit(limit=100) if e.action == "model_alias.move"]
    assert moves and moves[0].entity_id.endswith(f":{alias}")


def test_an_entitys_audit_includes_its_alias_and_label_moves(container: Container) -> None:
    """Asking for a model's (or prompt's) audit history lists its alias (label) moves, audited
    as '<id>:<name>', and nothing of another entity whose id merely shares a prefix or holds
    LIKE wildcards."""
    models, gov = container.models, container.governance
    models.create_version("m", ModelVersionCreate(base_model="base"), ALICE)
    models.create_version("m2", ModelVersionCreate(base_model="base"), ALICE)
    models.set_alias("m", "champion", 1, ALICE)
    models.set_alias("m2", "champion", 1, ALICE)
    model_id = models.get("m").id
    actions = [e.action for e in gov.audit(entity_id=model_id)]
    assert "model.create" in actions and actions.count("model_alias.move") == 1
    assert [e.action for e in gov.audit(entity_id=f"{model_id}:champion")] == ["model_alias.move"]
    assert gov.audit(entity_id=model_id[:-1]) == []  # a prefix is not the entity
    assert gov.audit(entity_id=model_id[:3] + "%") == []  # nor a LIKE pattern
    prompt = container.prompts.create_version("p", PromptVersionCreate(template="x"), ALICE)
    container.prompts.set_label("p", "production", 1, BOB)
    prompt_id = container.prompts.get("p").id
    assert "prompt_label.move" in [e.action for e in gov.audit(entity_id=prompt_id)]
    assert prompt.version == 1


def test_lineage_of_an_unknown_trace_or_deployment_is_404(container: Container) -> None:
    """Traces and deployments have no registry table of their own: an id nothing knows is a
    404, not a graph of one node; a trace an edge names stays reachable without its row (a
    sampled-out trace a dataset was curated from)."""
    from llmloop.store import tables as t
    from llmloop.store.registry import utcnow

    gov = container.governance
    for unknown in ("tr_01M8XF3PQDS7HKWX9H3ANCWR60", "dep_01M8XF3PQDS7HKWX9H3ANCWR60"):
        with pytest.raises(NotFoundError):
            gov.lineage(unknown)
    dv = container.datasets.create_version("curated", DatasetVersionCreate(rows=[{"a": 1}]), ALICE)
    trace_id = "tr_01M8XF3PQDS7HKWX9H3ANCWR61"
    with container.store.transaction() as tx:
        edge = {"source_id": trace_id, "target_id": dv.id, "relation": "curated_from"}
        tx.insert(t.lineage_edges, {**edge, "created_at": utcnow()})
    graph = gov.lineage(trace_id, direction="down")
    assert [e.target for e in graph.edges] == [dv.id]


def test_two_writers_creating_one_owner_both_succeed(container: Container) -> None:
    """Two transactions that both find no dataset 'race' and create it (two pipelines ingesting
    into a new dataset at once): the second uses the first's row instead of failing with a
    unique-key conflict, and the dataset has two versions."""
    from llmloop.services.owners import get_or_create_owner
    from llmloop.store import tables as t

    store = container.store
    first_inserted, first_may_commit = threading.Event(), threading.Event()
    ids: dict[str, str] = {}
    errors: list[BaseException] = []

    def first() -> None:
        try:
            with store.transaction() as tx:
                ids["first"] = get_or_create_owner(tx, t.datasets, "dataset", "race", ALICE, True)[
                    "id"
                ]
                first_inserted.set()
                first_may_commit.wait(10)
        except BaseException as exc:  # handed to the test below
            errors.append(exc)
            first_inserted.set()

    racy = store.engine.dialect.name == "postgresql"  # SQLite writers queue at BEGIN instead

    def second() -> None:
        if not racy:
            first_may_commit.set()
        try:
            with store.transaction() as tx:
                if racy:  # the first commits once we have read nothing: our insert then fails
                    plain_get = tx.get

                    def get(*args: Any, **kwargs: Any) -> Any:
                        found = plain_get(*args, **kwargs)
                        if found is None:
                            threading.Timer(0.3, first_may_commit.set).start()
                        return found

                    tx.get = get  # type: ignore[method-assign]
                ids["second"] = get_or_create_owner(tx, t.datasets, "dataset", "race", BOB, True)[
                    "id"
                ]
        except BaseException as exc:
            errors.append(exc)

    a = threading.Thread(target=first)
    a.start()
    assert first_inserted.wait(10)
    b = threading.Thread(target=second)
    b.start()
    a.join(20)
    b.join(20)
    assert errors == [] and ids["first"] == ids["second"]
    container.datasets.create_version("race", DatasetVersionCreate(rows=[{"a": 1}]), ALICE)
    assert container.datasets.get("race").id == ids["first"]
