"""Does TPE with pruning find the grid's best LoRA fine-tune for a fraction of the compute?

On a small synthetic support-ticket domain (tickets -> templated answers) and the tiny Llama,
an exhaustive grid over a discretised space (learning rate x LoRA rank x batch size) is the
peer; llmloop's ``run_hpo`` searches the same space with Optuna's TPE sampler and a
successive-halving pruner fed the eval loss at every evaluation. Repeated proposals reuse the
earlier trial (``reuse_repeats``, the default) and are not counted as trials. No compute budget
caps the search unless ``--budget F`` gives one (``max_train_tokens`` = F x the grid's tokens),
so compute_fraction is what the search chose to spend. Both use the same trainer and eval rows.

- quality_gap: (best eval loss found - grid's best eval loss) / grid's best (target <= 0.01);
- compute_fraction: training tokens used by the search / tokens used by the grid (<= 1/3);
- ratio: 1 / compute_fraction when the gap target holds, else 0 (bigger is better).

    .venv/bin/python benchmarks/hpo_pruning.py [--quick] [--seed N] [--budget F]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
warnings.filterwarnings("ignore")

PRODUCTS = ["router", "laptop", "phone", "printer", "camera", "monitor", "tablet", "watch"]
ANSWERS = {
    "late": "Sorry your {p} is late. It ships within two days and we will email the tracking.",
    "broken": "Sorry your {p} arrived broken. Reply with a photo and we will send a new one.",
    "refund": "Your {p} refund is approved. The money is back on your card in five days.",
    "login": "To unlock your {p} account, open settings, choose reset and follow the email.",
}


def ticket_rows(n: int, offset: int = 0) -> list[dict[str, str]]:
    """Support tickets with templated answers."""
    issues = sorted(ANSWERS)
    rows = []
    for i in range(offset, offset + n):
        product, issue = PRODUCTS[(i * 7) % len(PRODUCTS)], issues[i % len(issues)]
        rows.append(
            {
                "prompt": f"Ticket {i}: my {product} is {issue}. What now?",
                "response": ANSWERS[issue].format(p=product),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller grid and fewer trials")
    parser.add_argument("--seed", type=int, default=0, help="the search's sampler seed")
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="cap the search at this fraction of the grid's training tokens",
    )
    opts = parser.parse_args()

    from datasets.utils.logging import disable_progress_bar

    from llmloop.testing.tiny import build_tiny_llama
    from llmloop.trainers.base import NullTracker
    from llmloop.trainers.hpo import HPOConfig, SearchSpace, run_hpo
    from llmloop.trainers.sft import SFTConfig

    disable_progress_bar()
    if opts.quick:
        space = SearchSpace(learning_rate=[1e-4, 1e-3, 1e-2], lora_r=[4, 16], batch_size=[4, 8])
        trials, steps, eval_every = 6, 12, 3
    else:
        space = SearchSpace(
            learning_rate=[1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2],
            lora_r=[2, 8, 32],
            batch_size=[4, 8],
        )
        trials, steps, eval_every = 16, 16, 4
    base_config = SFTConfig(
        max_steps=steps,
        eval_steps=eval_every,
        resume=False,
        lora={"r": 8, "alpha": 16, "target_modules": "all-linear"},
    )
    train, evals = ticket_rows(128), ticket_rows(16, offset=1000)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base = build_tiny_llama(root / "base", texts=[r["prompt"] + r["response"] for r in train])
        started = time.perf_counter()
        grid = run_hpo(
            HPOConfig(sampler="grid", pruner="none"),
            space,
            base_config,
            base,
            train,
            evals,
            root / "grid",
            NullTracker(),
        )
        grid_s = time.perf_counter() - started
        grid_tokens = sum(t.train_tokens for t in grid.trials)
        started = time.perf_counter()
        search = HPOConfig(
            n_trials=trials,
            n_startup_trials=3,
            pruner="successive_halving",
            pruner_warmup_steps=eval_every,
            max_train_tokens=int(grid_tokens * opts.budget) if opts.budget else None,
            seed=opts.seed,
        )
        found = run_hpo(search, space, base_config, base, train, evals, root / "tpe", NullTracker())
        search_s = time.perf_counter() - started
    search_tokens = sum(t.train_tokens for t in found.trials)
    gap = (found.best_values[0] - grid.best_values[0]) / grid.best_values[0]
    fraction = search_tokens / grid_tokens
    trained = [t for t in found.trials if t.repeat_of is None]
    repeats = len(found.trials) - len(trained)
    pruned = sum(t.state == "PRUNED" for t in trained)
    print(
        f"grid: {len(grid.trials)} trials, best {grid.best_values[0]:.4f} {grid.best_params}, "
        f"{grid.total_steps} steps, {grid_s:.0f}s"
    )
    print(
        f"tpe+halving: {len(trained)} trials ({pruned} pruned, {repeats} repeats reused), best "
        f"{found.best_values[0]:.4f} {found.best_params}, {found.total_steps} steps, "
        f"{search_s:.0f}s"
    )
    ratio = 1 / fraction if gap <= 0.01 else 0.0
    print(
        f"RESULT quality_gap={gap:.4f} compute_fraction={fraction:.3f} trials={len(trained)} "
        f"grid_size={len(grid.trials)} pruned={pruned} repeats={repeats} seed={opts.seed} "
        f"budget={opts.budget or 'none'} "
        f"step_fraction={found.total_steps / grid.total_steps:.3f} "
        f"time_fraction={search_s / grid_s:.3f} ratio={ratio:.2f} "
        f"target_gap=0.01 target_fraction=0.333"
    )


if __name__ == "__main__":
    main()
