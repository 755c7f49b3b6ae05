"""Models and immutable model versions: base reference, weights/adapter, tokenizer;
aliases and stages."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from llmloop.core.base import ArtifactRef, JsonDict, Label, Name, Timestamped, Value

Stage = Literal["none", "staging", "production", "archived"]
ModelFormat = Literal["hf", "peft-lora", "gguf", "openai", "echo", "other"]


class ModelCreate(Value):
    name: Name
    description: str = Field(default="", max_length=10_000)


class ModelPublic(Timestamped):
    id: str
    name: str
    description: str
    aliases: dict[str, int] = Field(default_factory=dict, description="alias -> version number")
    latest_version: int | None = None


class ModelVersionCreate(Value):
    base_model: str = Field(
        default="",
        max_length=1024,
        description="Base model reference: a model version id, a hub id or a local path.",
    )
    format: ModelFormat = "hf"
    artifact: ArtifactRef | None = Field(default=None, description="Weights or adapter.")
    tokenizer: str = Field(default="", max_length=1024)
    metrics: dict[str, float] = Field(default_factory=dict)
    params: JsonDict = Field(default_factory=dict, description="Hyperparameters and settings.")
    run_id: str | None = Field(default=None, description="The run that produced it.")
    inputs: list[str] = Field(
        default_factory=list, description="Upstream ids (dataset, prompt, model versions)."
    )
    description: str = Field(default="", max_length=10_000)


class ModelVersionPublic(Timestamped):
    id: str
    model_id: str
    model_name: str
    version: int
    base_model: str
    format: str
    artifact: ArtifactRef | None
    tokenizer: str
    metrics: dict[str, float]
    params: JsonDict
    run_id: str | None
    stage: str
    status: str
    description: str = ""
    created_by: str = ""


class AliasMove(Value):
    alias: Label
    version: int = Field(ge=1, le=2_147_483_647)


class StageMove(Value):
    stage: Stage
