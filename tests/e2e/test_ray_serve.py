"""The gateway on Ray Serve: two replicas of the same app behind Ray's HTTP proxy on a local Ray.

The official ``openai`` client talks to Ray Serve's port; answers come from both replicas (the
``x-llmloop-replica`` header), per-key limits hold across them (Redis at 127.0.0.1:6379), and
deleting the application runs each replica's lifespan, which flushes every trace to the shared
SQLite store. Skipped when ``ray.serve`` (the ``ray`` extra) is not installed.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

serve = pytest.importorskip("ray.serve")
import ray  # noqa: E402 - only once ray.serve is known to import
from tests.fixtures.served import free_port  # noqa: E402

from llmloop.api.ray_serve import REPLICA_HEADER, build_ray_app  # noqa: E402
from llmloop.config import Settings, load_settings  # noqa: E402
from llmloop.core.governance import ApiKeyCreate  # noqa: E402
from llmloop.services.actors import local_actor  # noqa: E402
from llmloop.services.container import Container  # noqa: E402

pytestmark = pytest.mark.slow

REDIS = ("127.0.0.1", 6379)
MSG = [{"role": "user", "content": "hello ray"}]


@dataclass
class RayGateway:
    url: str
    settings: Settings
    admin: str
    limited: str  # a viewer key allowed 3 requests a minute


def _redis_up() -> bool:
    try:
        socket.create_connection(REDIS, timeout=1).close()
    except OSError:
        return False
    return True


def _keys(settings: Settings) -> tuple[str, str]:
    """Create the schema and two keys before the replicas start (they share this SQLite file)."""
    container = Container(settings)
    try:
        admin = container.keys.create(ApiKeyCreate(name="admin", role="admin"), local_actor())
        limited = container.keys.create(
            ApiKeyCreate(name="limited", role="viewer", limits={"rpm": 3}), local_actor()
        )
        return admin.secret, limited.secret
    finally:
        container.close()


def _count_traces(settings: Settings) -> int:
    container = Container(settings)
    try:
        return container.gateway.traces.count()
    finally:
        container.close()


@pytest.fixture
def ray_gateway(tmp_path: Path) -> Iterator[RayGateway]:
    if not _redis_up():
        pytest.skip("Redis at 127.0.0.1:6379 is unreachable")
    deployments = tmp_path / "deployments.yaml"
    deployments.write_text(json.dumps({"deployments": [
        {"name": "chat", "targets": [{"engine": {"kind": "echo"}}]},
        {"name": "slow", "targets": [{"engine": {"kind": "echo",
                                                 "options": {"delay_s": 0.05}}}]}]}))  # fmt: skip
    settings = load_settings({
        "home": str(tmp_path / "home"), "deployments_file": str(deployments),
        "redis_url": f"redis://{REDIS[0]}:{REDIS[1]}/0", "gateway_reload_s": 0,
        "trace_flush_ms": 60_000, "trace_batch_size": 100_000,  # only shutdown flushes
        "alert_interval_s": 0,
    }, env={})  # fmt: skip
    admin, limited = _keys(settings)
    port = free_port()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        app = build_ray_app(settings, replicas=2, ray_actor_options={"num_cpus": 0.5})
        serve.run(app, name="llmloop", route_prefix="/")
        yield RayGateway(f"http://127.0.0.1:{port}", settings, admin, limited)
    finally:
        serve.shutdown()
        ray.shutdown()


async def test_two_replicas_serve_the_gateway(ray_gateway: RayGateway) -> None:
    gw = ray_gateway
    health = httpx.get(f"{gw.url}/health", timeout=10)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert health.headers[REPLICA_HEADER]

    client = openai.AsyncOpenAI(api_key=gw.admin, base_url=f"{gw.url}/v1", max_retries=0)
    models = await client.models.list()
    assert {"chat", "slow"} <= {m.id for m in models.data}
    answer = await client.chat.completions.create(model="chat", messages=MSG)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == "hello ray"

    # Overlapping requests spread over the replicas; each response names the one that answered.
    raws = await asyncio.gather(*[
        client.chat.completions.with_raw_response.create(model="slow", messages=MSG)  # type: ignore[arg-type]
        for _ in range(16)])  # fmt: skip
    assert all(r.parse().choices[0].message.content == "hello ray" for r in raws)
    assert len({r.headers[REPLICA_HEADER] for r in raws}) == 2

    # One key's limit holds across replicas (Redis): 3 a minute, however they are spread.
    if time.time() % 60 > 50:  # a fixed 60 s window: do not straddle its edge
        await asyncio.sleep(61 - time.time() % 60)
    limited = openai.AsyncOpenAI(api_key=gw.limited, base_url=f"{gw.url}/v1", max_retries=0)
    codes = []
    for _ in range(6):
        try:
            await limited.chat.completions.create(model="chat", messages=MSG)  # type: ignore[arg-type]
            codes.append(200)
        except openai.RateLimitError:
            codes.append(429)
    assert codes == [200, 200, 200, 429, 429, 429]
    await client.close()
    await limited.close()

    # Deleting the app stops each replica through its lifespan, which flushes its traces.
    assert _count_traces(gw.settings) == 0
    serve.delete("llmloop")
    assert _count_traces(gw.settings) == 1 + 16 + 3  # refused requests leave no trace
