"""Prompt templates: immutable versions with declared variables and model parameters;
labels move."""

from __future__ import annotations

from pydantic import Field

from llmloop.core.base import JsonDict, Label, Name, Timestamped, Value


class PromptCreate(Value):
    name: Name
    description: str = Field(default="", max_length=10_000)


class PromptPublic(Timestamped):
    id: str
    name: str
    description: str
    labels: dict[str, int] = Field(default_factory=dict, description="label -> version number")
    latest_version: int | None = None


class PromptVersionCreate(Value):
    template: str = Field(
        min_length=1, max_length=200_000, description="Jinja2 template (sandboxed)."
    )
    variables: list[str] | None = Field(
        default=None, description="Declared variables; inferred from the template when unset."
    )
    params: JsonDict = Field(
        default_factory=dict, description="Model parameters (temperature, max_tokens, ...)."
    )
    message: str = Field(default="", max_length=10_000, description="What changed.")


class PromptVersionPublic(Timestamped):
    id: str
    prompt_id: str
    prompt_name: str
    version: int
    template: str
    variables: list[str]
    params: JsonDict
    message: str = ""
    created_by: str = ""


class PromptRender(Value):
    variables: JsonDict = Field(default_factory=dict)


class PromptRendered(Value):
    prompt_name: str
    version: int
    text: str
    params: JsonDict


class LabelMove(Value):
    label: Label
    version: int = Field(ge=1, le=2_147_483_647)
