"""Does llmloop's fine-tuning wrapper cost training speed? ``run_sft`` vs a bare TRL SFTTrainer.

Both train the same tiny Llama with the same LoRA settings, rows, steps and TRL arguments; the
llmloop side adds its row checks, its tracking callback (streaming loss, tokens/s, memory and
cost to an in-memory tracker every step) and its checkpoint/resume logic. Training throughput
is non-padding tokens over the CPU seconds this process spent between train begin and train end,
measured by the same callback on both sides (CPU time, because wall time on these shared
machines swings several-fold with other tenants' load; wall-clock figures are printed too).
Rounds alternate which side goes first; medians are reported. Target: ratio >= 0.97.

    .venv/bin/python benchmarks/finetune_overhead.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
warnings.filterwarnings("ignore")

PRODUCTS = ["router", "laptop", "phone", "printer", "camera", "monitor", "tablet", "watch"]
ANSWERS = {
    "late": "Sorry your {p} is late. It ships within two days and we will email the tracking.",
    "broken": "Sorry your {p} arrived broken. Reply with a photo and we will send a new one.",
    "refund": "Your {p} refund is approved. The money is back on your card in five days.",
}


def ticket_rows(n: int) -> list[dict[str, str]]:
    """Support tickets with templated answers."""
    rows = []
    for i in range(n):
        product, issue = PRODUCTS[i % len(PRODUCTS)], sorted(ANSWERS)[i % 3]
        rows.append(
            {
                "prompt": f"Ticket {i}: my {product} is {issue}. What now?",
                "response": ANSWERS[issue].format(p=product),
            }
        )
    return rows


def cpu_clock() -> Any:
    """A callback timing training in CPU seconds of this process (same on both sides)."""
    from transformers import TrainerCallback

    class CpuClock(TrainerCallback):
        def __init__(self) -> None:
            self.started = self.ended = self.wall_started = self.wall_ended = 0.0

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.started, self.wall_started = time.process_time(), time.perf_counter()

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.ended, self.wall_ended = time.process_time(), time.perf_counter()

        def rates(self, tokens: int) -> tuple[float, float]:
            return tokens / (self.ended - self.started), tokens / (
                self.wall_ended - self.wall_started
            )

    return CpuClock()


def run_llmloop(
    config: Any, base: Path, rows: list[dict[str, str]], out: Path
) -> tuple[float, float]:
    from llmloop.trainers.base import RecordingTracker
    from llmloop.trainers.sft import run_sft

    clock = cpu_clock()
    result = run_sft(config, base, rows, None, out, RecordingTracker(), [clock])
    return clock.rates(result.train_tokens)


def run_trl(config: Any, base: Path, rows: list[dict[str, str]], out: Path) -> tuple[float, float]:
    """The peer: the same TRL arguments, model, LoRA and records, with no llmloop code around."""
    import trl
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback

    from llmloop.trainers.loop import training_arguments

    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base)
    records = [
        {
            "prompt": [{"role": "user", "content": r["prompt"]}],
            "completion": [{"role": "assistant", "content": r["response"]}],
        }
        for r in rows
    ]
    args = trl.SFTConfig(
        **training_arguments(config, out, has_eval=False),
        max_length=config.max_length,
        packing=False,
        completion_only_loss=True,
    )
    lora = config.lora
    clock = cpu_clock()
    trainer = trl.SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(records),
        processing_class=tokenizer,
        peft_config=LoraConfig(
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=lora.target_modules,
            task_type="CAUSAL_LM",
        ),
        callbacks=[clock],
    )
    trainer.remove_callback(PrinterCallback)  # as llmloop does: no per-step printing
    trainer.train()
    trainer.model.save_pretrained(out / "adapter")
    return clock.rates(trainer.state.num_input_tokens_seen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 10 steps")
    opts = parser.parse_args()
    rounds, steps = (2, 10) if opts.quick else (6, 40)

    import torch
    from datasets.utils.logging import disable_progress_bar

    from llmloop.testing.tiny import build_tiny_llama
    from llmloop.trainers.sft import SFTConfig

    disable_progress_bar()
    torch.set_num_threads(1)  # one thread each: less spin-wait noise from a shared CPU
    rows = ticket_rows(256)
    config = SFTConfig(max_steps=steps, batch_size=8, learning_rate=5e-3, resume=False)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base = build_tiny_llama(
            root / "base",
            texts=[r["prompt"] + r["response"] for r in rows],
            hidden_size=128,
            layers=4,
        )
        run_trl(config.model_copy(update={"max_steps": 2}), base, rows, root / "warmup")
        ours, peer = [], []
        for n in range(rounds):
            # Alternate which side goes first so drift on the shared machine hits both alike.
            if n % 2 == 0:
                peer.append(run_trl(config, base, rows, root / f"trl-{n}"))
                ours.append(run_llmloop(config, base, rows, root / f"llmloop-{n}"))
            else:
                ours.append(run_llmloop(config, base, rows, root / f"llmloop-{n}"))
                peer.append(run_trl(config, base, rows, root / f"trl-{n}"))
            print(
                f"round {n}: trl {peer[-1][0]:.0f} tok/cpu-s ({peer[-1][1]:.0f} tok/s wall)  "
                f"llmloop {ours[-1][0]:.0f} tok/cpu-s ({ours[-1][1]:.0f} tok/s wall)",
                flush=True,
            )
    ours_median = statistics.median(r[0] for r in ours)
    peer_median = statistics.median(r[0] for r in peer)
    wall_ratio = statistics.median(o[1] / p[1] for o, p in zip(ours, peer, strict=True))
    print(
        f"RESULT ratio={ours_median / peer_median:.3f} llmloop_tokens_per_s={ours_median:.0f} "
        f"trl_tokens_per_s={peer_median:.0f} wall_ratio_median={wall_ratio:.3f} "
        f"rounds={rounds} steps={steps} unit=tokens_per_cpu_second target=0.97"
    )


if __name__ == "__main__":
    main()
