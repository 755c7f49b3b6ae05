"""Limits per API key: the contract, the parsed limits and the reservation they hand out.

A request first *reserves* (one request, an estimate of its tokens and cost), then *settles*
with the actual amounts, or *releases* when it failed. Reserving is where a limit says no:
``rpm``, ``tpm`` and ``max_concurrent`` raise :class:`RateLimitError` with ``retry_after``;
``budget_usd`` raises :class:`BudgetExceededError`. Because the estimate is counted at reserve
time, concurrent requests cannot overshoot: spend never exceeds the budget by more than the
difference between estimates and actual amounts of requests already admitted.

Windows are fixed 60-second buckets (a request counts in the bucket it started in); a settle
adjusts the tokens of that bucket. This module holds the contract and the chooser; the backends
live in ``policy_store.py`` (in-process accounting persisted to the database behind the requests:
exact within one process, durable across restarts) and ``policy_redis.py`` (exact across many
processes: the choice for ``--workers N``). It does not know deployments' prices or how tokens
are estimated: the caller passes amounts. Keys without limits are decided here, with no backend
work: ``KeyLimits.parse`` caches per (cached) actor's dict and ``Reservation.tracked`` is False.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from llmloop.errors import BudgetExceededError, ConfigError, RateLimitError
from llmloop.services.actors import Actor

if TYPE_CHECKING:
    from llmloop.config import Settings
    from llmloop.store.registry import Store

WINDOW_S = 60
#: How long an unsettled reservation holds concurrency and budget before it is presumed dead.
DEFAULT_LEASE_S = 600.0
LIMIT_NAMES = ("rpm", "tpm", "max_concurrent", "budget_usd")
#: Reservation ids: a random prefix per process and a counter (no urandom per request); unique
#: across the processes sharing a Redis server.
_ID_PREFIX = f"rsv_{os.urandom(8).hex()}_"
_ID_COUNTER = itertools.count()


def new_reservation_id() -> str:
    return f"{_ID_PREFIX}{next(_ID_COUNTER)}"


@dataclass(frozen=True)
class KeyLimits:
    """The limits of one key; ``None`` is no limit."""

    rpm: int | None = None
    tpm: int | None = None
    max_concurrent: int | None = None
    budget_usd: float | None = None

    @property
    def empty(self) -> bool:
        return self is _NO_LIMITS or all(getattr(self, name) is None for name in LIMIT_NAMES)

    @classmethod
    def parse(cls, limits: dict[str, float] | None) -> KeyLimits:
        """Limits from an API key's ``limits`` dict; unknown names are ignored (future use).

        Parsed once per dict: authenticated actors are cached, so a key's requests bring the
        same ``limits`` object (held here, so its id cannot be reused while cached).
        """
        if not limits:
            return _NO_LIMITS
        hit = _PARSED.get(id(limits))
        if hit is not None and hit[0] is limits:
            return hit[1]
        parsed = cls._parse(limits)
        if len(_PARSED) >= 4096:
            _PARSED.clear()
        _PARSED[id(limits)] = (limits, parsed)
        return parsed

    @classmethod
    def _parse(cls, limits: dict[str, float]) -> KeyLimits:
        if all(limits.get(name) is None for name in LIMIT_NAMES):
            return _NO_LIMITS
        values: dict[str, float | int] = {}
        for name in LIMIT_NAMES:
            raw = limits.get(name)
            if raw is None:
                continue
            if isinstance(raw, bool) or not isinstance(raw, int | float):
                raise ConfigError(f"limit '{name}' must be a number, not {raw!r}")
            if not math.isfinite(raw) or raw < 0:
                raise ConfigError(f"limit '{name}' must be a finite number >= 0, not {raw!r}")
            values[name] = float(raw) if name == "budget_usd" else int(raw)
        return cls(**values)  # type: ignore[arg-type]


_NO_LIMITS = KeyLimits()
_PARSED: dict[int, tuple[dict[str, float], KeyLimits]] = {}


@dataclass
class Reservation:
    """What one admitted request holds until it is settled or released."""

    key_id: str | None
    deployment: str
    est_tokens: int
    est_cost: float
    window_start: int = 0
    limits: KeyLimits = field(default_factory=lambda: _NO_LIMITS)
    id: str = field(default_factory=new_reservation_id)
    done: bool = False

    @property
    def tracked(self) -> bool:
        """False for keys without limits (nothing was counted, nothing to settle)."""
        return self.key_id is not None and not self.limits.empty


class LimitBackend(Protocol):
    """Admission and accounting of requests per API key."""

    async def reserve(
        self, actor: Actor, deployment: str, est_tokens: int, est_cost: float
    ) -> Reservation:
        """Admit one request or raise RateLimitError / BudgetExceededError."""
        ...

    async def settle(
        self, reservation: Reservation, actual_tokens: int, actual_cost: float
    ) -> None:
        """Replace the estimate with the actual amounts and free the concurrency slot."""
        ...

    async def release(self, reservation: Reservation) -> None:
        """Undo a reservation whose request failed before using anything."""
        ...

    async def spent(self, key_id: str) -> float:
        """Settled spend of a key in USD."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


def start_reservation(
    actor: Actor, deployment: str, est_tokens: int, est_cost: float, now: float
) -> Reservation:
    """Validate the amounts and build the reservation (untracked on the fast path)."""
    check_amounts(est_tokens, est_cost)
    limits = KeyLimits.parse(actor.limits) if actor.key_id is not None else _NO_LIMITS
    return Reservation(
        key_id=actor.key_id,
        deployment=deployment,
        est_tokens=int(est_tokens),
        est_cost=float(est_cost),
        window_start=window_start(now),
        limits=limits,
    )


async def admit_shielded(
    admit: Awaitable[str | None],
    undo: Callable[[], Coroutine[Any, Any, None]],
    background: set[asyncio.Task[None]],
) -> str | None:
    """Run ``admit`` to the end even if the caller is cancelled, then ``undo`` what it admitted.

    A client that disconnects while its reservation is being written must not leave a slot and
    budget held until the lease ends.
    """
    fut = asyncio.ensure_future(admit)
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:

        def undo_if_admitted(done: asyncio.Future[str | None]) -> None:
            if not done.cancelled() and done.exception() is None and done.result() is None:
                task: asyncio.Task[None] = asyncio.get_running_loop().create_task(undo())
                background.add(task)
                task.add_done_callback(background.discard)

        fut.add_done_callback(undo_if_admitted)
        raise


def check_amounts(tokens: int, cost: float) -> None:
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
        raise ValueError(f"tokens must be an int >= 0, not {tokens!r}")
    if not isinstance(cost, int | float) or not math.isfinite(cost) or cost < 0:
        raise ValueError(f"cost must be a finite number >= 0, not {cost!r}")


def window_start(now: float) -> int:
    return int(now // WINDOW_S) * WINDOW_S


def retry_in_window(now: float) -> float:
    """Seconds until the current window ends (at least a little, never zero)."""
    return max(0.05, window_start(now) + WINDOW_S - now)


def refuse(reason: str, key_id: str | None, limits: KeyLimits, now: float) -> RateLimitError:
    """The error for a refusal reason reported by a backend."""
    if reason == "rpm":
        return RateLimitError(
            f"rate limit: {limits.rpm} requests per minute for this key",
            retry_after=retry_in_window(now), limit="rpm",
        )  # fmt: skip
    if reason == "tpm":
        return RateLimitError(
            f"rate limit: {limits.tpm} tokens per minute for this key",
            retry_after=retry_in_window(now), limit="tpm",
        )  # fmt: skip
    if reason == "tpm_never":
        return RateLimitError(
            f"the request's token estimate is larger than this key's {limits.tpm} tokens per "
            "minute", retry_after=None, limit="tpm",
        )  # fmt: skip
    if reason == "concurrency":
        return RateLimitError(
            f"concurrency limit: {limits.max_concurrent} requests in flight for this key",
            retry_after=1.0, limit="max_concurrent",
        )  # fmt: skip
    if reason == "budget":
        return BudgetExceededError(
            f"budget of {limits.budget_usd} USD for key '{key_id}' is used up "
            "(settled spend plus requests in flight)", retry_after=None, limit="budget_usd",
        )  # fmt: skip
    raise AssertionError(f"unknown refusal reason {reason!r}")


def make_limit_backend(settings: Settings, store: Store) -> LimitBackend:
    """Redis when ``settings.redis_url`` is set (several gateway processes), else the store
    (exact within this process only; see ``policy_store.py``)."""
    if settings.redis_url:
        from llmloop.services.gateway.policy_redis import RedisLimitBackend

        return RedisLimitBackend.from_url(settings.redis_url)
    from llmloop.services.gateway.policy_store import StoreLimitBackend

    return StoreLimitBackend(store)
