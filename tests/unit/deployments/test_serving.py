"""Which deployments serve a model version now (``services/serving``): computed from the stored
specs and the aliases as they are, so an alias move, a new ``latest`` or an alias set later moves
the answer; canary shares, fallbacks, the shadow and pinned versions each say their role and
reference; an alias that names nothing, an unknown model and inline engines are left out without
breaking the listing. The same answer shows in lineage (a deployment node downstream of the
version, the versions upstream of a deployment) and in the model card."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmloop.config import load_settings
from llmloop.core.deployments import DeploymentSpec, ServingRoute
from llmloop.core.models import ModelVersionCreate
from llmloop.core.runs import RunCreate
from llmloop.errors import NotFoundError
from llmloop.services.actors import local_actor
from llmloop.services.container import Container
from llmloop.services.model_cards import NOT_SERVED, build_card, render_markdown

ME = local_actor("ops")
ECHO = {"engine": {"kind": "echo", "model": "echo"}}


@pytest.fixture
def c(tmp_path: Path) -> Iterator[Container]:
    container = Container(load_settings({"home": str(tmp_path)}, env={}))
    yield container
    container.close()


def versions(c: Container, n: int = 3, model: str = "bot") -> list[str]:
    """Echo versions 1..n of ``model`` with champion -> 1; their ids."""
    spec = ModelVersionCreate(format="echo")
    ids = [c.models.create_version(model, spec, ME).id for _ in range(n)]
    c.models.set_alias(model, "champion", 1, ME)
    return ids


def deploy(c: Container, name: str, **spec: Any) -> str:
    return c.deployments.apply(DeploymentSpec.model_validate({"name": name, **spec}), ME).id


def summaries(c: Container, version_id: str) -> list[str]:
    return [r.summary for r in c.deployments.served_by(version_id)]


def test_the_listing_follows_an_alias_move(c: Container) -> None:
    v1, v2, _ = versions(c)
    dep_id = deploy(c, "chat", targets=[{"model": "bot", "alias": "champion"}])
    [route] = c.deployments.served_by(v1)
    assert route == ServingRoute(
        deployment="chat", deployment_id=dep_id, role="primary", position=0,
        target="bot@champion", ref="champion", pinned=False, weight=1.0, share=1.0,
        model="bot", version=1, version_id=v1,
    )  # fmt: skip
    assert route.summary == "chat: primary via champion"
    assert route.relation == "serves via champion"
    assert c.deployments.served_by(v2) == []
    c.models.set_alias("bot", "champion", 2, ME)
    assert c.deployments.served_by(v1) == []
    assert summaries(c, v2) == ["chat: primary via champion"]


def test_canary_weights_give_each_primary_its_share(c: Container) -> None:
    v1, v2, v3 = versions(c)
    c.models.set_alias("bot", "candidate", 2, ME)
    targets = [
        {"model": "bot", "alias": "champion", "weight": 9},
        {"model": "bot", "alias": "candidate", "weight": 1, "name": "canary"},
        {"model": "bot", "version": 3, "weight": 0},
    ]
    deploy(c, "chat", targets=targets)
    [champion] = c.deployments.served_by(v1)
    [candidate] = c.deployments.served_by(v2)
    [drained] = c.deployments.served_by(v3)
    assert (champion.weight, champion.share, champion.role_text) == (9, 0.9, "primary 90%")
    assert (candidate.position, candidate.target, candidate.share) == (1, "canary", 0.1)
    assert candidate.relation == "serves 10% via candidate"
    assert drained.share == 0 and drained.role_text == "primary (drained)"
    assert drained.relation == "drained via pinned v3"


def test_fallbacks_and_the_shadow_are_listed_with_their_role(c: Container) -> None:
    v1, v2, v3 = versions(c)
    deploy(
        c,
        "chat",
        targets=[{"model": "bot", "alias": "champion"}],
        fallbacks=[ECHO, {"model": "bot", "version": 2}],
        shadow={"model": "bot", "alias": "latest"},
    )
    [fallback] = c.deployments.served_by(v2)
    assert (fallback.role, fallback.position, fallback.pinned) == ("fallback", 1, True)
    assert (fallback.weight, fallback.share) == (None, None)
    assert fallback.summary == "chat: fallback 2 via pinned v2"
    assert fallback.relation == "fallback via pinned v2"
    assert summaries(c, v3) == ["chat: shadow via latest"]
    # A new version is what 'latest' names now: the shadow moves to it.
    v4 = c.models.create_version("bot", ModelVersionCreate(format="echo"), ME).id
    assert c.deployments.served_by(v3) == [] and summaries(c, v4) == ["chat: shadow via latest"]
    assert summaries(c, v1) == ["chat: primary via champion"]


def test_one_version_served_several_ways_by_several_deployments(c: Container) -> None:
    v1, _, _ = versions(c)
    deploy(c, "b-chat", targets=[{"model": "bot", "alias": "champion"}],
           fallbacks=[{"model": "bot", "alias": "1"}])  # fmt: skip
    deploy(c, "a-support", targets=[{"model": "bot", "version": 1}])
    assert summaries(c, v1) == [
        "a-support: primary via pinned v1",
        "b-chat: primary via champion",
        "b-chat: fallback 1 via pinned v1",  # an alias written as a number pins it too
    ]


def test_an_alias_or_model_that_names_nothing_now_does_not_break_the_listing(
    c: Container,
) -> None:
    v1, v2, _ = versions(c)
    deploy(
        c,
        "chat",
        targets=[{"model": "bot", "alias": "nobody", "weight": 1},
                 {"model": "ghost", "alias": "champion", "weight": 1},
                 {"model": "bot", "version": 99, "weight": 1},
                 {"model": "bot", "alias": "champion", "weight": 1}],
    )  # fmt: skip
    assert summaries(c, v1) == ["chat: primary 25% via champion"]
    assert c.deployments.served_by(v2) == []
    c.models.set_alias("bot", "nobody", 2, ME)  # the alias is set later: it serves from now on
    assert summaries(c, v2) == ["chat: primary 25% via nobody"]


def test_inline_engines_and_other_models_are_skipped(c: Container) -> None:
    v1, _, _ = versions(c)
    other = versions(c, 1, model="other")[0]
    deploy(c, "echoes", targets=[ECHO], shadow=ECHO)
    deploy(c, "mixed", targets=[{**ECHO, "weight": 1}, {"model": "other", "version": 1}])
    assert c.deployments.served_by(v1) == []
    assert summaries(c, other) == ["mixed: primary 50% via pinned v1"]
    assert [r.version_id for r in c.deployments.serving_model("other")] == [other]
    assert c.deployments.serving_model("bot") == []


def test_a_deleted_deployment_serves_nothing(c: Container) -> None:
    v1, _, _ = versions(c)
    deploy(c, "chat", targets=[{"model": "bot", "alias": "champion"}])
    c.deployments.delete("chat", ME)
    assert c.deployments.served_by(v1) == []


def test_an_unknown_version_id_is_not_found(c: Container) -> None:
    with pytest.raises(NotFoundError, match="no model version"):
        c.deployments.served_by("mv_01M8XF3PQDS7HKWX9H3ANCWR60")


def test_lineage_leads_from_a_version_to_the_deployments_serving_it_now(c: Container) -> None:
    run = c.runs.create(RunCreate(name="sft/bot", kind="finetune"), ME)
    v1 = c.models.create_version("bot", ModelVersionCreate(format="echo", run_id=run.id), ME).id
    v2 = c.models.create_version("bot", ModelVersionCreate(format="echo"), ME).id
    c.models.set_alias("bot", "champion", 1, ME)
    dep_id = deploy(c, "chat", targets=[{"model": "bot", "alias": "champion"}],
                    shadow={"model": "bot", "version": 2})  # fmt: skip
    graph = c.governance.lineage(v1, "down")
    assert [(e.source, e.target, e.relation) for e in graph.edges] == [
        (v1, dep_id, "serves via champion")
    ]
    assert {(n.id, n.type, n.label) for n in graph.nodes} >= {(dep_id, "deployment", "chat")}
    # From the run, downstream reaches the deployment through the version.
    assert dep_id in {n.id for n in c.governance.lineage(run.id, "down").nodes}
    # From the deployment, upstream: the versions it serves now and where they came from.
    up = c.governance.lineage(dep_id, "up")
    assert {(e.source, e.relation) for e in up.edges} == {
        (v1, "serves via champion"), (v2, "shadow via pinned v2"), (run.id, "produced")
    }  # fmt: skip
    one_hop = {n.id for n in c.governance.lineage(dep_id, "up", depth=1).nodes}
    assert one_hop == {dep_id, v1, v2}  # the depth is honoured: the run is two hops up
    c.models.set_alias("bot", "champion", 2, ME)
    assert c.governance.lineage(v1, "down").edges == []
    assert {e.relation for e in c.governance.lineage(v2, "down").edges} == {
        "serves via champion", "shadow via pinned v2"
    }  # fmt: skip


def test_lineage_of_a_deployment_serving_nothing_is_one_node(c: Container) -> None:
    dep_id = deploy(c, "echoes", targets=[ECHO])
    graph = c.governance.lineage(dep_id)
    assert graph.edges == [] and [(n.type, n.label) for n in graph.nodes] == [
        ("deployment", "echoes")
    ]


def test_the_model_card_lists_the_deployments(c: Container) -> None:
    versions(c)
    deploy(c, "chat", targets=[{"model": "bot", "alias": "champion", "name": "a | <b>"}])
    card = build_card(c, "bot", "champion")
    assert [r.deployment for r in card.deployments] == ["chat"]
    text = render_markdown(card)
    assert "## Deployments\n\n| deployment | role | via | target |\n" in text
    assert "| chat | primary | champion | a \\| &lt;b&gt; |" in text
    bare = render_markdown(build_card(c, "bot", 2))
    assert bare.endswith(f"## Deployments\n\n{NOT_SERVED}\n")
