"""Curation: corrected traces → SFT rows, preferences and thumbs-down + correction → DPO pairs,
personal data scrubbed (redacted or pseudonymised), lineage edges from the traces."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError
from tests.unit.loop.loop_data import NOW, add_traces

from llmloop.core.feedback import CurateCreate, FeedbackCreate, QueueFilter
from llmloop.errors import InvalidInputError
from llmloop.services.actors import local_actor
from llmloop.services.container import Container

ME = local_actor("curator")
EMAIL = "jane.doe@example.com"
SEC = timedelta(seconds=1)


def _setup(c: Container) -> tuple[str, str, str, str]:
    corrected, preferred, plain, downed = add_traces(
        c,
        [
            {"request_text": f"user: my mail is {EMAIL}, reset it", "response_text": "Done."},
            {"request_text": "user: capital of France?", "response_text": "Lyon", "at": NOW + SEC},
            {"request_text": "user: hi", "response_text": "hello", "at": NOW + 2 * SEC},
            {"request_text": "user: 2+2?", "response_text": "5", "at": NOW + 3 * SEC},
        ],
    )
    fb = c.feedback
    fb.add(corrected, FeedbackCreate(kind="correction", correction=f"Reset sent to {EMAIL}."), ME)
    fb.add(preferred, FeedbackCreate(kind="preference", preferred="b", alternative="Paris"), ME)
    fb.add(downed, FeedbackCreate(kind="thumbs", value=0), ME)
    fb.add(downed, FeedbackCreate(kind="correction", correction="4"), ME)
    return corrected, preferred, plain, downed


def test_sft_rows_scrubbed_with_lineage(container: Container) -> None:
    corrected, _, _, downed = _setup(container)
    result = container.curation.curate(CurateCreate(dataset="sft-set", format="sft"), ME)
    assert (result.rows, result.traces, result.pii_found) == (2, 2, 2)
    version = container.datasets.get_version("sft-set")
    rows = container.datasets.read_rows(version)
    assert rows[0]["messages"] == [
        {"role": "user", "content": "my mail is [EMAIL], reset it"},
        {"role": "assistant", "content": "Reset sent to [EMAIL]."},
    ]
    assert version.shape == "chat" and EMAIL not in str(rows)
    graph = container.governance.lineage(version.id, direction="up")
    sources = {e.source for e in graph.edges if e.relation == "source"}
    assert sources == {corrected, downed}


def test_dpo_pairs_and_pseudonyms(container: Container) -> None:
    _setup(container)
    spec = CurateCreate(dataset="dpo-set", format="dpo", pii="pseudonymise", pii_key="k")
    result = container.curation.curate(spec, ME)
    rows = container.datasets.read_rows(container.datasets.get_version("dpo-set"))
    assert result.traces == 2 and sorted(rows, key=lambda r: r["prompt"]) == [
        {"prompt": "2+2?", "chosen": "4", "rejected": "5"},
        {"prompt": "capital of France?", "chosen": "Paris", "rejected": "Lyon"},
    ]
    prompt_rows = container.curation.preview(
        CurateCreate(
            dataset="x", format="sft", sft_style="prompt_response", pii="pseudonymise", pii_key="k"
        )
    )
    assert prompt_rows[0]["prompt"].startswith("my mail is <EMAIL_")
    assert EMAIL not in str(prompt_rows)


def test_dpo_leaves_out_answers_without_text(container: Container) -> None:
    [called] = add_traces(container, [{"request_text": "user: weather?", "response_text": ""}])
    container.feedback.add(called, FeedbackCreate(kind="thumbs", value=0), ME)
    container.feedback.add(called, FeedbackCreate(kind="correction", correction="Sunny."), ME)
    rows = container.curation.preview(CurateCreate(dataset="x", format="dpo"))
    assert rows == []
    sft = container.curation.preview(CurateCreate(dataset="x", format="sft"))
    assert sft[0]["messages"][-1] == {"role": "assistant", "content": "Sunny."}


def test_nothing_to_curate_and_bad_specs(container: Container) -> None:
    _setup(container)
    with pytest.raises(InvalidInputError):
        container.curation.curate(
            CurateCreate(dataset="none", format="sft", filter=QueueFilter(deployment="nope")), ME
        )
    with pytest.raises(ValidationError):
        CurateCreate(dataset="x", format="dpo", pii="pseudonymise")
