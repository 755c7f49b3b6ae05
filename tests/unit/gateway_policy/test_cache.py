"""Response caches: exact (in memory and in Redis) and semantic."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from llmloop.core.chat import (
    ChatMessage,
    EmbeddingResult,
    GenerationRequest,
    GenerationResult,
    SamplingParams,
    Usage,
)
from llmloop.services.gateway.cache import (
    CacheConfig,
    MemoryExactBackend,
    RedisExactBackend,
    ResponseCache,
    request_digest,
)
from llmloop.services.gateway.cache_semantic import SemanticCache

REDIS_URL = "redis://127.0.0.1:6379/0"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def chat(
    *turns: str, temperature: float = 0.0, system: str = "be brief", **kw: Any
) -> GenerationRequest:
    messages = [ChatMessage(role="system", content=system)]
    for i, turn in enumerate(turns):
        messages.append(ChatMessage(role="user" if i % 2 == 0 else "assistant", content=turn))
    return GenerationRequest(
        model="m", messages=messages, sampling=SamplingParams(temperature=temperature), **kw
    )


def answer(text: str = "4", finish: str = "stop") -> GenerationResult:
    return GenerationResult(text=text, finish_reason=finish, usage=Usage(prompt_tokens=3))  # type: ignore[arg-type]


# --- exact ----------------------------------------------------------------------------------------


async def test_exact_hit_and_miss_and_what_is_ignored() -> None:
    cache = ResponseCache()
    assert await cache.lookup("dep@1", chat("2+2?")) is None
    assert await cache.store("dep@1", chat("2+2?", user="ann", request_id="r1"), answer())
    hit = await cache.lookup("dep@1", chat("2+2?", user="bob", request_id="r2"))
    assert hit is not None and hit.kind == "exact" and hit.similarity == 1.0
    assert hit.result == answer()
    assert await cache.lookup("dep@2", chat("2+2?")) is None  # a new deployment version
    assert await cache.lookup("dep@1", chat("2+2? ")) is None
    assert await cache.lookup("dep@1", chat("2+2?", system="be long")) is None
    assert await cache.lookup("dep@1", chat("2+2?", logprobs=2)) is None


def test_the_digest_normalises_stop_order_and_separates_fields() -> None:
    a = GenerationRequest(
        model="m", prompt="x", sampling=SamplingParams(temperature=0, stop=["b", "a"])
    )
    b = GenerationRequest(
        model="m", prompt="x", sampling=SamplingParams(temperature=0, stop=["a", "b"])
    )
    assert request_digest("s", a) == request_digest("s", b)
    c = GenerationRequest(model="m2", prompt="x", sampling=SamplingParams(temperature=0))
    d = GenerationRequest(model="m", messages=[ChatMessage(role="user", content="x")])
    assert len({request_digest("s", a), request_digest("s", c), request_digest("s", d)}) == 3


async def test_token_id_prompts_are_keyed_by_their_ids() -> None:
    """lm-evaluation-harness scores with token-id prompts (text ""): each must be its own entry,
    exact and semantic."""

    def ids(*tokens: int) -> GenerationRequest:
        return GenerationRequest(model="m", prompt="", prompt_ids=list(tokens),
                                 sampling=SamplingParams(temperature=0))  # fmt: skip

    cache = ResponseCache(CacheConfig(semantic=True), embed=Embedder({"": [1, 0, 0]}))
    assert await cache.store("s", ids(11, 12, 13, 14), answer("long"))
    assert (await cache.lookup("s", ids(11, 12, 13, 14))) is not None
    assert await cache.lookup("s", ids(20, 21)) is None


async def test_sampled_requests_are_cached_only_when_allowed() -> None:
    cache = ResponseCache()
    assert not await cache.store("s", chat("hi", temperature=0.7), answer())
    assert await cache.lookup("s", chat("hi", temperature=0.7)) is None
    allowed = ResponseCache(CacheConfig(allow_sampled=True))
    assert await allowed.store("s", chat("hi", temperature=0.7), answer())
    assert await allowed.lookup("s", chat("hi", temperature=0.7)) is not None


@pytest.mark.parametrize("finish", ["error", "cancelled", "content_filter"])
async def test_unfinished_answers_are_not_cached(finish: str) -> None:
    cache = ResponseCache()
    assert not await cache.store("s", chat("hi"), answer(finish=finish))
    assert await cache.lookup("s", chat("hi")) is None


async def test_exact_entries_expire() -> None:
    clock = Clock()
    cache = ResponseCache(CacheConfig(ttl_s=10), clock=clock)
    await cache.store("s", chat("hi"), answer())
    clock.now += 9.9
    assert await cache.lookup("s", chat("hi")) is not None
    clock.now += 0.2
    assert await cache.lookup("s", chat("hi")) is None


async def test_the_memory_store_is_a_bounded_lru() -> None:
    backend = MemoryExactBackend(max_entries=2)
    cache = ResponseCache(CacheConfig(max_entries=2), backend=backend)
    for q in ("a", "b"):
        await cache.store("s", chat(q), answer(q))
    assert await cache.lookup("s", chat("a")) is not None  # 'a' is now the most recent
    await cache.store("s", chat("c"), answer("c"))
    assert len(backend) == 2
    assert await cache.lookup("s", chat("b")) is None
    assert (await cache.lookup("s", chat("a"))) is not None
    assert (await cache.lookup("s", chat("c"))) is not None


def test_bad_config_is_refused() -> None:
    for bad in ({"ttl_s": 0}, {"max_entries": 0}, {"semantic_threshold": 1.5}, {"nope": 1}):
        with pytest.raises(ValidationError):
            CacheConfig(**bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ResponseCache(CacheConfig(semantic=True))  # no embed function
    with pytest.raises(ValueError):
        MemoryExactBackend(0)


@pytest.fixture
async def redis_client() -> AsyncIterator[Any]:
    redis_mod = pytest.importorskip("redis.asyncio")
    client = redis_mod.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        await client.ping()
    except Exception as exc:
        pytest.skip(f"Redis at 127.0.0.1:6379 is unreachable: {exc.__class__.__name__}")
    yield client
    await client.aclose()


async def test_redis_store_shares_entries_expires_and_stays_bounded(redis_client: Any) -> None:
    prefix = f"llmloop-test-cache:{uuid.uuid4().hex[:10]}"
    try:
        config = CacheConfig(max_entries=3, ttl_s=0.3)
        one = ResponseCache(config, backend=RedisExactBackend(redis_client, 3, prefix=prefix))
        other = ResponseCache(config, backend=RedisExactBackend(redis_client, 3, prefix=prefix))
        await one.store("s", chat("hi"), answer("hello"))
        hit = await other.lookup("s", chat("hi"))  # another gateway process sees it
        assert hit is not None and hit.result.text == "hello"
        for q in ("a", "b", "c"):
            await one.store("s", chat(q), answer(q))
        assert await redis_client.zcard(f"{{{prefix}}}:lru") == 3
        assert await other.lookup("s", chat("hi")) is None  # least recently used: evicted
        await asyncio.sleep(0.4)
        assert await other.lookup("s", chat("c")) is None  # expired
    finally:
        async for key in redis_client.scan_iter(match=f"{{{prefix}}}:*"):
            await redis_client.delete(key)


async def test_an_unreachable_redis_is_a_miss_not_an_error() -> None:
    redis_mod = pytest.importorskip("redis.asyncio")
    client = redis_mod.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    cache = ResponseCache(backend=RedisExactBackend(client, 10))
    assert not await cache.store("s", chat("hi"), answer())
    assert await cache.lookup("s", chat("hi")) is None
    await client.aclose()


# --- semantic ------------------------------------------------------------------------------------


class Embedder:
    """Vectors from a table, so similarities are known: unknown texts get a far-away vector."""

    def __init__(self, table: dict[str, list[float]]) -> None:
        self.table, self.calls = table, 0

    async def __call__(self, texts: list[str]) -> list[list[float]]:
        self.calls += 1
        return [self.table.get(t, [0.0, 0.0, 1.0]) for t in texts]


def cos_vector(similarity: float) -> list[float]:
    """A unit vector whose cosine with [1, 0, 0] is ``similarity``."""
    return [similarity, float(np.sqrt(1 - similarity**2)), 0.0]


SEMANTIC = CacheConfig(exact=False, semantic=True, semantic_threshold=0.9)


async def test_semantic_hits_above_the_threshold_only() -> None:
    embed = Embedder({"capital of France?": [1, 0, 0], "France's capital?": cos_vector(0.95),
                      "France's population?": cos_vector(0.85)})  # fmt: skip
    cache = ResponseCache(SEMANTIC, embed=embed)
    assert await cache.store("s", chat("capital of France?"), answer("Paris"))
    hit = await cache.lookup("s", chat("France's capital?"))
    assert hit is not None and hit.kind == "semantic" and hit.result.text == "Paris"
    assert hit.similarity == pytest.approx(0.95, abs=1e-5)
    assert await cache.lookup("s", chat("France's population?")) is None
    assert await cache.lookup("other", chat("France's capital?")) is None  # scope
    assert await cache.lookup("s", chat("France's capital?", system="x")) is None  # context


async def test_exact_comes_before_semantic() -> None:
    embed = Embedder({"q": [1, 0, 0]})
    cache = ResponseCache(CacheConfig(semantic=True), embed=embed)
    await cache.store("s", chat("q"), answer())
    calls = embed.calls
    hit = await cache.lookup("s", chat("q"))
    assert hit is not None and hit.kind == "exact" and embed.calls == calls


async def test_multi_turn_chats_skip_the_semantic_cache_by_default() -> None:
    embed = Embedder({"and in Spain?": [1, 0, 0]})
    cache = ResponseCache(SEMANTIC, embed=embed)
    multi = chat("capital of France?", "Paris", "and in Spain?")
    assert not await cache.store("s", multi, answer("Madrid"))
    assert embed.calls == 0 and await cache.lookup("s", multi) is None
    enabled = ResponseCache(SEMANTIC.model_copy(update={"semantic_multi_turn": True}), embed=embed)
    assert await enabled.store("s", multi, answer("Madrid"))
    hit = await enabled.lookup("s", multi)
    assert hit is not None and hit.result.text == "Madrid"


async def test_semantic_entries_expire_and_stay_bounded() -> None:
    clock = Clock()
    table = {f"q{i}": [float(np.cos(i)), float(np.sin(i)), 0.0] for i in range(5)}
    sem = SemanticCache(Embedder(table), threshold=0.999, max_entries=3, ttl_s=10, clock=clock)
    for i in range(3):
        await sem.store(chat(f"q{i}"), "ctx", answer(str(i)))
        clock.now += 1
    assert await sem.lookup(chat("q0"), "ctx") is not None  # q0 is now the most recent
    await sem.store(chat("q3"), "ctx", answer("3"))
    assert len(sem) == 3
    assert await sem.lookup(chat("q1"), "ctx") is None  # the least recently used went
    found = await sem.lookup(chat("q3"), "ctx")
    assert found is not None and found[0].text == "3"
    clock.now += 11
    assert await sem.lookup(chat("q3"), "ctx") is None and len(sem) == 0


async def test_storing_the_same_text_replaces_its_entry() -> None:
    sem = SemanticCache(Embedder({"q": [1, 0, 0]}), max_entries=4)
    await sem.store(chat("q"), "ctx", answer("old"))
    await sem.store(chat("q"), "ctx", answer("new"))
    found = await sem.lookup(chat("q"), "ctx")
    assert len(sem) == 1 and found is not None and found[0].text == "new"


async def test_engine_embeddings_zero_vectors_and_a_new_dimension() -> None:
    async def engine_embed(texts: list[str]) -> EmbeddingResult:
        return EmbeddingResult(vectors=[[0.0, 0.0] if t == "zero" else [1.0, 0.0] for t in texts])

    sem = SemanticCache(engine_embed)
    assert await sem.store(chat("q"), "c", answer())
    assert not await sem.store(chat("zero"), "c", answer())  # nothing to compare by
    assert await sem.lookup(chat("zero"), "c") is None
    wider = SemanticCache(Embedder({"q": [1, 0, 0]}))
    wider._reset(2)  # an index built by an embedder of another dimension
    assert await wider.lookup(chat("q"), "c") is None
    assert await wider.store(chat("q"), "c", answer()) and len(wider) == 1


async def test_a_failing_embedder_is_a_miss() -> None:
    async def broken(texts: list[str]) -> list[list[float]]:
        raise RuntimeError("embedding server down")

    cache = ResponseCache(SEMANTIC, embed=broken)
    assert not await cache.store("s", chat("q"), answer())
    assert await cache.lookup("s", chat("q")) is None


def test_semantic_settings_are_checked() -> None:
    embed = Embedder({})
    for kwargs in ({"threshold": 0.0}, {"threshold": 1.1}, {"max_entries": 0}, {"ttl_s": 0}):
        with pytest.raises(ValueError):
            SemanticCache(embed, **kwargs)  # type: ignore[arg-type]
