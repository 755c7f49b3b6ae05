"""Admission control per deployment: at most ``max_in_flight`` running, ``max_queue`` waiting.

A request beyond both caps is refused at once with OverloadedError (HTTP 503 + Retry-After);
a queued request that waits longer than ``queue_timeout_s`` is refused the same way. The fast
path (a free slot, nobody waiting) takes no lock and allocates nothing.
"""

from __future__ import annotations

import asyncio
from collections import deque

from llmloop.core.deployments import AdmissionPolicy
from llmloop.errors import OverloadedError


class Admission:
    def __init__(self, name: str, policy: AdmissionPolicy) -> None:
        self.name = name
        self.policy = policy
        self.in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def queued(self) -> int:
        return len(self._waiters)

    def _refuse(self, why: str) -> OverloadedError:
        return OverloadedError(
            f"deployment '{self.name}' is overloaded ({why}); retry shortly",
            retry_after=1.0,
        )

    async def acquire(self) -> None:
        """Take a slot, waiting in the queue when allowed; OverloadedError when not."""
        if self.in_flight < self.policy.max_in_flight and not self._waiters:
            self.in_flight += 1
            return
        if len(self._waiters) >= self.policy.max_queue:
            raise self._refuse(f"{self.in_flight} running, {len(self._waiters)} waiting")
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, self.policy.queue_timeout_s)
        except TimeoutError:
            raise self._refuse("queue wait timed out") from None
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot was handed over as we were cancelled: pass it on
            raise
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def release(self) -> None:
        """Give the slot back; hand it straight to the next waiter if there is one."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot moves to the waiter: in_flight unchanged
                return
        self.in_flight -= 1
