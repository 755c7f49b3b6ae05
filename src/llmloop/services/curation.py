"""Curation: traces → a new dataset version, closing the loop from production back to training.

Traces are selected with the shared trace filter plus what their feedback demands: SFT rows need
a correction (the corrected answer is the target); DPO pairs come from preferences (the preferred
of the trace's answer and the alternative is ``chosen``) and from corrected answers of traces
that got a thumbs down (correction ``chosen``, the original ``rejected``). Prompts and answers
are scrubbed with :mod:`llmloop.guards.pii` (redact or keyed pseudonyms) before anything is
written. The version is registered through DatasetService with lineage edges from every trace
used. A trace gives each record once (feedback sent twice is one opinion); across traces it
does not train or deduplicate (the data stage does).
"""

from __future__ import annotations

import json
from typing import Any

from llmloop.core.feedback import CurateCreate, CurateResult
from llmloop.errors import InvalidInputError
from llmloop.guards.pii import PiiDetector, apply_pii_policy
from llmloop.services.actors import Actor
from llmloop.services.datasets import DatasetService, canonical_jsonl, infer_schema, infer_shape
from llmloop.services.drift import last_user_turn
from llmloop.services.trace_selection import select_traces
from llmloop.store import tables as t
from llmloop.store.registry import Row, Store


class Scrubber:
    """Applies one PII policy to every text and counts what it replaced."""

    def __init__(self, mode: str, key: str | None) -> None:
        self.mode, self.key = mode, key
        self.detector = PiiDetector()
        self.found = 0

    def __call__(self, text: str) -> str:
        if self.mode == "none" or not text:
            return text
        spans = self.detector.find(text)
        self.found += len(spans)
        return apply_pii_policy(text, spans, self.mode, key=self.key)  # type: ignore[arg-type]


class CurationService:
    def __init__(self, store: Store, datasets: DatasetService) -> None:
        self.store = store
        self.datasets = datasets

    def _feedback(self, trace_ids: list[str]) -> dict[str, list[Row]]:
        by_trace: dict[str, list[Row]] = {tid: [] for tid in trace_ids}
        with self.store.read() as tx:
            for start in range(0, len(trace_ids), 500):
                for row in tx.select_in(t.feedback, "trace_id", trace_ids[start : start + 500]):
                    by_trace[row["trace_id"]].append(row)
        for rows in by_trace.values():
            rows.sort(key=lambda r: r["created_at"])
        return by_trace

    def rows(self, spec: CurateCreate, scrub: Scrubber) -> tuple[list[dict[str, Any]], list[str]]:
        """The records and the ids of the traces they came from."""
        need = ["correction"] if spec.format == "sft" or spec.corrected_only else []
        with self.store.read() as tx:
            traces = select_traces(tx, spec.filter, require=need)
        feedback = self._feedback([r["id"] for r in traces])
        records: list[dict[str, Any]] = []
        used: list[str] = []
        for trace in traces:
            made = (_sft if spec.format == "sft" else _dpo)(trace, feedback[trace["id"]], spec)
            made = _distinct(made)  # the same preference given twice is one opinion, one pair
            if made:
                used.append(trace["id"])
                records.extend({k: _scrub_value(v, scrub) for k, v in r.items()} for r in made)
        return records, used

    def curate(self, spec: CurateCreate, actor: Actor) -> CurateResult:
        actor.require("editor")
        scrub = Scrubber(spec.pii, spec.pii_key)
        records, used = self.rows(spec, scrub)
        if not records:
            why = ("they need a correction" if spec.format == "sft"
                   else "they need a preference, or a thumbs down and a correction")  # fmt: skip
            raise InvalidInputError(f"no traces match for {spec.format.upper()} rows: {why}")
        ref = self.datasets.artifacts.put(canonical_jsonl(records), name=f"{spec.dataset}.jsonl")
        recipe = {"curated_from": "traces", "format": spec.format, "pii": spec.pii,
                  "filter": spec.filter.model_dump(mode="json"), "traces": len(used)}  # fmt: skip
        version = self.datasets.register_version(
            spec.dataset, ref, row_count=len(records), shape=infer_shape(records),
            schema=infer_schema(records), actor=actor, recipe=recipe,
            description=spec.description or f"{spec.format} rows curated from {len(used)} traces",
            sources=used,
        )  # fmt: skip
        return CurateResult(dataset=spec.dataset, version=version.version, version_id=version.id,
                            rows=len(records), traces=len(used), pii_found=scrub.found)  # fmt: skip

    def preview(self, spec: CurateCreate) -> list[dict[str, Any]]:
        """The scrubbed records ``curate`` would write, without writing them."""
        return self.rows(spec, Scrubber(spec.pii, spec.pii_key))[0]


def _distinct(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    out = []
    for record in records:
        key = json.dumps(record, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(record)
    return out


def _scrub_value(value: Any, scrub: Scrubber) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, list):
        return [_scrub_value(v, scrub) for v in value]
    if isinstance(value, dict):
        return {k: (v if k == "role" else _scrub_value(v, scrub)) for k, v in value.items()}
    return value


def _sft(trace: Row, feedback: list[Row], spec: CurateCreate) -> list[dict[str, Any]]:
    corrections = [f["correction"] for f in feedback if f["kind"] == "correction"]
    if not corrections:
        return []
    prompt, answer = last_user_turn(trace["request_text"]), corrections[-1]
    if spec.sft_style == "prompt_response":
        return [{"prompt": prompt, "response": answer}]
    return [{"messages": [{"role": "user", "content": prompt},
                          {"role": "assistant", "content": answer}]}]  # fmt: skip


def _dpo(trace: Row, feedback: list[Row], spec: CurateCreate) -> list[dict[str, Any]]:
    prompt, original = last_user_turn(trace["request_text"]), trace["response_text"]
    pairs: list[dict[str, Any]] = []
    for f in feedback:
        if f["kind"] == "preference" and f["alternative"]:
            a_wins = f["preferred"] == "a"
            chosen, rejected = (
                (original, f["alternative"]) if a_wins else (f["alternative"], original)
            )
            pairs.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    thumbs_down = any(f["kind"] == "thumbs" and f["value"] == 0 for f in feedback)
    corrections = [f["correction"] for f in feedback if f["kind"] == "correction"]
    if thumbs_down and corrections and corrections[-1] != original:
        pairs.append({"prompt": prompt, "chosen": corrections[-1], "rejected": original})
    # An empty side (the answer was tool calls, not text) teaches nothing: leave the pair out.
    return [p for p in pairs if p["chosen"] and p["rejected"] and p["chosen"] != p["rejected"]]
