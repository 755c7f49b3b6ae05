"""Gateway overhead: llmloop's OpenAI-compatible gateway vs LiteLLM's proxy over one mock upstream.

Question: how much throughput and latency does the gateway add on top of an upstream, with auth
(an API key), per-key limits (a key with an rpm/tpm budget, store-backed) and tracing (the
batched trace writer) on? Peer: LiteLLM proxy (``litellm[proxy]``, installed by this script into
``.bench/litellm``), one worker, with a master key. Both forward to the same mock OpenAI upstream
(``llmloop.testing.mock_upstream`` over the echo engine) in its own process; an aiohttp load
generator (its own process) drives 32 connections for requests/s and 1 connection for added
latency and added stream TTFT. Peer and llmloop alternate in each round; medians of rounds.

Run: ``.venv/bin/python benchmarks/gateway_overhead.py [--quick] [--limits redis|store|none]
[--no-tracing]`` from the repository root. Targets: ratio (llmloop rps / LiteLLM rps) >= 20, p50
added <= 0.6 ms, TTFT added p99 <= 2 ms, and with ``--no-tracing`` ``tracing_ratio`` = rps with
tracing / rps without >= 0.97. Tracing on and off are two deployments of the same server over
the same upstream, one with ``trace_sample: 0`` (no trace row is built, queued or written), in
ABBA pairs of half-length loads (8 pairs per round): one server process, so the comparison is
not swayed by how two processes happen to run (separate processes of the same build differed
by up to 20% in CPU per request here). ``tracing_cpu_ratio`` = CPU per request (server and
trace writer process) without / with tracing; each load's CPU is read ``SETTLE_S`` after it
ends, once the writer process has stored the load's last batch (read at once, part of a traced
load's writing was charged to the load after it, half the time an untraced one).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
LITELLM_VENV = ROOT / ".bench" / "litellm"
CHAT = {
    "model": "mock",
    "messages": [{"role": "user", "content": "hello from the benchmark"}],
    "max_tokens": 16,
}
UNTRACED = "mock-untraced"
#: Longer than the trace writer's flush interval (200 ms) and the writer process's insert.
SETTLE_S = 0.6

LOADGEN = r"""
import asyncio, json, sys, time
import aiohttp
try:
    import uvloop; uvloop.install()
except ImportError:
    pass

async def main(url, key, conns, seconds, stream, body):
    lat, ttft, errors = [], [], 0
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    payload = json.dumps({**body, "stream": stream}).encode()
    deadline = time.perf_counter() + seconds
    conn = aiohttp.TCPConnector(limit=conns, force_close=False)
    async with aiohttp.ClientSession(connector=conn) as s:
        async def worker():
            nonlocal errors
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                try:
                    async with s.post(url, data=payload, headers=headers) as r:
                        if stream:
                            first = None
                            async for _ in r.content.iter_any():
                                if first is None:
                                    first = time.perf_counter() - t0
                            ttft.append(first or 0.0)
                        else:
                            await r.read()
                        if r.status != 200:
                            errors += 1
                            continue
                except aiohttp.ClientError:
                    errors += 1
                    continue
                lat.append(time.perf_counter() - t0)
        # warm-up
        async with s.post(url, data=payload, headers=headers) as r:
            await r.read()
        start = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(conns)])
        elapsed = time.perf_counter() - start
    def pct(xs, q):
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000 if xs else float("nan")
    print(json.dumps({"rps": len(lat) / elapsed, "n": len(lat), "errors": errors,
                      "p50": pct(lat, 0.5), "p99": pct(lat, 0.99),
                      "ttft_p50": pct(ttft, 0.5), "ttft_p99": pct(ttft, 0.99)}))

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]),
                 sys.argv[5] == "1", json.loads(sys.argv[6])))
"""

MOCK = r"""
import asyncio, sys
try:
    import uvloop; uvloop.install()
except ImportError:
    pass
from llmloop.core.chat import EngineSpec
from llmloop.engines.echo import EchoEngine
from llmloop.testing.mock_upstream import serve_forever
asyncio.run(serve_forever(EchoEngine(EngineSpec(kind="echo", model="mock")), int(sys.argv[1])))
"""


def cpu_seconds(pid: int, children_only: bool = False) -> float:
    """User + system CPU seconds of a process and its children (the trace writer process)."""
    tick = os.sysconf("SC_CLK_TCK")

    def own(p: int) -> float:
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick

    total = 0.0 if children_only else own(pid)
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit():
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    total += own(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return total


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, timeout_s: float = 120.0, headers: dict[str, str] | None = None) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            req = urllib.request.Request(url, headers=headers or {})
            with urllib.request.urlopen(req, timeout=2) as resp:
                if resp.status < 500:
                    return
        except Exception:
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not come up in {timeout_s}s")


def ensure_litellm() -> Path | None:
    """The LiteLLM proxy binary in its own venv, installed on first use; None if impossible."""
    binary = LITELLM_VENV / "bin" / "litellm"
    if binary.exists():
        return binary
    print("installing litellm[proxy] into .bench/litellm ...", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        pip = [str(LITELLM_VENV / "bin" / "pip"), "install", "-q", "litellm[proxy]"]
        subprocess.run(pip, check=True, timeout=1200)
    except (subprocess.SubprocessError, OSError) as exc:
        print(f"LiteLLM could not be installed: {exc}")
        return None
    return binary if binary.exists() else None


def start(
    cmd: list[str], env: dict[str, str] | None = None, log: Path | None = None
) -> subprocess.Popen[bytes]:
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 - lives with the process
    return subprocess.Popen(
        cmd, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def load(
    url: str, key: str, conns: int, seconds: float, stream: bool = False, model: str = "mock"
) -> dict[str, float]:
    out = subprocess.run(
        [
            PY,
            "-c",
            LOADGEN,
            url,
            key,
            str(conns),
            str(seconds),
            "1" if stream else "0",
            json.dumps({**CHAT, "model": model}),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def start_llmloop(
    tmp: Path, upstream: str, limits: str
) -> tuple[subprocess.Popen[bytes], str, str]:
    """The gateway with deployment ``mock`` (traced) and ``mock-untraced`` (trace_sample 0)."""
    target = {"engine": {"kind": "openai", "model": "mock", "options": {"base_url": upstream}}}
    admission = {"max_in_flight": 1024, "max_queue": 4096}
    deployments = tmp / "deployments.yaml"
    deployments.write_text(
        json.dumps(
            {
                "deployments": [
                    {"name": "mock", "targets": [target], "admission": admission},
                    {
                        "name": UNTRACED,
                        "targets": [target],
                        "admission": admission,
                        "trace_sample": 0.0,
                    },
                ]
            }
        )
    )
    env = {
        "LLMLOOP_HOME": str(tmp / "home"),
        "LLMLOOP_DEPLOYMENTS_FILE": str(deployments),
        "LLMLOOP_LOG_LEVEL": "WARNING",
    }
    if limits == "redis":
        env["LLMLOOP_REDIS_URL"] = "redis://127.0.0.1:6379/15"
    key_limits = "{}" if limits == "none" else "{'rpm': 10**9, 'tpm': 10**12}"
    make_key = (
        "from llmloop.config import load_settings; from llmloop.services.container import "
        "Container; from llmloop.core.governance import ApiKeyCreate; from "
        "llmloop.services.actors import local_actor; c = Container(load_settings()); "
        "print(c.keys.create(ApiKeyCreate(name='bench', role='viewer', limits="
        f"{key_limits}), local_actor()).secret)"
    )
    key = subprocess.run(
        [PY, "-c", make_key], env={**os.environ, **env}, check=True, capture_output=True, text=True
    ).stdout.strip()
    port = free_port()
    proc = start(
        [
            PY,
            "-m",
            "uvicorn",
            "llmloop.api.app:create_app",
            "--factory",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
            "--loop",
            "uvloop",
            "--http",
            "httptools",
        ],
        env,
        tmp / "llmloop.log",
    )
    wait_ready(f"http://127.0.0.1:{port}/health")
    return proc, f"http://127.0.0.1:{port}/v1/chat/completions", key


def start_litellm(
    binary: Path, tmp: Path, upstream: str
) -> tuple[subprocess.Popen[bytes], str, str]:
    config = tmp / "litellm.yaml"
    config.write_text(
        json.dumps(
            {
                "model_list": [
                    {
                        "model_name": "mock",
                        "litellm_params": {
                            "model": "openai/mock",
                            "api_base": upstream,
                            "api_key": "unused",
                        },
                    }
                ],
                "general_settings": {"master_key": "sk-bench"},
                "litellm_settings": {"telemetry": False},
            }
        )
    )
    port = free_port()
    proc = start(
        [str(binary), "--config", str(config), "--port", str(port), "--num_workers", "1"],
        {"LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False"},
        tmp / "litellm.log",
    )
    wait_ready(f"http://127.0.0.1:{port}/health/liveliness", timeout_s=240)
    return proc, f"http://127.0.0.1:{port}/v1/chat/completions", "sk-bench"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 round of 3 s per measurement")
    parser.add_argument("--no-peer", action="store_true", help="skip LiteLLM")
    parser.add_argument(
        "--no-tracing",
        action="store_true",
        help="also measure a deployment with trace_sample 0 on the same server: tracing_ratio",
    )
    parser.add_argument(
        "--limits",
        choices=("redis", "store", "none"),
        default="redis",
        help="per-key limit backend of llmloop (default: redis, as in a multi-worker deployment)",
    )
    args = parser.parse_args()
    rounds, secs = (1, 3.0) if args.quick else (3, 8.0)
    tmp = Path(tempfile.mkdtemp(prefix="gw-bench-"))
    up_port = free_port()
    mock = start([PY, "-c", MOCK, str(up_port)], log=tmp / "mock.log")
    upstream = f"http://127.0.0.1:{up_port}/v1"
    procs = [mock]
    try:
        wait_ready(f"{upstream}/models")
        llm_proc, llm_url, llm_key = start_llmloop(tmp, upstream, args.limits)
        procs.append(llm_proc)
        binary = None if args.no_peer else ensure_litellm()
        lite = start_litellm(binary, tmp, upstream) if binary else None
        if lite:
            procs.append(lite[0])
        bare_url = f"{upstream}/chat/completions"
        rows: dict[str, list[float]] = {}

        def add(name: str, value: float) -> None:
            rows.setdefault(name, []).append(value)

        for r in range(rounds):
            print(f"round {r + 1}/{rounds}", flush=True)
            add("bare_rps", load(bare_url, "x", 32, secs)["rps"])
            res = load(llm_url, llm_key, 32, secs)
            add("rps", res["rps"])
            add("errors", res["errors"])
            if lite:
                add("litellm_rps", load(lite[1], lite[2], 32, secs)["rps"])
            if args.no_tracing:  # ABBA pairs: drift on the shared machine hits both sides alike
                for first_quiet in (True, False, False, True) * (1 if args.quick else 2):
                    order = [(UNTRACED, "no_tracing"), ("mock", "tracing")]
                    for model, name in order if first_quiet else order[::-1]:
                        before = cpu_seconds(llm_proc.pid)
                        child = cpu_seconds(llm_proc.pid, children_only=True)
                        res = load(llm_url, llm_key, 32, secs / 2, model=model)
                        # The writer's last batch of this load lands up to a flush later: wait
                        # for it, or its CPU would be charged to the next load (often untraced).
                        time.sleep(SETTLE_S)
                        add(f"rps_{name}", res["rps"])
                        add(f"cpu_us_{name}", (cpu_seconds(llm_proc.pid) - before) / res["n"] * 1e6)
                        child = cpu_seconds(llm_proc.pid, children_only=True) - child
                        add(f"writer_cpu_us_{name}", child / res["n"] * 1e6)
            bare1 = load(bare_url, "x", 1, secs)
            llm1 = load(llm_url, llm_key, 1, secs)
            add("p50_added_ms", llm1["p50"] - bare1["p50"])
            add("p99_added_ms", llm1["p99"] - bare1["p99"])
            bare_s = load(bare_url, "x", 1, secs, stream=True)
            llm_s = load(llm_url, llm_key, 1, secs, stream=True)
            add("ttft_added_p99_ms", llm_s["ttft_p99"] - bare_s["ttft_p99"])
            add("ttft_added_p50_ms", llm_s["ttft_p50"] - bare_s["ttft_p50"])
            add("bare_p50_ms", bare1["p50"])
            if lite:
                lite1 = load(lite[1], lite[2], 1, secs)
                add("litellm_p50_added_ms", lite1["p50"] - bare1["p50"])
        med = {k: statistics.median(v) for k, v in rows.items()}
        for k, v in med.items():
            print(f"{k:>24}: {v:10.2f}")
        lite_rps = med.get("litellm_rps", float("nan"))
        ratio = med["rps"] / lite_rps if lite else float("nan")
        tracing_ratio = sum_ratio = cpu_ratio = float("nan")
        if args.no_tracing:  # each pair: the two deployments back to back, in ABBA order
            pairs = list(zip(rows["rps_tracing"], rows["rps_no_tracing"], strict=True))
            # how far single pairs scatter on this machine: read the ratio with it
            print("tracing/no-tracing by pair: " + " ".join(f"{a / b:.2f}" for a, b in pairs))
            tracing_ratio = statistics.median(a / b for a, b in pairs)
            # All traced loads against all untraced ones, as totals: less swayed by single pairs.
            sum_ratio = sum(a for a, _ in pairs) / sum(b for _, b in pairs)
            # CPU per request of the server (with its trace writer process): steadier than rps.
            cpu_ratio = med["cpu_us_no_tracing"] / med["cpu_us_tracing"]
        print(
            f"RESULT ratio={ratio:.1f} rps={med['rps']:.0f} litellm_rps={lite_rps:.0f} "
            f"bare_rps={med['bare_rps']:.0f} p50_added_ms={med['p50_added_ms']:.3f} "
            f"p99_added_ms={med['p99_added_ms']:.3f} "
            f"ttft_added_p99_ms={med['ttft_added_p99_ms']:.3f} errors={med['errors']:.0f} "
            f"ttft_added_p50_ms={med['ttft_added_p50_ms']:.3f} limits={args.limits} "
            "target_ratio=20 target_p50_added_ms=0.6 target_ttft_added_p99_ms=2"
            + (
                f" tracing_ratio={tracing_ratio:.3f} tracing_sum_ratio={sum_ratio:.3f} "
                f"tracing_cpu_ratio={cpu_ratio:.3f} "
                "target_tracing_ratio=0.97"
                if args.no_tracing
                else ""
            )
        )
    finally:
        for proc in reversed(procs):
            stop(proc)


if __name__ == "__main__":
    main()
