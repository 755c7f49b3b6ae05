"""Trackers, shared trainer settings and the result value."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from llmloop.errors import ConfigError
from llmloop.trainers.base import (
    LoraSettings,
    NullTracker,
    RecordingTracker,
    Tracker,
    TrainerConfig,
    TrainResult,
)


def test_trackers_satisfy_the_protocol() -> None:
    assert isinstance(NullTracker(), Tracker)
    assert isinstance(RecordingTracker(), Tracker)
    assert NullTracker().should_stop() is False


def test_recording_tracker_keeps_calls_and_stops_after_a_step() -> None:
    tracker = RecordingTracker(stop_after_step=3)
    tracker.log_params({"a": 1})
    tracker.log_metrics({"loss": 2.0}, step=1)
    assert not tracker.should_stop()
    tracker.log_metrics({"loss": 1.5, "lr": 0.1}, step=3)
    assert tracker.should_stop()
    assert tracker.params == {"a": 1}
    assert tracker.series("loss") == [(1, 2.0), (3, 1.5)]
    assert tracker.series("lr") == [(3, 0.1)]


def test_config_refuses_unknown_fields_and_bad_values() -> None:
    with pytest.raises(ValidationError):
        TrainerConfig(learnig_rate=0.1)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        TrainerConfig(batch_size=0)
    with pytest.raises(ValidationError):
        LoraSettings(r=0)


def test_patience_without_eval_steps_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="eval_steps"):
        TrainerConfig(early_stopping_patience=2)
    assert TrainerConfig(early_stopping_patience=2, eval_steps=5).early_stopping_patience == 2


def test_full_fine_tuning_is_lora_none() -> None:
    assert TrainerConfig(lora=None).lora is None
    assert TrainerConfig().lora == LoraSettings()


def test_train_result_round_trips_as_json(tmp_path: Path) -> None:
    result = TrainResult(output_dir=tmp_path, tokenizer_dir=tmp_path, metrics={"eval_loss": 1.0})
    assert TrainResult.model_validate_json(result.model_dump_json()) == result


def test_config_modules_do_not_import_torch() -> None:
    code = (
        "import sys; import llmloop.trainers.base, llmloop.trainers.sft, llmloop.trainers.dpo, "
        "llmloop.trainers.hpo, llmloop.trainers.pretrain, llmloop.trainers.export; "
        "print('torch' in sys.modules or 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
