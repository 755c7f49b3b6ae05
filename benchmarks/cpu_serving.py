"""CPU serving: llmloop's gateway + hf engine vs `transformers serve --continuous-batching`.

Question: how many generated tokens per second does llmloop serve on CPU at 1, 16 and 64
concurrent clients, each asking for NEW_TOKENS tokens at temperature 0 with a short prompt?

* llmloop: ``llmloop serve``'s app (uvicorn, one process) with a deployment of the hf engine on
  the model dir, auth and tracing on, driven over HTTP by the same client as the peer;
  ``ignore_eos`` keeps every answer at exactly NEW_TOKENS tokens.
* peer: ``transformers serve --continuous-batching`` on the same local model dir, driven over
  HTTP with the same concurrency (tokens counted from the reported usage, as for llmloop).
* ceiling: ``model.generate`` on one static batch of the same size (min_new_tokens fixed), the
  fastest plain transformers can go on this model without a server.

All three use the same number of torch threads and alternate round by round; medians are quoted.
Run: ``.venv/bin/python benchmarks/cpu_serving.py [--quick]`` from the repository root.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
MODEL_DIR = ROOT / ".bench" / "cpu_serving_model"
PROMPT = "Hello, how can I help you today?"
NEW_TOKENS = 64
THREADS = int(os.environ.get("BENCH_THREADS", "2"))

Serve = Callable[[int], Awaitable[float]]  # clients -> tokens/s


def build_model() -> Path:
    """A ~5M-parameter Llama (hidden 256, 4 layers, vocab 2048), built once and cached."""
    if not (MODEL_DIR / "config.json").exists():
        from llmloop.testing.tiny import build_tiny_llama

        build_tiny_llama(MODEL_DIR, vocab_size=2048, hidden_size=256, layers=4, heads=4)
    return MODEL_DIR


# -- llmloop ---------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _http_side(session: Any, base: str, model: str, key: str = "") -> Serve:
    """Clients -> tokens/s over HTTP: ``clients`` concurrent chat requests, usage counted."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": NEW_TOKENS,
        "temperature": 0.0,
    }

    async def one() -> int:
        async with session.post(base + "/v1/chat/completions", json=body, headers=headers) as r:
            payload = await r.json()
            if r.status != 200:
                raise RuntimeError(f"{base} answered {r.status}: {payload}")
            return int(payload["usage"]["completion_tokens"])

    async def serve(clients: int) -> float:
        start = time.perf_counter()
        counts = await asyncio.gather(*(one() for _ in range(clients)))
        return sum(counts) / (time.perf_counter() - start)

    return serve


async def _launch(
    cmd: list[str], env: dict[str, str], port: int, log_name: str
) -> tuple[Any, str, Callable[[], Awaitable[None]], str]:
    """Start a server process; (client session, base URL, stop, why it is not healthy or "")."""
    import aiohttp

    log = open(ROOT / ".bench" / log_name, "w")  # noqa: SIM115 - closed by stop()
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=256), timeout=aiohttp.ClientTimeout(total=600)
    )

    async def stop() -> None:
        await session.close()
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()

    base = f"http://127.0.0.1:{port}"
    return session, base, stop, await _wait_healthy(session, base + "/health", proc)


async def _wait_healthy(session: Any, url: str, proc: subprocess.Popen[bytes]) -> str:
    import aiohttp

    for _ in range(240):
        if proc.poll() is not None:
            return f"exited with {proc.returncode}"
        try:
            async with session.get(url) as response:
                if response.status == 200:
                    return ""
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.5)
    return "did not become healthy in 120 s"


async def start_llmloop(model_dir: Path) -> tuple[Serve, Callable[[], Awaitable[None]]]:
    """The gateway with an hf deployment, in its own process, as a user would run it."""
    import json
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="cpu-serving-"))
    options = {"max_batch_size": 64, "ignore_eos": True, "num_threads": THREADS}
    (tmp / "deployments.yaml").write_text(
        json.dumps(
            {
                "deployments": [
                    {
                        "name": "bench",
                        "targets": [
                            {"engine": {"kind": "hf", "model": str(model_dir), "options": options}}
                        ],
                        "admission": {"max_in_flight": 256, "max_queue": 1024},
                    }
                ]
            }
        )
    )
    env = {
        **os.environ,
        "LLMLOOP_HOME": str(tmp / "home"),
        "LLMLOOP_LOG_LEVEL": "WARNING",
        "LLMLOOP_DEPLOYMENTS_FILE": str(tmp / "deployments.yaml"),
        "OMP_NUM_THREADS": str(THREADS),
    }
    make_key = (
        "from llmloop.config import load_settings; from llmloop.services.container import "
        "Container; from llmloop.core.governance import ApiKeyCreate; from "
        "llmloop.services.actors import local_actor; c = Container(load_settings()); "
        "print(c.keys.create(ApiKeyCreate(name='bench', role='viewer'), "
        "local_actor()).secret)"
    )
    key = subprocess.run(
        [sys.executable, "-c", make_key], env=env, check=True, capture_output=True, text=True
    ).stdout.strip()
    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "llmloop.api.app:create_app",
        "--factory",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    session, base, stop, why = await _launch(cmd, env, port, "llmloop_serve.log")
    if why:
        await stop()
        raise SystemExit(f"llmloop serve {why}; see .bench/llmloop_serve.log")
    serve = _http_side(session, base, "bench", key)
    await serve(2)  # warm-up (the deployment loads its engine on first use)
    return serve, stop


# -- transformers serve ----------------------------------------------------------------------
async def start_peer(model_dir: Path) -> tuple[Serve | None, Callable[[], Awaitable[None]], str]:
    """Start `transformers serve --continuous-batching`; None with a reason if it cannot."""

    port = _free_port()
    binary = Path(sys.executable).parent / "transformers"
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS), "HF_HUB_OFFLINE": "1"}
    cmd = [str(binary), "serve", str(model_dir), "--continuous-batching", "--device", "cpu"]
    cmd += ["--port", str(port)]
    session, base, stop, why = await _launch(cmd, env, port, "transformers_serve.log")
    if why:
        await stop()
        return None, stop, f"transformers serve {why}"
    serve_peer = _http_side(session, base, str(model_dir))
    await serve_peer(2)  # warm-up (loads the model)
    return serve_peer, stop, ""


# -- ceiling ---------------------------------------------------------------------------------
def start_ceiling(model_dir: Path) -> Serve:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(THREADS)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": PROMPT}], add_generation_prompt=True, tokenize=False
    )

    async def serve_ceiling(clients: int) -> float:
        enc = tokenizer([text] * clients, return_tensors="pt", add_special_tokens=False)
        start = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(
                **enc, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False
            )
        elapsed = time.perf_counter() - start
        return (out.shape[1] - enc["input_ids"].shape[1]) * clients / elapsed

    return serve_ceiling


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round, fewer clients")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rounds = 1 if args.quick else args.rounds
    levels = [1, 16] if args.quick else [1, 16, 64]
    model_dir = build_model()

    serve_llmloop, stop_llmloop = await start_llmloop(model_dir)
    serve_peer, stop_peer, why = await start_peer(model_dir)
    if serve_peer is None:
        print(f"peer unavailable: {why}; comparing llmloop with the ceiling only")
    serve_ceiling = start_ceiling(model_dir)
    await serve_ceiling(2)  # warm-up

    sides: dict[str, Serve] = {"llmloop": serve_llmloop, "ceiling": serve_ceiling}
    if serve_peer is not None:
        sides["transformers_serve"] = serve_peer
    results: dict[tuple[str, int], list[float]] = {}
    for level in levels:
        for _ in range(rounds):
            for name, serve in sides.items():  # alternate, same input, same machine
                results.setdefault((name, level), []).append(await serve(level))
    await stop_llmloop()
    await stop_peer()

    med = {key: statistics.median(values) for key, values in results.items()}
    print(f"{'clients':>8} " + " ".join(f"{name:>20}" for name in sides))
    for level in levels:
        print(f"{level:>8} " + " ".join(f"{med[(n, level)]:>20.1f}" for n in sides))
    llm16 = med[("llmloop", 16)]
    fields = {
        "tokens_per_s": f"{llm16:.1f}",
        "ceiling_fraction": f"{llm16 / med[('ceiling', 16)]:.2f}",
        "target_ratio": "10",
        "target_ceiling_fraction": "0.8",
        "threads": str(THREADS),
    }
    if serve_peer is not None:
        fields = {"ratio": f"{llm16 / med[('transformers_serve', 16)]:.2f}", **fields}
    else:
        fields = {"ratio": f"{llm16 / med[('ceiling', 16)]:.2f}", "peer": "ceiling", **fields}
    for level in levels:
        fields[f"llmloop_{level}"] = f"{med[('llmloop', level)]:.1f}"
        if serve_peer is not None:
            fields[f"transformers_serve_{level}"] = f"{med[('transformers_serve', level)]:.1f}"
        fields[f"ceiling_{level}"] = f"{med[('ceiling', level)]:.1f}"
    print("RESULT " + " ".join(f"{k}={v}" for k, v in fields.items()))


if __name__ == "__main__":
    asyncio.run(main())
