"""Exporting trained weights for serving: merge LoRA, int8 for CPU, GGUF for llama.cpp.

Every export measures what it costs in quality: the perplexity of the source and of the export
on the caller's eval texts (``perplexity.py``), returned in an :class:`ExportResult`. The GGUF
writer covers the Llama architecture (tensor names, the Q/K rotary permutation llama.cpp
expects, hyperparameters and the byte-level BPE tokenizer with its chat template); the quality of
a GGUF file is measured by reading it back with ``gguf.GGUFReader`` into the HF model, so the
file itself is what is checked. This module does not upload or register anything and does not
quantise GGUF tensors below f16.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from llmloop.errors import InvalidInputError, NotFoundError
from llmloop.trainers.perplexity import perplexity

__all__ = [
    "ExportResult",
    "export_gguf",
    "load_gguf",
    "load_int8",
    "merge_adapter",
    "merge_lora",
    "quantize_int8",
]

INT8_MARKER = "llmloop_int8.json"
INT8_WEIGHTS = "int8_state.pt"


class ExportResult(BaseModel):
    """Where an export was written and what it did to perplexity on the eval texts."""

    model_config = ConfigDict(extra="forbid")

    path: Path = Field(description="The exported directory or file.")
    kind: Literal["merged", "int8", "gguf"] = Field(description="What was exported.")
    size_bytes: int = Field(ge=0, description="Bytes on disk of the export.")
    perplexity_before: float = Field(description="Perplexity of the source model.")
    perplexity_after: float = Field(description="Perplexity of the exported model.")
    quality_delta: float = Field(
        description="Relative perplexity change, (after - before) / before; lower is better."
    )


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _result(path: Path, kind: str, before: float, after: float) -> ExportResult:
    return ExportResult(
        path=path,
        kind=kind,  # type: ignore[arg-type]
        size_bytes=_size(path),
        perplexity_before=before,
        perplexity_after=after,
        quality_delta=(after - before) / before,
    )


def _load(model_dir: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (model_dir / "config.json").is_file():
        raise NotFoundError(f"no model (config.json) in {model_dir}")
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    return AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True), tokenizer


def merge_lora(adapter_dir: str | Path, base_model_dir: str | Path, out_dir: str | Path) -> Path:
    """Fold a LoRA adapter into its base and save standalone weights and tokenizer in ``out_dir``
    (no quality measurement: what training from an adapter's version starts from).

    The tokenizer is the adapter's own when it was saved with one (a fine-tune may have set the
    chat template), else the base's."""
    from peft import PeftModel
    from transformers import AutoTokenizer

    adapter, out = Path(adapter_dir), Path(out_dir)
    if not (adapter / "adapter_config.json").is_file():
        raise NotFoundError(f"no LoRA adapter (adapter_config.json) in {adapter}")
    base, tokenizer = _load(Path(base_model_dir))
    if (adapter / "tokenizer_config.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(adapter, local_files_only=True)
    with warnings.catch_warnings():  # peft reads a renamed property: not the user's to fix
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing`", FutureWarning)
        merged = PeftModel.from_pretrained(base, adapter).merge_and_unload()
    merged.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def merge_adapter(
    adapter_dir: str | Path,
    base_model_dir: str | Path,
    out_dir: str | Path,
    eval_texts: Sequence[str],
) -> ExportResult:
    """Fold a LoRA adapter into its base (``merge_and_unload``) and save standalone weights."""
    from peft import PeftModel

    adapter, out = Path(adapter_dir), Path(out_dir)
    if not (adapter / "adapter_config.json").is_file():
        raise NotFoundError(f"no LoRA adapter (adapter_config.json) in {adapter}")
    base, tokenizer = _load(Path(base_model_dir))
    peft_model = PeftModel.from_pretrained(base, adapter)
    before = perplexity(peft_model, tokenizer, eval_texts)
    merged = peft_model.merge_and_unload()
    merged.save_pretrained(out)
    tokenizer.save_pretrained(out)
    reloaded, _ = _load(out)
    return _result(out, "merged", before, perplexity(reloaded, tokenizer, eval_texts))


def _quantize_dynamic(model: Any) -> Any:
    import torch
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():  # deprecated in favour of torchao, still the CPU-only path
        warnings.simplefilter("ignore")
        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def quantize_int8(
    model_dir: str | Path, out_dir: str | Path, eval_texts: Sequence[str]
) -> ExportResult:
    """Dynamic int8 quantisation of every Linear layer for CPU serving; load with ``load_int8``."""
    import torch

    source, out = Path(model_dir), Path(out_dir)
    model, tokenizer = _load(source)
    before = perplexity(model, tokenizer, eval_texts)
    quantized = _quantize_dynamic(model)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(quantized.state_dict(), out / INT8_WEIGHTS)
    model.config.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / INT8_MARKER).write_text(json.dumps({"scheme": "dynamic", "dtype": "qint8"}))
    reloaded, _ = load_int8(out)
    return _result(out, "int8", before, perplexity(reloaded, tokenizer, eval_texts))


def load_int8(model_dir: str | Path) -> tuple[Any, Any]:
    """Load a model saved by :func:`quantize_int8` (rebuilt, quantised, then filled)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    path = Path(model_dir)
    if not (path / INT8_MARKER).is_file():
        raise NotFoundError(f"no int8 export ({INT8_MARKER}) in {path}")
    config = AutoConfig.from_pretrained(path, local_files_only=True)
    model = _quantize_dynamic(AutoModelForCausalLM.from_config(config))
    model.load_state_dict(torch.load(path / INT8_WEIGHTS, weights_only=False), strict=False)
    model.eval()
    return model, AutoTokenizer.from_pretrained(path, local_files_only=True)


# HF Llama parameter names -> llama.cpp GGUF tensor names (per block, then global).
_BLOCK_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
_GLOBAL_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}


def _gguf_name(hf_name: str) -> str:
    if hf_name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[hf_name]
    parts = hf_name.split(".")
    if parts[:2] != ["model", "layers"] or ".".join(parts[3:]) not in _BLOCK_NAMES:
        raise InvalidInputError(f"tensor {hf_name} has no Llama GGUF name")
    return f"blk.{parts[2]}.{_BLOCK_NAMES['.'.join(parts[3:])]}"


def _rope_permute(weights: Any, heads: int, inverse: bool = False) -> Any:
    """HF's rotate-half Q/K layout <-> llama.cpp's interleaved pairs (as its converter does)."""
    rows = weights.shape[0]
    if inverse:
        split = weights.reshape(heads, rows // heads // 2, 2, *weights.shape[1:])
    else:
        split = weights.reshape(heads, 2, rows // heads // 2, *weights.shape[1:])
    return split.swapaxes(1, 2).reshape(weights.shape)


def _write_tokenizer(writer: Any, tokenizer: Any) -> None:
    backend = json.loads(tokenizer.backend_tokenizer.to_str())
    if backend["model"]["type"] != "BPE":
        raise InvalidInputError("GGUF export supports byte-level BPE tokenizers only")
    tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    special = set(tokenizer.all_special_ids)
    merges = [m if isinstance(m, str) else " ".join(m) for m in backend["model"]["merges"]]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([3 if i in special else 1 for i in range(len(tokens))])
    writer.add_token_merges(merges)
    for setter, token_id in (
        (writer.add_bos_token_id, tokenizer.bos_token_id),
        (writer.add_eos_token_id, tokenizer.eos_token_id),
        (writer.add_pad_token_id, tokenizer.pad_token_id),
    ):
        if token_id is not None:
            setter(token_id)
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)


def export_gguf(
    model_dir: str | Path,
    out_path: str | Path,
    eval_texts: Sequence[str],
    dtype: Literal["f32", "f16"] = "f16",
) -> ExportResult:
    """Write a llama-architecture GGUF file; measure it by reading it back into the HF model."""
    import gguf
    import numpy as np

    model, tokenizer = _load(Path(model_dir))
    cfg = model.config
    if cfg.model_type != "llama":
        raise InvalidInputError(f"GGUF export supports llama models, not {cfg.model_type}")
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(out), arch="llama")
    writer.add_name(Path(model_dir).name)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    writer.add_rope_freq_base(float(getattr(cfg, "rope_theta", None) or 10000.0))
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_vocab_size(cfg.vocab_size)
    writer.add_file_type(
        gguf.LlamaFileType.MOSTLY_F16 if dtype == "f16" else gguf.LlamaFileType.ALL_F32
    )
    _write_tokenizer(writer, tokenizer)
    tied = bool(getattr(cfg, "tie_word_embeddings", False))
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight" and tied:
            continue  # llama.cpp reuses token_embd when output.weight is absent
        data = tensor.detach().float().numpy()
        if name.endswith("q_proj.weight"):
            data = _rope_permute(data, cfg.num_attention_heads)
        elif name.endswith("k_proj.weight"):
            data = _rope_permute(data, cfg.num_key_value_heads)
        # Norm vectors stay f32 as llama.cpp's converter keeps them.
        if dtype == "f16" and data.ndim > 1:
            data = data.astype(np.float16)
        writer.add_tensor(_gguf_name(name), data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    before = perplexity(model, tokenizer, eval_texts)
    reloaded = load_gguf(out, model_dir)
    return _result(out, "gguf", before, perplexity(reloaded, tokenizer, eval_texts))


def load_gguf(gguf_path: str | Path, model_dir: str | Path) -> Any:
    """Rebuild the HF Llama of ``model_dir`` with the tensors read from a GGUF file."""
    import gguf
    import numpy as np
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.from_pretrained(model_dir, local_files_only=True)
    model = AutoModelForCausalLM.from_config(cfg)
    reader = gguf.GGUFReader(str(gguf_path))
    tensors = {t.name: np.array(t.data) for t in reader.tensors}
    state = {}
    for name, current in model.state_dict().items():
        key = _gguf_name(name)
        if key not in tensors and name == "lm_head.weight":
            key = "token_embd.weight"
        data = tensors[key].astype(np.float32).reshape(tuple(current.shape))
        if name.endswith("q_proj.weight"):
            data = _rope_permute(data, cfg.num_attention_heads, inverse=True)
        elif name.endswith("k_proj.weight"):
            data = _rope_permute(data, cfg.num_key_value_heads, inverse=True)
        state[name] = torch.from_numpy(np.ascontiguousarray(data))
    model.load_state_dict(state)
    return model.eval()
