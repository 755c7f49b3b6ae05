"""Training on GPUs: bf16 and device placement are chosen without being asked, and a LoRA
fine-tune runs data-parallel over every visible GPU (torchrun, one process per device)."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")
if not torch.cuda.is_available():
    pytest.skip("needs a CUDA GPU", allow_module_level=True)

pytestmark = pytest.mark.gpu

ROWS = [
    {"prompt": f"Order {n} is late?", "response": f"Order {n} ships tomorrow."} for n in range(64)
]


def test_sft_picks_bf16_and_the_gpu(tiny_model_dir: Path, tmp_path: Path) -> None:
    from llmloop.trainers.base import RecordingTracker
    from llmloop.trainers.loop import training_arguments
    from llmloop.trainers.sft import SFTConfig, run_sft

    config = SFTConfig(max_steps=4, batch_size=8, resume=False, lora={"r": 4})
    args = training_arguments(config, tmp_path, has_eval=False)
    assert args["use_cpu"] is False and args["bf16"] == torch.cuda.is_bf16_supported()
    result = run_sft(config, tiny_model_dir, ROWS, None, tmp_path / "out", RecordingTracker())
    assert result.steps == 4 and result.adapter_dir is not None
    assert result.peak_memory_mb > 0  # CUDA max allocated


def test_data_parallel_over_every_gpu(tiny_model_dir: Path, tmp_path: Path) -> None:
    from llmloop.trainers.base import RecordingTracker
    from llmloop.trainers.launch import run_launched
    from llmloop.trainers.sft import SFTConfig

    gpus = torch.cuda.device_count()
    config = SFTConfig(max_steps=4, batch_size=8, resume=False, lora={"r": 4}, processes=gpus)
    tracker = RecordingTracker()
    result = run_launched("sft", config, tiny_model_dir, ROWS, None, tmp_path, tracker, gpus)
    assert result.steps == 4 and (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    assert tracker.metrics  # streamed from rank 0
