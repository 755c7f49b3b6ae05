"""Training on several devices: the same ``run_sft`` / ``run_dpo`` in N processes.

``run_launched`` writes the job (method, configuration, rows, directories) to the output
directory and starts it under ``torchrun --standalone --nproc_per_node N`` (one process per GPU,
or gloo processes on CPU), or under ``accelerate launch --config_file F`` when an accelerate
configuration is given (several nodes, FSDP, DeepSpeed; ``examples/accelerate/``). Every rank
runs :func:`main`: transformers' Trainer wraps the model in DistributedDataParallel and splits
the batches; rank 0 alone writes the outputs, streams metrics to ``metrics.jsonl`` and writes
``result.json``. The caller's process follows ``metrics.jsonl`` into its tracker while the job
runs, and a ``stop`` file it creates when the tracker asks to stop makes every rank stop at the
next step. Nothing here touches the registry: the training service registers the result.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llmloop.errors import LlmloopError
from llmloop.trainers.base import Tracker, TrainerConfig, TrainResult

_POLL_S = 0.5


class _FileTracker:
    """Rank 0's tracker: metrics as JSON lines for the launching process; stop on a file."""

    def __init__(self, job: Path, write: bool) -> None:
        self.metrics = job / "metrics.jsonl"
        self.stop = job / "stop"
        self.write = write

    def log_params(self, params: dict[str, Any]) -> None:
        pass  # the launching process logged them

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        if self.write:
            with self.metrics.open("a") as out:
                out.write(json.dumps({"step": step, "metrics": metrics}) + "\n")

    def should_stop(self) -> bool:
        return self.stop.exists()


def _write_rows(path: Path, rows: Sequence[dict[str, Any]] | None) -> str | None:
    if rows is None:
        return None
    with path.open("w") as out:
        for row in rows:
            out.write(json.dumps(row) + "\n")
    return str(path)


def _launcher(processes: int, accelerate_config: str | None) -> list[str]:
    if accelerate_config:
        if not Path(accelerate_config).is_file():
            raise LlmloopError(f"accelerate config '{accelerate_config}' is not a file")
        return [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--config_file",
            accelerate_config,
        ]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={processes}",
    ]


def run_launched(
    method: str,
    config: TrainerConfig,
    base_model_dir: str | Path,
    train_rows: Sequence[dict[str, Any]],
    eval_rows: Sequence[dict[str, Any]] | None,
    out_dir: str | Path,
    tracker: Tracker,
    processes: int,
    accelerate_config: str | None = None,
) -> TrainResult:
    """Run ``method`` ('sft' or 'dpo') in ``processes`` processes; the result of rank 0."""
    if method not in ("sft", "dpo"):
        raise LlmloopError(f"method must be 'sft' or 'dpo', not {method!r}")
    out = Path(out_dir)
    job = out / "launch"
    job.mkdir(parents=True, exist_ok=True)
    for stale in ("metrics.jsonl", "stop", "result.json"):
        (job / stale).unlink(missing_ok=True)
    spec: dict[str, Any] = {
        "method": method,
        "config": config.model_dump(mode="json"),
        "base_model_dir": str(base_model_dir),
        "out_dir": str(out),
        "train": _write_rows(job / "train.jsonl", train_rows),
        "eval": _write_rows(job / "eval.jsonl", eval_rows),
    }
    (job / "job.json").write_text(json.dumps(spec))
    tracker.log_params({**spec["config"], "trainer": method, "processes": processes})
    cmd = [*_launcher(processes, accelerate_config), "-m", __name__, str(job / "job.json")]
    log_path = job / "launch.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        offset = 0
        while True:
            done = proc.poll() is not None
            offset = _forward_metrics(job / "metrics.jsonl", offset, tracker)
            if done:
                break
            if tracker.should_stop():
                (job / "stop").touch()
            time.sleep(_POLL_S)
    result = job / "result.json"
    if proc.returncode != 0 or not result.is_file():
        tail = log_path.read_text(errors="replace").strip().splitlines()[-15:]
        raise LlmloopError(
            f"distributed training failed (exit {proc.returncode}); last lines of {log_path}:\n"
            + "\n".join(tail)
        )
    return TrainResult.model_validate_json(result.read_text())


def _forward_metrics(path: Path, offset: int, tracker: Tracker) -> int:
    """Pass the complete lines of ``path`` after byte ``offset`` to ``tracker``; return the
    offset after them (a line still being written waits for the next call)."""
    if not path.is_file():
        return offset
    with path.open("rb") as file:
        file.seek(offset)
        new = file.read()
    complete = new[: new.rfind(b"\n") + 1]
    for line in complete.splitlines():
        entry = json.loads(line)
        tracker.log_metrics(entry["metrics"], entry["step"])
    return offset + len(complete)


def _read_rows(path: str | None) -> list[dict[str, Any]] | None:
    if path is None:
        return None
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line]


def main(job_file: str) -> int:
    """One rank of a launched job."""
    job = Path(job_file).parent
    spec = json.loads(Path(job_file).read_text())
    rank = int(os.environ.get("RANK", "0"))
    tracker: Tracker = _FileTracker(job, write=rank == 0)
    config_cls: Any
    if spec["method"] == "sft":
        from llmloop.trainers.sft import SFTConfig as config_cls
        from llmloop.trainers.sft import run_sft as train
    else:
        from llmloop.trainers.dpo import DPOConfig as config_cls
        from llmloop.trainers.dpo import run_dpo as train  # type: ignore[assignment]
    result = train(
        config_cls.model_validate(spec["config"]),
        spec["base_model_dir"],
        _read_rows(spec["train"]) or [],
        _read_rows(spec["eval"]),
        spec["out_dir"],
        tracker,
    )
    if rank == 0:
        (job / "result.json").write_text(result.model_dump_json())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
