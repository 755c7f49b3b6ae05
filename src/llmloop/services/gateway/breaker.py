"""A circuit breaker per target: closed -> open after N consecutive failures -> half-open probe.

While open, the target is skipped (the router falls back); after the cool-down one request is
let through as a probe: success closes the breaker, failure opens it again, and a probe that
proves nothing (the caller's own mistake, a client that left) gives the probe back so the next
request probes. It counts only what the router reports; it does not time or retry anything.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from llmloop.core.deployments import BreakerPolicy


class CircuitBreaker:
    def __init__(self, policy: BreakerPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self.clock = clock
        self.failures = 0
        self.opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> str:
        """closed, open or half_open."""
        if self.opened_at is None:
            return "closed"
        if self.clock() - self.opened_at >= self.policy.cooldown_s:
            return "half_open"
        return "open"

    def allow(self) -> bool:
        """Whether a request may go to the target now (claims the probe when half-open)."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._probing:
            self._probing = True
            return True
        return False

    def record_success(self) -> None:
        self.failures = 0
        self.opened_at = None
        self._probing = False

    def release(self) -> None:
        """Give back a probe claimed by :meth:`allow` that ended in neither success nor failure
        (without it the breaker would stay half-open with its probe out, refusing for good)."""
        self._probing = False

    def record_failure(self) -> None:
        self._probing = False
        self.failures += 1
        if self.opened_at is not None or self.failures >= self.policy.failure_threshold:
            self.opened_at = self.clock()

    def retry_after(self) -> float:
        """Seconds until the breaker lets a probe through (0 when closed)."""
        if self.opened_at is None:
            return 0.0
        return max(0.0, self.policy.cooldown_s - (self.clock() - self.opened_at))
