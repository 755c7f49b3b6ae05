"""Exports: merged LoRA, int8 for CPU and GGUF, each with its measured quality delta."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llmloop.errors import NotFoundError
from llmloop.trainers.base import NullTracker, TrainResult
from llmloop.trainers.export import (
    export_gguf,
    load_gguf,
    load_int8,
    merge_adapter,
    quantize_int8,
)
from llmloop.trainers.perplexity import perplexity
from llmloop.trainers.sft import SFTConfig, load_base, run_sft

TEXTS = ["Ticket: my phone is late. What now?", "Your laptop refund is approved."]


@pytest.fixture(scope="module")
def adapter_run(
    base_dir: Path, tickets: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> TrainResult:
    config = SFTConfig(max_steps=6, learning_rate=1e-2, batch_size=8)
    return run_sft(config, base_dir, tickets, None, tmp_path_factory.mktemp("sft"), NullTracker())


@pytest.fixture(scope="module")
def merged_dir(
    adapter_run: TrainResult, base_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    assert adapter_run.adapter_dir is not None
    out = tmp_path_factory.mktemp("merged")
    merge_adapter(adapter_run.adapter_dir, base_dir, out, TEXTS)
    return out


def test_merge_keeps_quality_and_drops_the_adapter(
    merged_dir: Path, base_dir: Path, adapter_run: TrainResult
) -> None:
    assert adapter_run.adapter_dir is not None
    result = merge_adapter(adapter_run.adapter_dir, base_dir, merged_dir, TEXTS)
    assert result.kind == "merged" and abs(result.quality_delta) < 1e-4
    assert not (merged_dir / "adapter_config.json").exists()
    model, _ = load_base(merged_dir)
    assert not any("lora" in name for name, _ in model.named_parameters())
    # The merge carries the fine-tune: it differs from the base.
    base, tokenizer = load_base(base_dir)
    assert perplexity(base, tokenizer, TEXTS) != pytest.approx(result.perplexity_after)


def test_int8_is_smaller_loadable_and_close(merged_dir: Path, tmp_path: Path) -> None:
    import torch

    result = quantize_int8(merged_dir, tmp_path / "int8", TEXTS)
    assert result.kind == "int8" and abs(result.quality_delta) < 0.05
    assert result.size_bytes < sum(p.stat().st_size for p in merged_dir.iterdir())
    model, tokenizer = load_int8(result.path)
    assert any("quantized" in type(m).__module__ for m in model.modules())
    assert perplexity(model, tokenizer, TEXTS) == pytest.approx(result.perplexity_after)
    assert isinstance(model(**tokenizer("hi", return_tensors="pt")).logits, torch.Tensor)


@pytest.mark.parametrize(("dtype", "tolerance"), [("f32", 1e-6), ("f16", 1e-2)])
def test_gguf_round_trips_with_llama_metadata(
    merged_dir: Path, tmp_path: Path, dtype: Any, tolerance: float
) -> None:
    import gguf

    result = export_gguf(merged_dir, tmp_path / "model.gguf", TEXTS, dtype=dtype)
    assert result.kind == "gguf" and abs(result.quality_delta) < tolerance
    reader = gguf.GGUFReader(str(result.path))
    fields = reader.fields
    arch = fields["general.architecture"]
    assert bytes(arch.parts[arch.data[0]]).decode() == "llama"
    assert int(fields["llama.block_count"].parts[-1][0]) == 2
    assert int(fields["llama.attention.head_count"].parts[-1][0]) == 4
    assert len(fields["tokenizer.ggml.tokens"].data) == int(fields["llama.vocab_size"].parts[-1][0])
    assert "tokenizer.chat_template" in fields and "tokenizer.ggml.merges" in fields
    names = {t.name for t in reader.tensors}
    assert {"token_embd.weight", "output_norm.weight", "blk.1.attn_q.weight"} <= names
    assert "output.weight" not in names  # tied embeddings are shared, as llama.cpp expects


def test_gguf_q_weights_are_permuted_for_llama_cpp(merged_dir: Path, tmp_path: Path) -> None:
    import gguf
    import numpy as np

    result = export_gguf(merged_dir, tmp_path / "m.gguf", TEXTS, dtype="f32")
    model, _ = load_base(merged_dir)
    hf_q = model.model.layers[0].self_attn.q_proj.weight.detach().numpy()
    stored = {t.name: np.array(t.data) for t in gguf.GGUFReader(str(result.path)).tensors}
    raw = stored["blk.0.attn_q.weight"].reshape(hf_q.shape)
    assert not np.allclose(raw, hf_q)  # rows reordered for interleaved rotary
    reloaded = load_gguf(result.path, merged_dir)
    assert np.allclose(reloaded.model.layers[0].self_attn.q_proj.weight.detach().numpy(), hf_q)


def test_exports_of_missing_inputs_are_not_found(tmp_path: Path, base_dir: Path) -> None:
    with pytest.raises(NotFoundError, match="adapter"):
        merge_adapter(tmp_path, base_dir, tmp_path / "o", TEXTS)
    with pytest.raises(NotFoundError):
        quantize_int8(tmp_path, tmp_path / "o", TEXTS)
    with pytest.raises(NotFoundError):
        load_int8(tmp_path)
    with pytest.raises(NotFoundError):
        export_gguf(tmp_path, tmp_path / "m.gguf", TEXTS)
