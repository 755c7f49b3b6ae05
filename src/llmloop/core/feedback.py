"""Feedback and annotation values: what a person says about a trace, and the queues that ask them.

Feedback is thumbs up/down (1/0), a score on a named scale, a comment, a corrected answer, a
preference between the trace's answer ("a") and an alternative ("b"), or a label from an
annotation queue. A queue is a filter over traces (or a dataset version's rows) plus a label
schema that every submitted label is validated against. Storing and assigning is the services'
job; this module only holds the values and their rules.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field, model_validator

from llmloop.core.base import JsonDict, Name, Timestamped, Value

FeedbackKind = Literal["thumbs", "score", "comment", "correction", "preference", "label"]
ItemStatus = Literal["pending", "assigned", "labelled", "skipped"]
ITEM_STATUSES: tuple[ItemStatus, ...] = ("pending", "assigned", "labelled", "skipped")


class FeedbackCreate(Value):
    """One piece of feedback on a trace; which fields are needed depends on ``kind``."""

    kind: FeedbackKind
    name: str = Field(default="", max_length=64, description="Scale or label name.")
    value: float | None = Field(default=None, description="Thumbs 1/0, or the score.")
    scale_min: float | None = Field(default=None, description="Lowest score of the scale.")
    scale_max: float | None = Field(default=None, description="Highest score of the scale.")
    comment: str = Field(default="", max_length=20_000)
    correction: str | None = Field(default=None, max_length=100_000, description="Right answer.")
    alternative: str | None = Field(default=None, max_length=100_000, description="Answer 'b'.")
    preferred: Literal["a", "b"] | None = Field(
        default=None, description="'a' = the trace's answer, 'b' = the alternative."
    )
    user: str | None = Field(default=None, max_length=256, description="Who gave it.")

    @model_validator(mode="after")
    def _check_kind(self) -> FeedbackCreate:
        if self.kind == "thumbs" and self.value not in (0.0, 1.0):
            raise ValueError("thumbs feedback needs value 1 (up) or 0 (down)")
        if self.kind == "score":
            if self.value is None or self.scale_min is None or self.scale_max is None:
                raise ValueError("a score needs value, scale_min and scale_max")
            if not self.scale_min < self.scale_max:
                raise ValueError("scale_min must be below scale_max")
            if not self.scale_min <= self.value <= self.scale_max:
                raise ValueError(f"score {self.value} is outside {self.scale_min}-{self.scale_max}")
            if not self.name:
                raise ValueError("a score needs the name of its scale (e.g. helpfulness)")
        if self.kind == "comment" and not self.comment.strip():
            raise ValueError("a comment cannot be empty")
        if self.kind == "correction" and not (self.correction or "").strip():
            raise ValueError("a correction needs the corrected answer")
        if self.kind == "preference" and (self.preferred is None or not self.alternative):
            raise ValueError("a preference needs preferred ('a' or 'b') and the alternative")
        return self

    def normalized(self) -> float | None:
        """The value on 0..1 (thumbs and scores), used for mean feedback scores."""
        return normalize(self.value, self.scale_min, self.scale_max)


def normalize(value: float | None, lo: float | None, hi: float | None) -> float | None:
    if value is None:
        return None
    if lo is not None and hi is not None and hi > lo:
        return (value - lo) / (hi - lo)
    return value


class FeedbackPublic(Timestamped):
    id: str
    trace_id: str
    kind: str
    name: str
    value: float | None
    scale_min: float | None = None
    scale_max: float | None = None
    comment: str
    correction: str | None
    alternative: str | None
    preferred: str | None
    user: str | None
    created_by: str


class LabelSchema(Value):
    """What a label must look like: one of ``choices``, or a number in ``[min, max]``."""

    kind: Literal["categorical", "numeric"]
    name: str = Field(default="label", max_length=64, description="Feedback name of labels.")
    choices: list[str] = Field(default_factory=list, max_length=100)
    min: float | None = None
    max: float | None = None
    free_text: bool = Field(default=True, description="Whether a free-text note is allowed.")

    @model_validator(mode="after")
    def _check(self) -> LabelSchema:
        if self.kind == "categorical" and len(set(self.choices)) < 2:
            raise ValueError("a categorical schema needs at least two distinct choices")
        if self.kind == "numeric" and (
            self.min is None or self.max is None or self.min >= self.max
        ):
            raise ValueError("a numeric schema needs min < max")
        return self


class LabelSubmit(Value):
    value: str | float = Field(description="A choice, or a number in range.")
    text: str = Field(default="", max_length=20_000, description="Free-text note.")


class QueueFilter(Value):
    """Which items a queue holds: traces matching all set fields, or a dataset version's rows."""

    deployment: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    status: str | None = Field(default=None, description="Trace status (ok, error, ...).")
    min_feedback: float | None = Field(default=None, description="Mean normalized feedback ≥.")
    max_feedback: float | None = Field(default=None, description="Mean normalized feedback ≤.")
    flagged: bool | None = Field(default=None, description="Only traces a guard flagged/blocked.")
    dataset: str | None = Field(default=None, description="Dataset name (source 'dataset').")
    version: int | None = Field(
        default=None, ge=1, le=2_147_483_647, description="Dataset version; latest if unset."
    )
    limit: int = Field(default=1000, ge=1, le=100_000)


class QueueCreate(Value):
    name: Name
    source: Literal["traces", "dataset"] = "traces"
    filter: QueueFilter = Field(default_factory=QueueFilter)
    label_schema: LabelSchema
    ordering: Literal["created", "uncertainty"] = Field(
        default="created", description="'uncertainty' serves the least certain items first."
    )

    @model_validator(mode="after")
    def _check(self) -> QueueCreate:
        if self.source == "dataset" and not self.filter.dataset:
            raise ValueError("a dataset queue needs filter.dataset")
        return self


class QueueCounts(Value):
    pending: int = 0
    assigned: int = 0
    labelled: int = 0
    skipped: int = 0


class QueuePublic(Timestamped):
    id: str
    name: str
    source: str
    filter: QueueFilter
    label_schema: LabelSchema
    ordering: str
    counts: QueueCounts
    created_by: str


class ItemPublic(Value):
    id: int
    queue_id: str
    item_ref: str = Field(description="Trace id, or 'dsv_…#row' for a dataset row.")
    status: str
    assignee: str | None
    label: JsonDict | None
    priority: float
    updated_at: datetime
    content: JsonDict = Field(default_factory=dict, description="The trace or row to label.")


class CurateCreate(Value):
    """Traces → a new dataset version of SFT rows or DPO pairs, scrubbed of personal data."""

    dataset: Name = Field(description="Dataset to write the new version to.")
    format: Literal["sft", "dpo"]
    filter: QueueFilter = Field(default_factory=QueueFilter)
    sft_style: Literal["messages", "prompt_response"] = "messages"
    corrected_only: bool = Field(
        default=False, description="Only traces with a correction (always so for SFT)."
    )
    pii: Literal["redact", "pseudonymise", "none"] = Field(
        default="redact", description="How personal data in prompts and answers is scrubbed."
    )
    pii_key: str | None = Field(default=None, description="Secret key for pseudonymise.")
    description: str = Field(default="", max_length=10_000)

    @model_validator(mode="after")
    def _check(self) -> CurateCreate:
        if self.pii == "pseudonymise" and not self.pii_key:
            raise ValueError("pii 'pseudonymise' needs pii_key")
        return self


class CurateResult(Value):
    dataset: str
    version: int
    version_id: str
    rows: int
    traces: int = Field(description="How many traces the rows came from (lineage sources).")
    pii_found: int = Field(description="Personal-data spans scrubbed.")
