"""Structured output: what grammar-constrained decoding costs the hf engine.

Question: how many generated tokens per second does the hf engine make on the tiny test model
for CLIENTS concurrent requests (a) unconstrained and (b) with a ``json_schema`` response_format
(xgrammar masks every step), and does (a) stay where it was before structured output existed?

* unconstrained: CLIENTS completions at temperature 0, ``ignore_eos`` so each makes exactly
  NEW_TOKENS tokens.
* json_schema: CLIENTS completions with a small object schema, temperature 0.7 and a seed per
  request; each ends when its JSON is complete (or at NEW_TOKENS), tokens counted from usage.

The peer is the engine itself without a grammar: ``ratio`` is constrained tokens/s over
unconstrained tokens/s (1.0 would mean masking is free). Both run in one engine, alternating,
medians of ROUNDS rounds. Run: ``.venv/bin/python benchmarks/structured_output.py [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
MODEL_DIR = ROOT / ".bench" / "structured_output_model"
CLIENTS = 16
NEW_TOKENS = 64
THREADS = int(os.environ.get("BENCH_THREADS", "1"))
SCHEMA = {
    "type": "object",
    "properties": {
        "colour": {"type": "string", "enum": ["red", "green", "blue"]},
        "count": {"type": "integer", "minimum": 0, "maximum": 999},
        "note": {"type": "string", "maxLength": 40},
    },
    "required": ["colour", "count", "note"],
    "additionalProperties": False,
}


def build_model() -> Path:
    """The tests' tiny Llama (vocab 512, hidden 64, 2 layers), built once and cached."""
    if not (MODEL_DIR / "config.json").exists():
        from llmloop.testing.tiny import build_tiny_llama

        build_tiny_llama(MODEL_DIR)
    return MODEL_DIR


async def run_batch(engine: Any, constrained: bool) -> float:
    """Tokens/s of CLIENTS concurrent requests, constrained or not."""
    from llmloop.core.chat import GenerationRequest, SamplingParams

    def request(i: int) -> GenerationRequest:
        if not constrained:
            sampling = SamplingParams(max_tokens=NEW_TOKENS, temperature=0.0)
            return GenerationRequest(model="m", prompt=f"Hello {i}", sampling=sampling)
        sampling = SamplingParams(max_tokens=NEW_TOKENS, temperature=0.7, seed=i)
        fmt = {"type": "json_schema", "json_schema": {"name": "thing", "schema": SCHEMA}}
        return GenerationRequest(
            model="m", prompt=f"Hello {i}", sampling=sampling, response_format=fmt
        )

    start = time.perf_counter()
    results = await asyncio.gather(*(engine.chat(request(i)) for i in range(CLIENTS)))
    elapsed = time.perf_counter() - start
    return sum(r.usage.completion_tokens for r in results) / elapsed


async def main(rounds: int) -> None:
    from llmloop.core.chat import EngineSpec
    from llmloop.engines.hf import HFEngine

    options = {"num_threads": THREADS, "max_batch_size": CLIENTS, "ignore_eos": True}
    engine = HFEngine(EngineSpec(kind="hf", model=str(build_model()), options=options))
    await engine.start()
    structured = engine.capabilities.structured_output
    try:
        await run_batch(engine, False)  # warm-up: allocator, first compile
        if structured:
            await run_batch(engine, True)
        plain: list[float] = []
        schema: list[float] = []
        for i in range(rounds):
            plain.append(await run_batch(engine, False))
            if structured:
                schema.append(await run_batch(engine, True))
            line = f"round {i + 1}: unconstrained {plain[-1]:.0f} tok/s"
            print(line + (f", json_schema {schema[-1]:.0f} tok/s" if schema else ""))
    finally:
        await engine.aclose()
    plain_med = statistics.median(plain)
    fields = {"unconstrained_tokens_per_s": f"{plain_med:.0f}", "clients": CLIENTS}
    if schema:
        schema_med = statistics.median(schema)
        fields["json_schema_tokens_per_s"] = f"{schema_med:.0f}"
        fields["ratio"] = f"{schema_med / plain_med:.2f}"
    fields["target_ratio"] = "0.5"
    fields["threads"] = THREADS
    print("RESULT " + " ".join(f"{k}={v}" for k, v in fields.items()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds instead of 7")
    args = parser.parse_args()
    asyncio.run(main(3 if args.quick else 7))
