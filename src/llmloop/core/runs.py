"""Runs: a unit of tracked work (fine-tune, hpo, eval, pipeline,
...) with params and metric series."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from llmloop.core.base import ArtifactRef, JsonDict, Timestamped, Value

RunKind = Literal[
    "finetune", "dpo", "hpo", "trial", "eval", "pipeline", "step", "data", "pretrain", "other"
]
RunStatus = Literal["running", "finished", "failed", "killed"]
TERMINAL_STATUSES = frozenset({"finished", "failed", "killed"})


class RunInput(Value):
    """An upstream entity the run consumed, by id (dataset, prompt or model version)."""

    id: str
    role: str = Field(default="input", max_length=64)


class RunCreate(Value):
    name: str = Field(default="", max_length=256)
    kind: RunKind = "other"
    params: JsonDict = Field(default_factory=dict)
    parent_id: str | None = None
    inputs: list[RunInput] = Field(default_factory=list)
    tags: dict[str, str] = Field(default_factory=dict)


class MetricPoint(Value):
    key: str = Field(min_length=1, max_length=250)
    value: float
    step: int = Field(default=0, ge=0, le=2**62)
    timestamp: datetime | None = None


class MetricLog(Value):
    points: list[MetricPoint] = Field(min_length=1, max_length=100_000)


class RunArtifact(Value):
    name: str
    artifact: ArtifactRef


class RunPublic(Timestamped):
    id: str
    name: str
    kind: str
    status: str
    params: JsonDict
    parent_id: str | None
    inputs: list[RunInput]
    tags: dict[str, str]
    ended_at: datetime | None = None
    latest_metrics: dict[str, float] = Field(default_factory=dict)
    artifacts: list[RunArtifact] = Field(default_factory=list)
    created_by: str = ""


class RunFinish(Value):
    status: Literal["finished", "failed", "killed"] = "finished"
