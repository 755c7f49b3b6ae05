"""A training process killed with SIGKILL midway resumes from its last complete checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from llmloop.trainers.base import RecordingTracker
from llmloop.trainers.loop import latest_checkpoint
from llmloop.trainers.sft import SFTConfig, run_sft

CONFIG = SFTConfig(max_steps=20, save_steps=4, save_total_limit=3, batch_size=4, seed=3)

CHILD = """
import json, sys, time
from transformers import TrainerCallback
from llmloop.trainers.base import NullTracker
from llmloop.trainers.sft import SFTConfig, run_sft

class Slow(TrainerCallback):  # give the parent time to kill us midway
    def on_step_end(self, args, state, control, **kw):
        time.sleep(0.1)

base, out, rows, config = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
run_sft(SFTConfig.model_validate_json(config), base, json.loads(open(rows).read()), None, out,
        NullTracker(), [Slow()])
"""


def test_killed_run_resumes_from_latest_checkpoint(
    base_dir: Path, tickets: list[dict[str, Any]], tmp_path: Path
) -> None:
    rows_file, out = tmp_path / "rows.json", tmp_path / "run"
    rows_file.write_text(json.dumps(tickets))
    args = [str(base_dir), str(out), str(rows_file), CONFIG.model_dump_json()]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and child.poll() is None:
            checkpoint = latest_checkpoint(out)
            if checkpoint is not None and int(checkpoint.name.split("-")[1]) >= 8:
                break
            time.sleep(0.05)
        assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL
    killed_at = latest_checkpoint(out)
    assert killed_at is not None
    assert not (out / "adapter").exists()  # it never finished

    tracker = RecordingTracker()
    result = run_sft(CONFIG, base_dir, tickets, None, out, tracker)
    assert result.resumed_from == killed_at
    assert result.steps == 20
    resumed_step = int(killed_at.name.split("-")[1])
    first_logged = tracker.series("loss")[0][0]
    assert first_logged == resumed_step + 1  # it did not start over
    assert (result.adapter_dir / "adapter_model.safetensors").exists()  # type: ignore[operator]


def test_partial_checkpoint_is_skipped(tmp_path: Path) -> None:
    complete, partial = tmp_path / "checkpoint-4", tmp_path / "checkpoint-8"
    complete.mkdir()
    (complete / "trainer_state.json").write_text("{}")
    (complete / "adapter_model.safetensors").write_bytes(b"x")
    partial.mkdir()
    (partial / "adapter_model.safetensors").write_bytes(b"x")  # killed before its state
    (tmp_path / "checkpoint-x").mkdir()
    assert latest_checkpoint(tmp_path) == complete
    assert latest_checkpoint(tmp_path / "missing") is None


def test_resume_off_starts_over(
    base_dir: Path, tickets: list[dict[str, Any]], tmp_path: Path
) -> None:
    config = SFTConfig(max_steps=2, save_steps=1, batch_size=4)
    run_sft(config, base_dir, tickets, None, tmp_path, RecordingTracker())
    again = run_sft(
        config.model_copy(update={"resume": False}),
        base_dir,
        tickets,
        None,
        tmp_path,
        RecordingTracker(),
    )
    assert again.resumed_from is None and again.steps == 2
