"""Limits per API key in Redis: one atomic Lua script per reserve and per settle.

The backend for several gateway processes: every process runs the same scripts against the same
keys, so admission is exact however many processes and tasks race (Redis runs a script
atomically). Per key it keeps, under a ``{key_id}`` hash tag (one cluster slot):

- ``w:<window_start>:req`` / ``w:<window_start>:tok``: fixed 60-second window counters, expiring
  two windows later;
- ``inflight``: a sorted set of reservation ids scored by lease expiry, and ``rescost``: their
  estimated costs (a dead process's reservations drop out when their lease ends);
- ``spend``: settled spend in USD, never expiring (durable as far as the Redis server is).

The clock is the caller's (passed into the scripts), so tests can pin it. This module does not
decide prices or token estimates.

Round trips: the scripts of all the reserves (and, apart, all the settles) that arrive in one
turn of the event loop go to Redis as one pipeline (``EVALSHA`` each, one write and one read for
the lot); each script still runs atomically and in order, so batching changes no outcome.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from llmloop.services.actors import Actor
from llmloop.services.gateway.policy import (
    DEFAULT_LEASE_S,
    WINDOW_S,
    Reservation,
    admit_shielded,
    check_amounts,
    refuse,
    start_reservation,
)

_RESERVE = """
local now = tonumber(ARGV[1])
local rpm, tpm = tonumber(ARGV[2]), tonumber(ARGV[3])
local maxc, budget = tonumber(ARGV[4]), tonumber(ARGV[5])
local est_tokens, est_cost = tonumber(ARGV[6]), tonumber(ARGV[7])
local rid, lease, ttl = ARGV[8], tonumber(ARGV[9]), tonumber(ARGV[10])
local dead = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)
for _, id in ipairs(dead) do redis.call('HDEL', KEYS[4], id) end
if #dead > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now) end
if budget >= 0 then
  local spent = tonumber(redis.call('GET', KEYS[5]) or '0')
  local reserved = 0
  for _, c in ipairs(redis.call('HVALS', KEYS[4])) do reserved = reserved + tonumber(c) end
  if spent + reserved + est_cost > budget + 1e-9 then return 'budget' end
end
if maxc >= 0 and redis.call('ZCARD', KEYS[3]) >= maxc then return 'concurrency' end
if rpm >= 0 and tonumber(redis.call('GET', KEYS[1]) or '0') + 1 > rpm then return 'rpm' end
if tpm >= 0 then
  if est_tokens > tpm then return 'tpm_never' end
  if tonumber(redis.call('GET', KEYS[2]) or '0') + est_tokens > tpm then return 'tpm' end
end
redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('INCRBY', KEYS[2], est_tokens)
redis.call('EXPIRE', KEYS[2], ttl)
redis.call('ZADD', KEYS[3], now + lease, rid)
redis.call('HSET', KEYS[4], rid, ARGV[7])
redis.call('EXPIRE', KEYS[3], math.ceil(lease * 2))
redis.call('EXPIRE', KEYS[4], math.ceil(lease * 2))
return 'ok'
"""

_FINISH = """
local held = redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
local delta = tonumber(ARGV[2])
if held == 1 and delta ~= 0 and redis.call('EXISTS', KEYS[1]) == 1 then
  if redis.call('INCRBY', KEYS[1], delta) < 0 then redis.call('SET', KEYS[1], 0, 'KEEPTTL') end
end
if tonumber(ARGV[3]) > 0 then redis.call('INCRBYFLOAT', KEYS[4], ARGV[3]) end
return 1
"""


class _ScriptBatcher:
    """Runs one script for many callers: the calls made in one loop turn share a pipeline."""

    def __init__(self, client: aioredis.Redis, script: AsyncScript) -> None:
        self.redis = client
        self.script = script
        self._pending: list[tuple[list[str], list[str | int], asyncio.Future[Any]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def __call__(self, keys: list[str], args: list[str | int]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._launch)
        self._pending.append((keys, args, fut))
        return fut

    def _launch(self) -> None:
        batch, self._pending = self._pending, []
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(
        self, batch: list[tuple[list[str], list[str | int], asyncio.Future[Any]]]
    ) -> None:
        try:
            if len(batch) == 1:
                keys, args, _ = batch[0]
                results: list[Any] = [await self.script(keys=keys, args=args)]
            else:
                results = await self._pipeline(batch)
        except BaseException as exc:
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, _, fut), result in zip(batch, results, strict=True):
            if fut.done():
                continue
            if isinstance(result, Exception):
                fut.set_exception(result)
            else:
                fut.set_result(result)

    async def _pipeline(
        self, batch: list[tuple[list[str], list[str | int], asyncio.Future[Any]]]
    ) -> list[Any]:
        for attempt in range(2):
            if self.script.sha is None or attempt:
                self.script.sha = await self.redis.script_load(self.script.script)
            pipe = self.redis.pipeline(transaction=False)
            for keys, args, _ in batch:
                pipe.evalsha(self.script.sha, len(keys), *keys, *args)
            results: list[Any] = await pipe.execute(raise_on_error=False)
            # A flushed script cache (Redis restarted) fails every call before it ran: retry.
            if not any(isinstance(r, NoScriptError) for r in results):
                return results
        return results


class RedisLimitBackend:
    """A :class:`~llmloop.services.gateway.policy.LimitBackend` shared through Redis."""

    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str = "llmloop:lim",
        clock: Callable[[], float] = time.time,
        lease_s: float = DEFAULT_LEASE_S,
        owns_client: bool = False,
    ) -> None:
        if lease_s <= 0:
            raise ValueError("lease_s must be > 0")
        self.redis = client
        self.prefix = prefix
        self.clock = clock
        self.lease_s = lease_s
        self._owns_client = owns_client
        self._background: set[asyncio.Task[None]] = set()
        self._reserve = _ScriptBatcher(client, client.register_script(_RESERVE))
        self._finish = _ScriptBatcher(client, client.register_script(_FINISH))

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RedisLimitBackend:
        """A backend with its own connection pool (closed by :meth:`aclose`)."""
        client = aioredis.Redis.from_url(url, decode_responses=True)
        return cls(client, owns_client=True, **kwargs)

    def _key(self, key_id: str, suffix: str) -> str:
        return f"{self.prefix}:{{{key_id}}}:{suffix}"

    async def reserve(
        self, actor: Actor, deployment: str, est_tokens: int, est_cost: float
    ) -> Reservation:
        now = self.clock()
        res = start_reservation(actor, deployment, est_tokens, est_cost, now)
        if not res.tracked:
            return res
        assert res.key_id is not None
        lim, kid, ws = res.limits, res.key_id, res.window_start
        keys = [self._key(kid, suffix) for suffix in (f"w:{ws}:req", f"w:{ws}:tok", "inflight",
                "rescost", "spend")]  # fmt: skip
        args: list[str | int] = [repr(now), _num(lim.rpm), _num(lim.tpm), _num(lim.max_concurrent),
                _num(lim.budget_usd), res.est_tokens, repr(res.est_cost), res.id,
                repr(self.lease_s), 2 * WINDOW_S]  # fmt: skip
        reason = await admit_shielded(
            self._admit(keys, args), lambda: self.release(res), self._background
        )
        if reason is not None:
            raise refuse(reason, kid, lim, now)
        return res

    async def _admit(self, keys: list[str], args: list[str | int]) -> str | None:
        reason = _text(await self._reserve(keys, args))
        return None if reason == "ok" else reason

    async def settle(
        self, reservation: Reservation, actual_tokens: int, actual_cost: float
    ) -> None:
        check_amounts(actual_tokens, actual_cost)
        if reservation.tracked and not reservation.done:
            reservation.done = True
            await self._run_finish(
                reservation, actual_tokens - reservation.est_tokens, float(actual_cost)
            )

    async def release(self, reservation: Reservation) -> None:
        if reservation.tracked and not reservation.done:
            reservation.done = True
            await self._run_finish(reservation, -reservation.est_tokens, 0.0)

    async def _run_finish(self, res: Reservation, token_delta: int, cost: float) -> None:
        assert res.key_id is not None
        kid = res.key_id
        suffixes = (f"w:{res.window_start}:tok", "inflight", "rescost", "spend")
        keys = [self._key(kid, suffix) for suffix in suffixes]
        await self._finish(keys, [res.id, token_delta, repr(cost)])

    async def spent(self, key_id: str) -> float:
        value = await self.redis.get(self._key(key_id, "spend"))
        return float(_text(value)) if value is not None else 0.0

    async def aclose(self) -> None:
        if self._owns_client:
            await self.redis.aclose()


def _num(value: float | None) -> str:
    """A limit for the script: -1 is 'no limit'."""
    return "-1" if value is None else repr(value)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
