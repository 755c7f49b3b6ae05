"""Structured output: what grammar-constrained decoding costs the hf engine.

Question: how many generated tokens per second does the hf engine make on the tiny test model
for CLIENTS concurrent requests (a) unconstrained and (b) with a ``json_schema`` response_format
(xgrammar masks every step), and does (a) stay where it was before structured output existed?

* unconstrained: CLIENTS completions at temperature 0, ``ignore_eos`` so each makes exactly
  NEW_TOKENS tokens.
* json_schema: CLIENTS completions with a small object schema, temperature 0.7 and a seed per
  request; each ends when its JSON is complete (or at NEW_TOKENS), tokens counted from usage.

* peer: plain transformers with xgrammar's own Hugging Face integration, the way its docs show:
  ``model.generate`` on one static batch of the same CLIENTS prompts with
  ``xgrammar.contrib.hf.LogitsProcessor`` over the same compiled schema, same sampling and
  NEW_TOKENS cap; tokens counted up to each row's EOS.

``ratio`` is llmloop's json_schema tokens per wall second over the peer's (bigger is better);
``masking_ratio`` is constrained over unconstrained tokens per CPU second inside llmloop (1.0
would mean masking is free; CPU seconds drift less than wall seconds on a shared machine). All
run in one process, alternating round by round; medians are quoted. For (a) before/after a
change, run ``--plain-only`` on both checkouts, alternating.
Run: ``.venv/bin/python benchmarks/structured_output.py [--quick] [--plain-only]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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
BATCHES = 4  # batches of CLIENTS requests per measurement (one batch is a fraction of a second)
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


async def run_batch(engine: Any, constrained: bool) -> tuple[float, float]:
    """Tokens per wall second and per CPU second of BATCHES x CLIENTS concurrent requests."""
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

    tokens = 0
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(BATCHES):
        results = await asyncio.gather(*(engine.chat(request(i)) for i in range(CLIENTS)))
        tokens += sum(r.usage.completion_tokens for r in results)
    return tokens / (time.perf_counter() - start), tokens / (time.process_time() - cpu_start)


class Peer:
    """transformers ``generate`` + xgrammar's LogitsProcessor on one static batch."""

    def __init__(self, model_dir: Path) -> None:
        import torch
        import xgrammar as xgr
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
        vocab = int(self.model.get_output_embeddings().weight.shape[0])
        info = xgr.TokenizerInfo.from_huggingface(self.tokenizer, vocab_size=vocab)
        self.grammar = xgr.GrammarCompiler(info).compile_json_schema(
            json.dumps(SCHEMA), any_whitespace=False
        )

    def run_batch(self) -> float:
        """Generated tokens per wall second of BATCHES static batches of CLIENTS rows."""
        from xgrammar.contrib.hf import LogitsProcessor

        prompts = [f"Hello {i}" for i in range(CLIENTS)]  # the prompts llmloop gets
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True)
        eos = self.tokenizer.eos_token_id
        tokens, start = 0, time.perf_counter()
        for b in range(BATCHES):
            self.torch.manual_seed(b)
            with self.torch.inference_mode():
                out = self.model.generate(
                    **enc, max_new_tokens=NEW_TOKENS, do_sample=True, temperature=0.7,
                    logits_processor=[LogitsProcessor([self.grammar] * CLIENTS)],
                    pad_token_id=self.tokenizer.pad_token_id,
                )  # fmt: skip
            for row in out[:, enc["input_ids"].shape[1] :].tolist():
                tokens += row.index(eos) if eos in row else len(row)
        return tokens / (time.perf_counter() - start)


async def main(rounds: int, plain_only: bool) -> None:
    from llmloop.core.chat import EngineSpec
    from llmloop.engines.hf import HFEngine

    options = {"num_threads": THREADS, "max_batch_size": CLIENTS, "ignore_eos": True}
    engine = HFEngine(EngineSpec(kind="hf", model=str(build_model()), options=options))
    await engine.start()
    structured = engine.capabilities.structured_output and not plain_only
    plain: list[tuple[float, float]] = []
    schema: list[tuple[float, float]] = []
    peer_runs: list[float] = []
    peer = Peer(build_model()) if structured else None
    try:
        await run_batch(engine, False)  # warm-up: allocator, first compile
        if structured:
            await run_batch(engine, True)
        for i in range(rounds):
            plain.append(await run_batch(engine, False))
            wall, cpu = plain[-1]
            line = f"round {i + 1}: unconstrained {wall:.0f} tok/s ({cpu:.0f}/cpu-s)"
            if structured:
                schema.append(await run_batch(engine, True))
                line += f", json_schema {schema[-1][0]:.0f} tok/s ({schema[-1][1]:.0f}/cpu-s)"
            if peer is not None:
                peer_runs.append(peer.run_batch())
                line += f", peer json_schema {peer_runs[-1]:.0f} tok/s"
            print(line, flush=True)
    finally:
        await engine.aclose()
    fields: dict[str, object] = {"clients": CLIENTS, "threads": THREADS}
    fields["unconstrained_tokens_per_s"] = f"{statistics.median(p[0] for p in plain):.0f}"
    fields["unconstrained_tokens_per_cpu_s"] = f"{statistics.median(p[1] for p in plain):.0f}"
    if schema:
        fields["json_schema_tokens_per_s"] = f"{statistics.median(s[0] for s in schema):.0f}"
        fields["json_schema_tokens_per_cpu_s"] = f"{statistics.median(s[1] for s in schema):.0f}"
        fields["peer_json_schema_tokens_per_s"] = f"{statistics.median(peer_runs):.0f}"
        ratios = [s[0] / q for s, q in zip(schema, peer_runs, strict=True)]
        fields["ratio"] = f"{statistics.median(ratios):.2f}"
        masking = [s[1] / p[1] for s, p in zip(schema, plain, strict=True)]
        fields["masking_ratio"] = f"{statistics.median(masking):.2f}"
        fields["target_ratio"] = "1.0"
    print("RESULT " + " ".join(f"{k}={v}" for k, v in fields.items()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds instead of 7")
    parser.add_argument("--plain-only", action="store_true", help="unconstrained requests only")
    args = parser.parse_args()
    asyncio.run(main(3 if args.quick else 7, args.plain_only))
