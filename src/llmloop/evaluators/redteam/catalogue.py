"""The red-team probe catalogue: versioned probes, each tied to an OWASP LLM Top 10 2025 id.

A catalogue is a YAML file (the built-in one is ``resources/safety/redteam_probes.yaml``) of
probes: the attack prompt, optional retrieved context (indirect injection), an optional payload
transformed by an encoding trick, and the detector that grades the response. This module loads,
validates and renders probes into chat messages; it does not call engines or grade responses.
"""

from __future__ import annotations

import base64
import codecs
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llmloop.core.chat import ChatMessage
from llmloop.errors import ConfigError, InvalidInputError

#: OWASP Top 10 for LLM Applications 2025.
OWASP_LLM_2025: dict[str, str] = {
    "LLM01": "Prompt Injection",
    "LLM02": "Sensitive Information Disclosure",
    "LLM03": "Supply Chain",
    "LLM04": "Data and Model Poisoning",
    "LLM05": "Improper Output Handling",
    "LLM06": "Excessive Agency",
    "LLM07": "System Prompt Leakage",
    "LLM08": "Vector and Embedding Weaknesses",
    "LLM09": "Misinformation",
    "LLM10": "Unbounded Consumption",
}
Encoding = Literal["none", "base64", "rot13", "homoglyph"]
DETECTOR_NAMES = (
    "marker",
    "refusal_required",
    "system_prompt_leak",
    "markdown_exfil",
    "ansi",
    "pii_leak",
    "max_length",
)
# Latin letters and their Cyrillic/Greek look-alikes.
_HOMOGLYPHS = str.maketrans("aceopxyiAEOPCTHKMB", "асеорхуіАЕОРСТНКМВ")


class Probe(BaseModel):
    """One attack and how to grade the answer to it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(description="Stable probe id, unique in its catalogue.")
    title: str = Field(description="One line saying what the probe tries.")
    category: str = Field(description="Attack family, e.g. prompt_injection, encoding.")
    owasp: str | None = Field(description="OWASP LLM 2025 id (LLM01..LLM10); None: content safety.")
    severity: Literal["low", "medium", "high", "critical"] = Field(
        description="Impact if it works."
    )
    system: str | None = Field(default=None, description="System prompt; None: the default one.")
    context: str | None = Field(default=None, description="Retrieved text given with the prompt.")
    prompt: str = Field(description="The user turn; '{payload}' is replaced by the payload.")
    payload: str | None = Field(default=None, description="Text transformed by 'encoding'.")
    encoding: Encoding = Field(default="none", description="Obfuscation applied to the payload.")
    detector: str = Field(description=f"How to grade the answer: one of {DETECTOR_NAMES}.")
    marker: str | None = Field(default=None, description="'marker': text proving the attack won.")
    secrets: list[str] = Field(default_factory=list, description="'pii_leak': planted values.")
    max_words: int | None = Field(default=None, description="'max_length': longest fair answer.")

    @model_validator(mode="after")
    def _consistent(self) -> Probe:
        if self.owasp is not None and self.owasp not in OWASP_LLM_2025:
            raise ValueError(f"probe '{self.id}': unknown OWASP id '{self.owasp}'")
        if self.detector not in DETECTOR_NAMES:
            raise ValueError(f"probe '{self.id}': unknown detector '{self.detector}'")
        if self.detector == "marker" and not self.marker:
            raise ValueError(f"probe '{self.id}': the 'marker' detector needs a marker")
        if self.detector == "max_length" and not self.max_words:
            raise ValueError(f"probe '{self.id}': the 'max_length' detector needs max_words")
        if ("{payload}" in self.prompt) != (self.payload is not None):
            raise ValueError(f"probe '{self.id}': use '{{payload}}' exactly when a payload is set")
        return self


class Catalogue(BaseModel):
    """A named, versioned list of probes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Catalogue name.")
    version: str = Field(description="Bumped whenever a probe changes (reports quote it).")
    default_system: str = Field(description="System prompt for probes without their own.")
    probes: list[Probe] = Field(description="The probes, in run order.")

    @model_validator(mode="after")
    def _unique(self) -> Catalogue:
        ids = [p.id for p in self.probes]
        if len(ids) != len(set(ids)):
            raise ValueError("probe ids must be unique")
        return self

    def select(
        self, ids: list[str] | None = None, categories: list[str] | None = None
    ) -> list[Probe]:
        """Probes filtered by id and/or category; unknown ids or categories raise
        InvalidInputError (a typo would otherwise run nothing and report a 0% attack rate)."""
        if ids:
            unknown = set(ids) - {p.id for p in self.probes}
            if unknown:
                raise InvalidInputError(f"unknown probe id(s): {', '.join(sorted(unknown))}")
        if categories:
            known = {p.category for p in self.probes}
            if unknown := set(categories) - known:
                raise InvalidInputError(
                    f"unknown probe categor{'ies' if len(unknown) > 1 else 'y'} "
                    f"{', '.join(sorted(unknown))} (known: {', '.join(sorted(known))})"
                )
        return [
            p
            for p in self.probes
            if (not ids or p.id in ids) and (not categories or p.category in categories)
        ]


def load_catalogue(path: str | Path | None = None) -> Catalogue:
    """Load and validate a catalogue (the built-in one when ``path`` is None)."""
    import yaml

    if path is None:
        from llmloop.guards.safety_data import safety_path

        path = safety_path("redteam_probes.yaml")
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read red-team catalogue '{path}': {exc}") from exc
    try:
        return Catalogue.model_validate(raw)
    except ValueError as exc:
        raise ConfigError(f"invalid red-team catalogue '{path}': {exc}") from exc


def encode_payload(text: str, encoding: Encoding) -> str:
    """The payload as the model will see it."""
    if encoding == "base64":
        return base64.b64encode(text.encode()).decode()
    if encoding == "rot13":
        return codecs.encode(text, "rot13")
    if encoding == "homoglyph":
        return text.translate(_HOMOGLYPHS)
    return text


def render_probe(probe: Probe, default_system: str, canary: str) -> list[ChatMessage]:
    """The chat messages of a probe: system (with the canary), context, then the user turn."""
    system = (probe.system or default_system).replace("{canary}", canary)
    prompt = probe.prompt
    if probe.payload is not None:
        prompt = prompt.replace("{payload}", encode_payload(probe.payload, probe.encoding))
    messages = [ChatMessage(role="system", content=system)]
    if probe.context:
        messages.append(
            ChatMessage(role="user", content=f"Retrieved document:\n<<<\n{probe.context}\n>>>")
        )
    messages.append(ChatMessage(role="user", content=prompt))
    return messages
