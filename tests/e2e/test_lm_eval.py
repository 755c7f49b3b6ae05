"""lm-evaluation-harness as a client, unchanged: its ``local-completions`` model scores a task
through ``llmloop serve`` (an hf deployment of the tiny Llama) and must give the numbers its own
``hf`` model gives on the same weights: multiple choice (log-likelihoods of token-id prompts with
``echo``), rolling log-likelihood (perplexity) and greedy generation with stop strings."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.fixtures.served import ServerProcess, run_cli, start_serve, stop

lm_eval = pytest.importorskip("lm_eval")
pytest.importorskip("lm_eval.models.openai_completions")

ROWS = [
    {"question": "The quick brown fox jumps over the lazy", "choices": [" dog.", " cat."]},
    {"question": "Hello, how can I help you", "choices": [" today?", " yesterday?"]},
    {"question": "To reset your password, open settings and choose", "choices": [" reset.", " a"]},
    {"question": "Thank you for contacting support. We are happy to", "choices": [" help.", " go"]},
]
TEXTS = ["Your order has shipped and will arrive in three days.", "Hello, how can I help you?"]
TASKS = {
    "tiny_mc": {"output_type": "multiple_choice", "doc_to_text": "{{question}}",
                "doc_to_choice": "{{choices}}", "doc_to_target": 0,
                "metric_list": [{"metric": "acc"}]},
    "tiny_ppl": {"output_type": "loglikelihood_rolling", "doc_to_text": "",
                 "doc_to_target": "{{text}}",
                 "metric_list": [{"metric": "word_perplexity"}, {"metric": "bits_per_byte"}]},
    "tiny_gen": {"output_type": "generate_until", "doc_to_text": "{{question}}",
                 "doc_to_target": "{{choices[0]}}",
                 "generation_kwargs": {"until": ["."], "max_gen_toks": 8, "do_sample": False},
                 "metric_list": [{"metric": "exact_match"}]},
}  # fmt: skip


def _write_tasks(folder: Path) -> Path:
    folder.mkdir()
    (folder / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    (folder / "texts.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    for name, spec in TASKS.items():
        data = folder / ("texts.jsonl" if name == "tiny_ppl" else "rows.jsonl")
        task = {"task": name, "dataset_path": "json", "test_split": "test",
                "dataset_kwargs": {"data_files": {"test": str(data)}}, **spec}  # fmt: skip
        (folder / f"{name}.yaml").write_text(json.dumps(task))  # JSON is YAML
    return folder


@pytest.fixture
def gateway(tmp_path: Path, tiny_model_dir: Path) -> Iterator[tuple[ServerProcess, str]]:
    deployments = tmp_path / "deployments.yaml"
    target = {"engine": {"kind": "hf", "model": str(tiny_model_dir)}}
    deployments.write_text(json.dumps({"deployments": [{"name": "tiny", "targets": [target]}]}))
    env = {**os.environ, "LLMLOOP_HOME": str(tmp_path / "home"),
           "LLMLOOP_DEPLOYMENTS_FILE": str(deployments)}  # fmt: skip
    key = json.loads(run_cli(env, "keys", "create", "harness", "--json"))["secret"]
    server = start_serve(env=env, output=tmp_path / "serve.log", deadline_s=120)
    yield server, key
    stop(server)


def _evaluate(model: str, model_args: str, tasks: Path) -> dict[str, Any]:
    from lm_eval.tasks import TaskManager

    out = lm_eval.simple_evaluate(
        model=model,
        model_args=model_args,
        tasks=list(TASKS),
        task_manager=TaskManager(include_path=str(tasks)),
        log_samples=True,
    )
    assert out is not None
    return out


def _generated(out: dict[str, Any]) -> list[str]:
    return [sample["resps"][0][0] for sample in out["samples"]["tiny_gen"]]


def test_lm_eval_through_the_gateway_scores_as_on_the_model(
    gateway: tuple[ServerProcess, str],
    tiny_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server, key = gateway
    tasks = _write_tasks(tmp_path / "tasks")
    monkeypatch.setenv("OPENAI_API_KEY", key)  # what local-completions sends as its bearer
    api_args = (f"model=tiny,base_url={server.url}/v1/completions,tokenizer={tiny_model_dir},"
                "tokenized_requests=True,num_concurrent=2,max_retries=1")  # fmt: skip
    served = _evaluate("local-completions", api_args, tasks)
    local = _evaluate("hf", f"pretrained={tiny_model_dir},dtype=float32,device=cpu", tasks)
    compared = [(task, name, value) for task, metrics in local["results"].items()
                for name, value in metrics.items()
                if name.endswith(",none") and isinstance(value, float)]  # fmt: skip
    assert {(task, name) for task, name, _ in compared} >= {
        ("tiny_mc", "acc,none"), ("tiny_ppl", "word_perplexity,none"),
        ("tiny_ppl", "bits_per_byte,none"), ("tiny_gen", "exact_match,none")}  # fmt: skip
    for task, name, value in compared:
        assert served["results"][task][name] == pytest.approx(value, rel=1e-4), (task, name)
    assert _generated(served) == _generated(local)
    assert all(text for text in _generated(served))  # the greedy answers, cut at the stop
