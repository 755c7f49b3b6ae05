"""Built-in plugins: registered through the same hooks third parties use, as import strings."""

from __future__ import annotations

from llmloop.hookspecs import Register, hookimpl

__all__ = [
    "register_data_steps",
    "register_engines",
    "register_evaluators",
    "register_guards",
    "register_pipeline_steps",
    "register_trainers",
]


@hookimpl
def register_engines(register: Register) -> None:
    register("echo", "llmloop.engines.echo:EchoEngine")
    register("hf", "llmloop.engines.hf:HFEngine", extra="hf")
    register("openai", "llmloop.engines.openai_compat:OpenAICompatEngine")
    register("vllm", "llmloop.engines.vllm:VLLMEngine", extra="vllm")
    register("llamacpp", "llmloop.engines.llamacpp:LlamaCppEngine", extra="llamacpp")


@hookimpl
def register_evaluators(register: Register) -> None:
    register("bleu", "llmloop.evaluators.metrics:BleuEvaluator", extra="eval")
    register("chrf", "llmloop.evaluators.metrics:ChrfEvaluator", extra="eval")
    register("rouge", "llmloop.evaluators.metrics:RougeEvaluator", extra="eval")
    register("exact_match", "llmloop.evaluators.matching:ExactMatchEvaluator")
    register("token_f1", "llmloop.evaluators.matching:TokenF1Evaluator")
    register("usage", "llmloop.evaluators.usage:UsageEvaluator")
    register("similarity", "llmloop.evaluators.similarity:SimilarityEvaluator", extra="eval")
    register("perplexity", "llmloop.evaluators.perplexity:PerplexityEvaluator", extra="hf")
    register("judge", "llmloop.evaluators.judges:PointwiseJudge")
    register("pairwise_judge", "llmloop.evaluators.preference:PairwiseJudge")
    register("toxicity", "llmloop.evaluators.toxicity:ToxicityEvaluator", extra="eval")
    register("faithfulness", "llmloop.evaluators.hallucination:FaithfulnessEvaluator", extra="eval")
    register("bias", "llmloop.evaluators.bias:BiasEvaluator", extra="eval")
    register("safety", "llmloop.evaluators.safety:GuardEvaluator", extra="eval")


@hookimpl
def register_guards(register: Register) -> None:
    register("deny_list", "llmloop.guards.deny_list:DenyListGuard")
    register("size", "llmloop.guards.size:SizeGuard")
    register("injection", "llmloop.guards.injection:InjectionGuard", extra="eval")
    register("toxicity", "llmloop.guards.toxicity:ToxicityGuard", extra="eval")
    register("canary", "llmloop.guards.canary:CanaryGuard")
    register("links", "llmloop.guards.links:LinksGuard")
    register("json_schema", "llmloop.guards.schema:JsonSchemaGuard", extra="eval")
    register("pii", "llmloop.guards.pii:PiiGuard")


@hookimpl
def register_data_steps(register: Register) -> None:
    for name, cls in [
        ("fix_unicode", "FixUnicodeStep"),
        ("strip_html", "StripHtmlStep"),
        ("whitespace", "WhitespaceStep"),
        ("drop_empty", "DropEmptyStep"),
        ("length_filter", "LengthFilterStep"),
        ("language_filter", "LanguageFilterStep"),
        ("regex_filter", "RegexFilterStep"),
        ("deny_list", "DenyListStep"),
        ("exact_dedup", "ExactDedupStep"),
        ("near_dedup", "NearDedupStep"),
        ("pii", "PiiStep"),
        ("toxicity_filter", "ToxicityFilterStep"),
    ]:
        register(name, f"llmloop.data.steps:{cls}")


@hookimpl
def register_pipeline_steps(register: Register) -> None:
    for name in (
        "ingest",
        "clean",
        "split",
        "init_base",
        "finetune",
        "eval",
        "gate",
        "promote",
        "curate",
        "deploy_canary",
        "promote_or_rollback",
        "watch",
        "hpo",
        "register",
    ):
        register(name, f"llmloop.services.pipeline_steps:{_step_class(name)}")


def _step_class(name: str) -> str:
    return "".join(part.title() for part in name.split("_")) + "Step"


@hookimpl
def register_trainers(register: Register) -> None:
    register("sft", "llmloop.trainers.sft:run_sft", extra="hf")
    register("dpo", "llmloop.trainers.dpo:run_dpo", extra="hf")
    register("pretrain", "llmloop.trainers.pretrain:init_base", extra="hf")
    register("hpo", "llmloop.trainers.hpo:run_hpo", extra="hf")
