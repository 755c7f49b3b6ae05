"""The vllm engine on a real GPU: a tiny Llama built locally, chat, stream, logprobs and LoRA."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from llmloop.core.chat import EngineSpec, GenerationRequest, SamplingParams
from llmloop.engines.base import Engine
from llmloop.testing.engine_contract import EngineContract

torch = pytest.importorskip("torch")
pytest.importorskip("vllm")
if not torch.cuda.is_available():
    pytest.skip("needs a CUDA GPU", allow_module_level=True)

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def gpu_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from llmloop.testing.tiny import build_tiny_llama

    # vLLM kernels want head_dim >= 32 and a hidden size that splits into heads evenly.
    return build_tiny_llama(tmp_path_factory.mktemp("vllm-tiny"), hidden_size=128, heads=4)


@pytest.fixture(scope="module")
def lora_dir(gpu_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(gpu_model_dir)
    config = LoraConfig(r=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    out = tmp_path_factory.mktemp("vllm-lora")
    get_peft_model(base, config).save_pretrained(out)
    return out


class TestVLLMContract(EngineContract):
    @pytest.fixture
    async def engine(self, gpu_model_dir: Path) -> AsyncIterator[Engine]:
        from llmloop.engines.vllm import VLLMEngine

        options = {"max_model_len": 512, "gpu_memory_utilization": 0.3, "enforce_eager": True}
        engine = VLLMEngine(EngineSpec(kind="vllm", model=str(gpu_model_dir), options=options))
        await engine.start()
        yield engine
        await engine.aclose()

    def bad_request(self) -> GenerationRequest:
        return self.request(prompt="word " * 4000)

    async def test_lora_adapter_changes_the_scores(self, engine: Engine, lora_dir: Path) -> None:
        sampling = SamplingParams(max_tokens=4, temperature=0.0)
        req = GenerationRequest(model="m", prompt="hello there", sampling=sampling, logprobs=1)
        base = await engine.chat(req)
        tuned = await engine.chat(req.model_copy(update={"adapter": str(lora_dir)}))
        assert base.logprobs is not None and tuned.logprobs is not None
        base_scores = [t.logprob for t in base.logprobs]
        assert [t.logprob for t in tuned.logprobs] != pytest.approx(base_scores, abs=1e-3)
