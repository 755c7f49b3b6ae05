"""Deployments: a public model name mapped to weighted targets, with shadow, fallbacks and policies.

A target is either a registry model (name + alias or version) or a direct :class:`EngineSpec`.
These are values only: resolving a target to an engine, routing and retrying live in
``services/gateway``; storing them lives in ``services/deployments``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from llmloop.core.base import JsonDict, Name, Value
from llmloop.core.chat import EngineSpec


class TargetSpec(Value):
    """Where requests go: a registry model reference or a direct engine spec, with a weight."""

    model: str | None = Field(default=None, description="Registry model name.")
    alias: str | None = Field(
        default=None, description="Registry alias ('champion'), 'latest', or a version number."
    )
    version: int | None = Field(
        default=None, ge=1, le=2_147_483_647, description="Pinned registry version."
    )
    engine: EngineSpec | None = Field(default=None, description="A direct engine (no registry).")
    weight: float = Field(
        default=1.0,
        ge=0.0,
        description="Relative share of the canary split (0: drained); fractions add up to 1.",
    )
    name: str = Field(default="", max_length=128, description="Label used in traces and metrics.")

    @model_validator(mode="after")
    def _one_source(self) -> TargetSpec:
        if (self.model is None) == (self.engine is None):
            raise ValueError("a target needs exactly one of 'model' or 'engine'")
        if self.engine is not None and (self.alias is not None or self.version is not None):
            raise ValueError("'alias' and 'version' apply to registry targets only")
        if self.alias is not None and self.version is not None:
            raise ValueError("give 'alias' or 'version', not both")
        return self

    @property
    def label(self) -> str:
        """A stable human label: the given name, ``model@ref`` or ``engine:model``."""
        if self.name:
            return self.name
        if self.model is not None:
            ref = self.version if self.version is not None else (self.alias or "latest")
            return f"{self.model}@{ref}"
        assert self.engine is not None
        return f"{self.engine.kind}:{self.engine.model}"

    @property
    def ref(self) -> str:
        """The registry reference to resolve: a version number, an alias or 'latest'."""
        if self.version is not None:
            return str(self.version)
        return self.alias or "latest"


class RetryPolicy(Value):
    """Retries on retryable upstream errors only, with exponential backoff."""

    max_retries: int = Field(default=0, ge=0, le=10, description="Extra attempts per target.")
    backoff_s: float = Field(default=0.05, ge=0.0, le=30.0, description="First backoff delay.")
    backoff_factor: float = Field(default=2.0, ge=1.0, le=10.0, description="Delay multiplier.")
    max_backoff_s: float = Field(default=2.0, ge=0.0, le=60.0, description="Longest delay.")

    def delay(self, attempt: int) -> float:
        """The wait before retry number ``attempt`` (1-based)."""
        return float(min(self.max_backoff_s, self.backoff_s * self.backoff_factor ** (attempt - 1)))


class BreakerPolicy(Value):
    """A circuit breaker per target: open after N consecutive failures, probe after a cool-down."""

    failure_threshold: int = Field(default=5, ge=1, le=1000)
    cooldown_s: float = Field(default=10.0, ge=0.0, le=3600.0)


class AdmissionPolicy(Value):
    """Load shedding per deployment: in-flight cap and wait-queue cap (beyond: 503)."""

    max_in_flight: int = Field(default=256, ge=1, le=100_000)
    max_queue: int = Field(default=512, ge=0, le=1_000_000)
    queue_timeout_s: float = Field(default=5.0, ge=0.0, le=600.0)


class GuardRef(Value):
    """A guardrail of the deployment: a guard plugin name and its config."""

    kind: str = Field(min_length=1, max_length=64, description="Guard plugin name.")
    config: JsonDict = Field(default_factory=dict, description="The guard's config fields.")


class DeploymentSpec(Value):
    """A public model name and how to serve it."""

    name: Name
    description: str = Field(default="", max_length=10_000)
    targets: list[TargetSpec] = Field(min_length=1, max_length=32)
    shadow: TargetSpec | None = Field(default=None, description="Gets a copy of each request.")
    fallbacks: list[TargetSpec] = Field(default_factory=list, max_length=8)
    sticky: bool = Field(default=False, description="Same user (or key) -> same canary target.")
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    timeout_s: float = Field(default=60.0, gt=0.0, le=3600.0, description="Per attempt.")
    breaker: BreakerPolicy = Field(default_factory=BreakerPolicy)
    admission: AdmissionPolicy = Field(default_factory=AdmissionPolicy)
    log_text: bool = Field(default=True, description="Keep request/response text in traces.")
    trace_sample: float = Field(
        default=1.0,
        ge=0.0,
        le=1.0,
        description="Fraction of requests whose trace is stored (chosen by trace id, so a "
        "shadow copy is kept exactly when its primary is); metrics count every request, "
        "feedback and curation see only stored traces.",
    )
    guards: list[GuardRef] = Field(
        default_factory=list, max_length=32, description="Input/output guardrails, in order."
    )
    cache: JsonDict | None = Field(
        default=None,
        description="Response cache config (exact/semantic, ttl_s, ...); absent: no cache.",
    )

    @field_validator("targets")
    @classmethod
    def _weights(cls, targets: list[TargetSpec]) -> list[TargetSpec]:
        """Weights are relative shares (9 and 1 split as 0.9 and 0.1 do), but several written
        as fractions must add up to 1: 0.9 and 0.2 is a slip, not a 82/18 split."""
        total = sum(t.weight for t in targets)
        if total <= 0:
            raise PydanticCustomError("weights", "the weights must add up to more than 0")
        shares = [t.weight for t in targets if t.weight > 0]
        if len(shares) > 1 and all(w < 1 for w in shares) and abs(total - 1) > 1e-6:
            raise PydanticCustomError(
                "weights",
                "the weights are fractions that add up to {total}, not 1: make them add up to "
                "1, or give relative weights such as 9 and 1",
                {"total": f"{total:g}"},
            )
        return targets


class DeploymentPublic(Value):
    id: str
    name: str
    spec: DeploymentSpec
    source: Literal["api", "file"]
    created_by: str = ""
    updated_at: datetime | None = None
    resolved: dict[str, str] = Field(
        default_factory=dict, description="Target label -> model version id now serving."
    )


ServingRole = Literal["primary", "fallback", "shadow"]


class ServingRoute(Value):
    """A deployment target that resolves to a model version now: computed when read from the
    stored spec and the aliases as they are, never stored (moving an alias changes it)."""

    deployment: str = Field(description="Deployment name.")
    deployment_id: str
    role: ServingRole = Field(description="primary (canary split), fallback or shadow.")
    position: int = Field(ge=0, description="Index among the deployment's targets of this role.")
    target: str = Field(description="The target's label: its name or model@ref.")
    ref: str = Field(description="The reference as written: an alias, 'latest' or a number.")
    pinned: bool = Field(description="The reference is a version number, not an alias.")
    weight: float | None = Field(default=None, description="Primaries: the relative weight.")
    share: float | None = Field(
        default=None, description="Primaries: the fraction of the canary split (0: drained)."
    )
    model: str
    version: int
    version_id: str

    @property
    def via(self) -> str:
        """``champion``, ``latest`` or ``pinned v3``: what a move would have to change."""
        return f"pinned v{self.version}" if self.pinned else self.ref

    @property
    def relation(self) -> str:
        """The lineage relation from the version to the deployment, e.g. ``serves via
        champion``, ``serves 10% via candidate``, ``fallback via pinned v3``, ``shadow via
        latest``, ``drained via candidate`` (weight 0)."""
        if self.role != "primary":
            return f"{self.role} via {self.via}"
        if self.share == 0:
            return f"drained via {self.via}"
        if self.share is not None and self.share < 1:
            return f"serves {_percent(self.share)} via {self.via}"
        return f"serves via {self.via}"

    @property
    def role_text(self) -> str:
        """``primary``, ``primary 10%``, ``primary (drained)``, ``fallback 2`` or ``shadow``."""
        if self.role == "fallback":
            return f"fallback {self.position + 1}"
        if self.role == "shadow" or self.share is None or self.share >= 1:
            return self.role
        return "primary (drained)" if self.share == 0 else f"primary {_percent(self.share)}"

    @property
    def summary(self) -> str:
        """One line for people: ``chat: primary 90% via champion``."""
        return f"{self.deployment}: {self.role_text} via {self.via}"


def _percent(share: float) -> str:
    """A share as a whole percentage; a sliver above 0 reads "<1%", not a drained "0%"."""
    return "<1%" if 0 < share < 0.005 else f"{share:.0%}"
