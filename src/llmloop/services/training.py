"""Training as a use case: foundation models, fine-tunes (SFT, DPO), hyperparameter searches and
exports, each a tracked run whose result is a registered model version with lineage.

The trainers (``llmloop.trainers``) know nothing of the registry; this service gives them rows
from dataset versions, a directory, and a tracker that streams to the run, then stores the
weights as an artifact and registers the version (dataset version, base version, run, params).
A LoRA version used as a base is merged into its own base first, and what is trained on it is
registered merged (format ``hf``), so every version stands on whole weights or one adapter.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from llmloop.core.base import JsonDict
from llmloop.core.models import ModelVersionCreate, ModelVersionPublic
from llmloop.core.runs import MetricPoint, RunCreate, RunInput, RunPublic
from llmloop.errors import InvalidInputError, LlmloopError
from llmloop.services.actors import Actor
from llmloop.services.training_support import (
    RunTracker,
    finite,
    jsonable,
    optuna_storage_url,
    rows_to_texts,
)


class TrainingService:
    def __init__(self, container: Any) -> None:
        self.c = container

    # --- plumbing ----------------------------------------------------------------------------

    def _workdir(self, run_id: str) -> Path:
        path = self.c.settings.home / "runs" / run_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _rows(self, dataset: str, version: int | str) -> tuple[str, list[JsonDict]]:
        dv = self.c.datasets.get_version(dataset, version)
        return dv.id, self.c.datasets.read_rows(dv)

    def base_dir(self, model: str, ref: int | str) -> tuple[ModelVersionPublic, Path]:
        """A registry version's whole weights on local disk (materialised from the artifact
        store); a LoRA version's adapter is merged into its base first (once per machine), since
        trainers and exports start from whole weights."""
        mv = self.c.models.get_version(model, ref)
        return mv, self._weights(mv)

    def _weights(self, mv: ModelVersionPublic) -> Path:
        name = f"model '{mv.model_name}' v{mv.version}"
        if mv.artifact is None:
            if mv.base_model and Path(mv.base_model).is_dir():
                return Path(mv.base_model)
            raise InvalidInputError(f"{name} has no weights to train from")
        local = self.c.artifacts.materialize_dir(mv.artifact)
        if mv.format != "peft-lora":
            return local
        merged = self.c.settings.home / "cache" / "merged" / mv.id  # an adapter on its base
        if not (merged / "config.json").is_file():
            if mv.base_model.startswith("mv_"):
                base = self._weights(self.c.models.get_version_by_id(mv.base_model))
            elif mv.base_model and Path(mv.base_model).is_dir():
                base = Path(mv.base_model)
            else:
                raise InvalidInputError(
                    f"{name} is a LoRA adapter of '{mv.base_model}', which is neither a registry "
                    "version nor a local folder: there are no whole weights to start from"
                )
            _merge_in_place(local, base, merged)
        return merged

    def _standalone(self, result: Any, base_mv: ModelVersionPublic, base_dir: Path) -> Any:
        """An adapter trained on a merged LoRA version, merged too: served as an adapter, it
        would sit on the first adapter's base without the first adapter."""
        if base_mv.format != "peft-lora" or result.merged is not None or not result.adapter_dir:
            return result
        from llmloop.trainers.export import merge_lora

        out = merge_lora(result.adapter_dir, base_dir, Path(result.output_dir) / "merged")
        return result.model_copy(update={"merged": out, "tokenizer_dir": out})

    def _start(
        self, name: str, kind: str, params: JsonDict, inputs: list[RunInput], actor: Actor
    ) -> RunPublic:
        params = {**params, "device_hour_price": self.c.settings.device_hour_price}
        return self.c.runs.create(
            RunCreate.model_validate(
                {"name": name, "kind": kind, "params": jsonable(params), "inputs": inputs}
            ),
            actor,
        )

    def _register(
        self,
        run: RunPublic,
        result: Any,
        out_model: str,
        actor: Actor,
        base: str,
        inputs: list[str],
        params: JsonDict,
        extra_metrics: dict[str, float] | None = None,
    ) -> ModelVersionPublic:
        weights = result.merged or result.adapter_dir
        if weights is None:
            raise LlmloopError("training produced no weights")
        if result.merged is not None and result.tokenizer_dir != result.merged:
            _copy_tokenizer(Path(result.tokenizer_dir), Path(result.merged))
        ref = self.c.artifacts.put_dir(Path(weights))
        self.c.runs.add_artifact(run.id, "weights", ref, actor)
        metrics = {k: float(v) for k, v in result.metrics.items() if finite(v)}
        metrics.update(
            {
                "train_tokens": float(result.train_tokens),
                "wall_time_s": float(result.wall_time_s),
                "peak_memory_mb": float(result.peak_memory_mb),
                "cost_estimate": float(result.cost_estimate),
            }
        )
        metrics.update(extra_metrics or {})
        self.c.runs.log_metrics(
            run.id,
            [MetricPoint(key=f"final_{k}", value=v, step=result.steps) for k, v in metrics.items()],
            actor,
        )
        self.c.runs.finish(run.id, "finished", actor)
        fmt = "hf" if result.merged is not None else "peft-lora"
        return self.c.models.create_version(
            out_model,
            ModelVersionCreate(
                base_model=base,
                format=fmt,
                artifact=ref,
                tokenizer="bundled",
                metrics=metrics,
                params=jsonable(params),
                run_id=run.id,
                inputs=inputs,
            ),
            actor,
        )

    def _fail(self, run: RunPublic, actor: Actor, exc: BaseException) -> None:
        try:
            self.c.runs.log_params(run.id, {"error": f"{type(exc).__name__}: {exc}"}, actor)
            self.c.runs.finish(run.id, "failed", actor)
        except LlmloopError:
            pass

    # --- use cases ---------------------------------------------------------------------------

    def init_base(
        self,
        dataset: str,
        out_model: str,
        actor: Actor,
        version: int | str = "latest",
        config: JsonDict | None = None,
    ) -> ModelVersionPublic:
        """Build a small Llama with a BPE tokenizer trained on a dataset version; register it."""
        from llmloop.trainers.pretrain import BaseModelConfig, init_base

        actor.require("editor")
        cfg = BaseModelConfig.model_validate(
            {**(config or {}), "device_hour_price": self.c.settings.device_hour_price}
        )
        dv_id, rows = self._rows(dataset, version)
        texts = rows_to_texts(rows)
        run = self._start(
            f"init-base/{out_model}",
            "pretrain",
            cfg.model_dump(mode="json"),
            [RunInput(id=dv_id, role="corpus")],
            actor,
        )
        try:
            result = init_base(texts, self._workdir(run.id), cfg, RunTracker(self.c, run.id, actor))
            return self._register(
                run,
                result,
                out_model,
                actor,
                "scratch:tiny-llama",
                [dv_id],
                cfg.model_dump(mode="json"),
            )
        except BaseException as exc:
            self._fail(run, actor, exc)
            raise

    def finetune(
        self,
        base: str,
        dataset: str,
        out_model: str,
        actor: Actor,
        base_ref: int | str = "champion",
        version: int | str = "latest",
        eval_dataset: str | None = None,
        eval_version: int | str = "latest",
        config: JsonDict | None = None,
        method: str = "sft",
    ) -> ModelVersionPublic:
        """SFT (LoRA or full) or DPO of a registry version on a dataset version."""
        actor.require("editor")
        if method == "sft":
            from llmloop.trainers.sft import SFTConfig as Config
            from llmloop.trainers.sft import run_sft as train
        elif method == "dpo":
            from llmloop.trainers.dpo import DPOConfig as Config  # type: ignore[assignment]
            from llmloop.trainers.dpo import run_dpo as train  # type: ignore[assignment]
        else:
            raise InvalidInputError(f"method must be 'sft' or 'dpo', not {method!r}")
        cfg = Config.model_validate(
            {**(config or {}), "device_hour_price": self.c.settings.device_hour_price}
        )
        base_mv, base_dir = self.base_dir(base, base_ref)
        dv_id, rows = self._rows(dataset, version)
        inputs = [RunInput(id=dv_id, role="train"), RunInput(id=base_mv.id, role="base")]
        eval_rows = None
        if eval_dataset:
            eval_id, eval_rows = self._rows(eval_dataset, eval_version)
            inputs.append(RunInput(id=eval_id, role="validation"))
        kind = "finetune" if method == "sft" else "dpo"
        run = self._start(f"{kind}/{out_model}", kind, cfg.model_dump(mode="json"), inputs, actor)
        try:
            tracker = RunTracker(self.c, run.id, actor)
            if cfg.processes > 1 or cfg.accelerate_config:
                from llmloop.trainers.launch import run_launched

                result = run_launched(
                    method,
                    cfg,
                    base_dir,
                    rows,
                    eval_rows,
                    self._workdir(run.id),
                    tracker,
                    cfg.processes,
                    cfg.accelerate_config,
                )
            else:
                result = train(cfg, base_dir, rows, eval_rows, self._workdir(run.id), tracker)
            result = self._standalone(result, base_mv, base_dir)
            return self._register(
                run,
                result,
                out_model,
                actor,
                base_mv.id,
                [i.id for i in inputs if i.id != base_mv.id],
                {"method": method, **cfg.model_dump(mode="json")},
            )
        except BaseException as exc:
            self._fail(run, actor, exc)
            raise

    def tune(
        self,
        base: str,
        dataset: str,
        eval_dataset: str,
        out_model: str,
        actor: Actor,
        base_ref: int | str = "champion",
        search: JsonDict | None = None,
        space: JsonDict | None = None,
        config: JsonDict | None = None,
    ) -> tuple[ModelVersionPublic, JsonDict]:
        """An Optuna study (trials are child runs; Optuna's own records live beside the llmloop
        database, see :func:`optuna_storage_url`); the best trial's weights become a model
        version. Without a ``space``, :func:`~llmloop.trainers.hpo.default_search_space`."""
        from llmloop.trainers.hpo import HPOConfig, SearchSpace, default_search_space, run_hpo
        from llmloop.trainers.sft import SFTConfig

        actor.require("editor")
        base_cfg = SFTConfig.model_validate(
            {**(config or {}), "device_hour_price": self.c.settings.device_hour_price}
        )
        base_mv, base_dir = self.base_dir(base, base_ref)
        dv_id, rows = self._rows(dataset, "latest")
        eval_id, eval_rows = self._rows(eval_dataset, "latest")
        inputs = [
            RunInput(id=dv_id, role="train"),
            RunInput(id=eval_id, role="validation"),
            RunInput(id=base_mv.id, role="base"),
        ]
        run = self._start(
            f"hpo/{out_model}", "hpo", {"search": search or {}, "space": space or {}}, inputs, actor
        )
        hpo_cfg = HPOConfig.model_validate(
            {
                "storage_url": optuna_storage_url(self.c.settings.database_url),
                "study_name": f"llmloop-{run.id}",
                **(search or {}),
            }
        )
        space_cfg = SearchSpace.model_validate(space) if space else default_search_space(base_cfg)

        def trial_tracker(number: int, params: JsonDict) -> RunTracker:
            child = self.c.runs.create(
                RunCreate(
                    name=f"trial-{number}", kind="trial", parent_id=run.id, params=jsonable(params)
                ),
                actor,
            )
            return RunTracker(self.c, child.id, actor)

        try:
            workdir = self._workdir(run.id)
            result = run_hpo(
                hpo_cfg,
                space_cfg,
                base_cfg,
                base_dir,
                rows,
                eval_rows,
                workdir,
                RunTracker(self.c, run.id, actor),
                trial_tracker,
            )
            for child in self.c.runs.list(parent_id=run.id, limit=10_000):
                if child.status == "running":
                    self.c.runs.finish(child.id, "finished", actor)
            best = self._standalone(
                self._best_trial_result(workdir, result, base_cfg), base_mv, base_dir
            )
            summary = result.model_dump(mode="json")
            version = self._register(
                run,
                best,
                out_model,
                actor,
                base_mv.id,
                [dv_id, eval_id],
                {"method": "sft", "hpo_best": result.best_params},
            )
            return version, summary
        except BaseException as exc:
            self._fail(run, actor, exc)
            raise

    def _best_trial_result(self, workdir: Path, result: Any, base_cfg: Any) -> Any:
        from llmloop.trainers.base import TrainResult

        # A repeat reused an earlier trial's outcome and trained nothing: it has no weights.
        trained = (t for t in result.trials if t.values and t.repeat_of is None)
        best = min(trained, key=lambda t: t.values[0], default=None)
        if best is None:
            raise LlmloopError("no trial completed")
        trial_dir = workdir / f"trial-{best.number}"
        merged = trial_dir / "model"
        adapter = trial_dir / "adapter"
        return TrainResult(
            output_dir=trial_dir,
            merged=merged if merged.is_dir() else None,
            adapter_dir=adapter if adapter.is_dir() else None,
            tokenizer_dir=merged if merged.is_dir() else adapter,
            metrics={"eval_loss": best.values[0]},
            train_tokens=best.train_tokens,
            wall_time_s=best.duration_s,
            steps=best.steps,
        )

    def export(
        self,
        model: str,
        ref: int | str,
        kind: str,
        actor: Actor,
        eval_texts: list[str],
        out_model: str | None = None,
    ) -> ModelVersionPublic:
        """Int8-quantise or export to GGUF a version; the quality delta is recorded."""
        from llmloop.trainers import export as ex

        actor.require("editor")
        if kind not in ("int8", "gguf"):
            raise InvalidInputError("kind must be 'int8' or 'gguf'")
        if not eval_texts:
            raise InvalidInputError("an export needs eval texts to measure the quality delta")
        mv, src = self.base_dir(model, ref)
        run = self._start(
            f"export-{kind}/{model}",
            "other",
            {"kind": kind},
            [RunInput(id=mv.id, role="source")],
            actor,
        )
        try:
            out = self._workdir(run.id) / kind
            result = (
                ex.quantize_int8(src, out, eval_texts)
                if kind == "int8"
                else ex.export_gguf(src, out.with_suffix(".gguf"), eval_texts)
            )
            path = Path(result.path)
            ref_ = self.c.artifacts.put_dir(path) if path.is_dir() else self.c.artifacts.put(path)
            metrics = {
                "perplexity_before": result.perplexity_before,
                "perplexity_after": result.perplexity_after,
                "quality_delta": result.quality_delta,
                "size_bytes": float(result.size_bytes),
            }
            self.c.runs.log_metrics(
                run.id, [MetricPoint(key=k, value=v) for k, v in metrics.items()], actor
            )
            self.c.runs.add_artifact(run.id, kind, ref_, actor)
            self.c.runs.finish(run.id, "finished", actor)
            return self.c.models.create_version(
                out_model or model,
                ModelVersionCreate(
                    base_model=mv.id,
                    format="gguf" if kind == "gguf" else "hf",
                    artifact=ref_,
                    metrics=metrics,
                    params={
                        "export": kind,
                        **({"engine_options": {"quantized": "int8"}} if kind == "int8" else {}),
                    },
                    run_id=run.id,
                ),
                actor,
            )
        except BaseException as exc:
            self._fail(run, actor, exc)
            raise


def _merge_in_place(adapter: Path, base: Path, target: Path) -> None:
    """Merge beside ``target`` and rename the result into place: a reader (or a second process
    merging the same adapter) sees the folder whole or not at all."""
    from llmloop.trainers.export import merge_lora

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        merge_lora(adapter, base, staging / "model")
        try:
            os.rename(staging / "model", target)
        except OSError:
            if not (target / "config.json").is_file():  # not a concurrent merge that won
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _copy_tokenizer(src: Path, dest: Path) -> None:
    for item in src.iterdir():
        if item.is_file() and (
            "token" in item.name or item.name in ("special_tokens_map.json", "chat_template.jinja")
        ):
            target = dest / item.name
            if not target.exists():
                shutil.copy2(item, target)
