"""Benchmark: profile + exact/near dedup of 1M short records; side by side with ydata-profiling.

Question: how fast and how lean is llmloop's streamed data profile (with exact and near-duplicate
removal), and how does it compare with ydata-profiling (minimal mode) on the same 100,000 rows?

1. Generates a JSONL of short records with planted exact/near duplicates, PII and toxic lines
   (``.bench/data``; deterministic).
2. llmloop on all rows, in a child process: stream -> profile -> recipe [exact_dedup, near_dedup]
   -> canonical JSONL + sha256; wall time and peak RSS.
3. Side by side on the first 100,000 rows, alternating, each in a fresh child process: llmloop's
   profile vs ydata-profiling ``minimal=True`` (installed into ``.bench/ydata``); medians.

Usage: ``.venv/bin/python benchmarks/data_profile.py [--quick] [--rounds N]``. The last line is
``RESULT ratio=<ydata seconds / llmloop seconds> peak_mb=... rows_per_s=...`` (target ratio >= 5,
peak < 2048 MB).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / ".bench"
PEER_VENV = BENCH / "ydata"
PEER_PACKAGES = ["ydata-profiling", "setuptools<81"]

WORDS = [
    "time",
    "person",
    "year",
    "way",
    "day",
    "thing",
    "man",
    "world",
    "life",
    "hand",
    "part",
    "child",
    "eye",
    "woman",
    "place",
    "work",
    "week",
    "case",
    "point",
    "government",
    "company",
    "number",
    "group",
    "problem",
    "fact",
    "be",
    "have",
    "do",
    "say",
    "get",
    "make",
    "go",
    "know",
    "take",
    "see",
    "come",
    "think",
    "look",
    "want",
    "give",
    "use",
    "find",
    "tell",
    "ask",
    "work",
    "seem",
    "feel",
    "try",
    "leave",
    "call",
    "good",
    "new",
    "first",
    "last",
    "long",
    "great",
    "little",
    "own",
    "other",
    "old",
    "right",
    "big",
    "high",
    "different",
    "small",
    "large",
    "next",
    "early",
    "young",
    "important",
    "few",
    "public",
    "bad",
    "same",
    "able",
    "model",
    "data",
    "train",
    "eval",
    "serve",
    "prompt",
    "token",
    "batch",
    "loss",
]
TOXIC = ["you are a fucking idiot", "shut up you stupid bitch", "this is total bullshit moron"]


def generate(path: Path, rows: int) -> None:
    """Short records: 5% exact duplicates, 5% near duplicates, 1% PII, 0.5% toxic."""
    rng = random.Random(42)
    path.parent.mkdir(parents=True, exist_ok=True)
    recent: list[str] = []
    with path.open("w", encoding="utf-8") as out:
        for i in range(rows):
            roll = rng.random()
            if roll < 0.05 and recent:
                text = rng.choice(recent)
            elif roll < 0.10 and recent:
                words = rng.choice(recent).split()
                words[rng.randrange(len(words))] = rng.choice(WORDS)
                text = " ".join(words)
            elif roll < 0.11:
                text = (
                    f"contact me at user{i}@example.com or +1 415-555-{rng.randint(100, 199):04d}"
                )
            elif roll < 0.115:
                text = rng.choice(TOXIC) + f" number {i}"
            else:
                text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 30)))
            recent = [text, *recent][:200]
            out.write(json.dumps({"id": i, "text": text}) + "\n")


def head(source: Path, target: Path, rows: int) -> None:
    with source.open("rb") as src, target.open("wb") as dst:
        for n, line in enumerate(src):
            if n >= rows:
                break
            dst.write(line)


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker_llmloop(path: str, dedup: bool, core: bool = False) -> dict[str, object]:
    import hashlib

    from llmloop.data.loaders import LoadOptions, RowReader
    from llmloop.data.profile import ProfileConfig, Profiler

    start = time.perf_counter()
    # "core": only what ydata-profiling's minimal mode also measures (types, missing values,
    # lengths, duplicates) -- no PII, toxicity, languages or n-grams.
    # The language model's decompressed copy is cached as the service caches it (under home).
    cache = str(BENCH / "cache")
    config = ProfileConfig(pii=False, toxicity=False, language_sample=0, top_ngrams=0)
    profiler = Profiler(config if core else ProfileConfig(cache_dir=cache))
    for batch in RowReader(path, LoadOptions(batch_size=20_000)):
        profiler.update(batch)
    profile = profiler.finish()
    profiled = time.perf_counter() - start
    result: dict[str, object] = {"profile_s": profiled, "rows": profile.row_count}
    result["findings"] = {k: round(f.rate, 4) for k, f in profile.findings.items()}
    result["pii"] = profile.pii_counts
    if dedup:
        # Imported here: the side-by-side profile run should not pay for the recipe machinery.
        from llmloop.data.recipes import RecipeRunner, load_recipe
        from llmloop.data.shapes import canonical_line

        runner = RecipeRunner(
            load_recipe("steps: [exact_dedup, {near_dedup: {threshold: 0.8, num_perm: 64}}]")
        )
        digest = hashlib.sha256()
        out = Path(path).with_suffix(".dedup.jsonl")
        with out.open("wb") as handle:
            for batch in runner.run(RowReader(path, LoadOptions(batch_size=20_000))):
                chunk = b"".join(canonical_line(row) for row in batch)
                digest.update(chunk)
                handle.write(chunk)
        out.unlink()
        result["dedup_s"] = time.perf_counter() - start - profiled
        result["rows_out"] = runner.report.rows_out
        result["removed"] = {s.step: s.rows_removed for s in runner.report.steps}
    result["seconds"] = time.perf_counter() - start
    result["peak_mb"] = peak_mb()
    return result


def worker_ydata(path: str) -> dict[str, object]:
    import warnings

    import pandas as pd
    from ydata_profiling import ProfileReport

    warnings.filterwarnings("ignore")
    start = time.perf_counter()
    frame = pd.read_json(path, lines=True)
    report = ProfileReport(frame, minimal=True, progress_bar=False)
    description = json.loads(report.to_json())
    seconds = time.perf_counter() - start
    table = description.get("table", {})
    alerts = description.get("alerts", [])
    return {
        "seconds": seconds,
        "peak_mb": peak_mb(),
        "rows": table.get("n"),
        "findings": {
            "duplicate_rows": table.get("p_duplicates"),
            "missing_cells": table.get("p_cells_missing"),
            "alerts": alerts[:6],
        },
    }


def run_child(python: Path, mode: str, path: Path, dedup: bool = False) -> dict[str, object]:
    command = [str(python), __file__, "--worker", mode, "--file", str(path)]
    if dedup:
        command.append("--dedup")
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{mode} worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def ensure_peer() -> Path:
    python = PEER_VENV / "bin" / "python"
    probe = (
        subprocess.run(
            [str(python), "-c", "import ydata_profiling"], capture_output=True, check=False
        )
        if python.exists()
        else None
    )
    if probe is None or probe.returncode != 0:
        print("installing ydata-profiling into .bench/ydata (once) ...", flush=True)
        # The interpreter .venv was made from (sys.executable is .venv's own python).
        base = Path(sys.base_prefix) / "bin" / "python3"
        if base.exists():
            subprocess.run([str(base), "-m", "venv", str(PEER_VENV)], check=False)
        if not python.exists():
            subprocess.run(["python3", "-m", "venv", str(PEER_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PEER_PACKAGES], check=True)
    return python


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="100k rows instead of 1M, one peer round"
    )
    parser.add_argument("--rows", type=int, default=None, help="Rows in the large run.")
    parser.add_argument("--peer-rows", type=int, default=100_000, help="Rows in the side-by-side.")
    parser.add_argument("--rounds", type=int, default=None, help="Alternating rounds (median).")
    parser.add_argument(
        "--worker", choices=["llmloop", "llmloop-core", "ydata"], help=argparse.SUPPRESS
    )
    parser.add_argument("--file", help=argparse.SUPPRESS)
    parser.add_argument("--dedup", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker in ("llmloop", "llmloop-core"):
        print(json.dumps(worker_llmloop(args.file, args.dedup, core=args.worker == "llmloop-core")))
        return
    if args.worker == "ydata":
        print(json.dumps(worker_ydata(args.file), default=str))
        return

    rows = args.rows or (100_000 if args.quick else 1_000_000)
    rounds = args.rounds or (1 if args.quick else 3)
    data = BENCH / "data" / f"records_{rows}.jsonl"
    if not data.exists():
        print(f"generating {rows} records -> {data}", flush=True)
        generate(data, rows)
    ours = Path(sys.executable)

    big = run_child(ours, "llmloop", data, dedup=True)
    print(
        f"llmloop profile+dedup of {rows} rows: {big['seconds']:.1f}s "
        f"(profile {big['profile_s']:.1f}s, dedup {big['dedup_s']:.1f}s), "
        f"peak {big['peak_mb']:.0f} MB"
    )
    print(f"  findings: {big['findings']}\n  pii: {big['pii']}\n  dedup removed: {big['removed']}")

    peer_python = ensure_peer()
    small = BENCH / "data" / f"records_head_{args.peer_rows}.jsonl"
    if not small.exists():
        head(data, small, args.peer_rows)
    ours_s: list[float] = []
    core_s: list[float] = []
    peer_s: list[float] = []
    ours_last: dict[str, object] = {}
    peer_last: dict[str, object] = {}
    for round_no in range(rounds):
        ours_last = run_child(ours, "llmloop", small)
        peer_last = run_child(peer_python, "ydata", small)
        core_last = run_child(ours, "llmloop-core", small)
        core_s.append(float(core_last["seconds"]))  # type: ignore[arg-type]
        ours_s.append(float(ours_last["seconds"]))  # type: ignore[arg-type]
        peer_s.append(float(peer_last["seconds"]))  # type: ignore[arg-type]
        print(
            f"round {round_no + 1}: llmloop {ours_s[-1]:.2f}s (core {core_s[-1]:.2f}s), "
            f"ydata-profiling {peer_s[-1]:.2f}s",
            flush=True,
        )
    ratio = statistics.median(peer_s) / statistics.median(ours_s)
    ratio_core = statistics.median(peer_s) / statistics.median(core_s)
    print(
        f"side by side on {peer_last.get('rows')} rows (median of {rounds}): "
        f"llmloop {statistics.median(ours_s):.2f}s vs "
        f"ydata-profiling {statistics.median(peer_s):.2f}s"
    )
    print(
        f"  like for like (no PII/toxicity/languages/n-grams): llmloop core "
        f"{statistics.median(core_s):.2f}s, ratio {ratio_core:.2f}"
    )
    print(f"  llmloop findings: {ours_last['findings']}")
    print(f"  ydata-profiling findings: {peer_last['findings']}")
    rows_per_s = rows / float(big["seconds"])  # type: ignore[arg-type]
    print(
        f"RESULT ratio={ratio:.2f} ratio_core={ratio_core:.2f} target_ratio=5 "
        f"peak_mb={big['peak_mb']:.0f} target_peak_mb=2048 rows_per_s={rows_per_s:.0f} rows={rows}"
    )


if __name__ == "__main__":
    main()
