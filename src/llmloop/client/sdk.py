"""``llmloop.Client``: one class, two ways in (in process, or HTTP), the same nouns and verbs as
the CLI and the REST API. Methods return the same pydantic values either way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import TypeAdapter

from llmloop.client.transport import HttpCall, HttpTransport, LocalTransport
from llmloop.config import Settings, load_settings
from llmloop.core.base import JsonDict
from llmloop.core.datasets import (
    DatasetCreate,
    DatasetPublic,
    DatasetVersionCreate,
    DatasetVersionPublic,
)
from llmloop.core.governance import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyPublic,
    ApprovalCreate,
    ApprovalDecision,
    ApprovalPublic,
    AuditEntry,
    LineageGraph,
)
from llmloop.core.models import (
    AliasMove,
    ModelCreate,
    ModelPublic,
    ModelVersionCreate,
    ModelVersionPublic,
    StageMove,
)
from llmloop.core.prompts import (
    LabelMove,
    PromptCreate,
    PromptPublic,
    PromptRender,
    PromptRendered,
    PromptVersionCreate,
    PromptVersionPublic,
)
from llmloop.core.runs import MetricLog, MetricPoint, RunCreate, RunFinish, RunInput, RunPublic
from llmloop.services.actors import local_actor

T = TypeVar("T")


class Client:
    """``Client()`` works on the local store; ``Client(url=..., api_key=...)`` talks HTTP."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        settings: Settings | None = None,
        actor: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        if url:
            self._t: LocalTransport | HttpTransport = HttpTransport(url, api_key, timeout)
        else:
            self._t = LocalTransport(settings or load_settings(), local_actor(actor))

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._t.close()

    def _do(self, shape: Any, local: Any, http: HttpCall) -> Any:
        result = self._t.call(local, http)
        if shape is None or isinstance(self._t, LocalTransport):
            return result
        return TypeAdapter(shape).validate_python(result)

    # --- datasets ----------------------------------------------------------------------------

    def create_dataset(self, name: str, description: str = "") -> DatasetPublic:
        spec = DatasetCreate(name=name, description=description)
        return self._do(
            DatasetPublic,
            lambda c, a: c.datasets.create(spec, a),
            HttpCall("POST", "/api/datasets", spec),
        )

    def list_datasets(self, limit: int = 100, offset: int = 0) -> list[DatasetPublic]:
        return self._do(
            list[DatasetPublic],
            lambda c, a: c.datasets.list(limit, offset),
            HttpCall("GET", "/api/datasets", params={"limit": limit, "offset": offset}),
        )

    def get_dataset(self, name: str) -> DatasetPublic:
        return self._do(
            DatasetPublic,
            lambda c, a: c.datasets.get(name),
            HttpCall("GET", f"/api/datasets/{name}"),
        )

    def create_dataset_version(
        self,
        name: str,
        rows: list[JsonDict],
        description: str = "",
        parent_version: int | None = None,
        recipe: JsonDict | None = None,
    ) -> DatasetVersionPublic:
        spec = DatasetVersionCreate(
            rows=rows, description=description, parent_version=parent_version, recipe=recipe
        )
        return self._do(
            DatasetVersionPublic,
            lambda c, a: c.datasets.create_version(name, spec, a),
            HttpCall("POST", f"/api/datasets/{name}/versions", spec),
        )

    def list_dataset_versions(self, name: str) -> list[DatasetVersionPublic]:
        return self._do(
            list[DatasetVersionPublic],
            lambda c, a: c.datasets.list_versions(name),
            HttpCall("GET", f"/api/datasets/{name}/versions"),
        )

    def get_dataset_version(self, name: str, version: int | str = "latest") -> DatasetVersionPublic:
        return self._do(
            DatasetVersionPublic,
            lambda c, a: c.datasets.get_version(name, version),
            HttpCall("GET", f"/api/datasets/{name}/versions/{version}"),
        )

    # --- data preparation --------------------------------------------------------------------

    def ingest(self, path: str, dataset: str, on_error: str = "fail") -> JsonDict:
        """Ingest a local file (uploaded when talking HTTP) as a new dataset version."""

        def local(c: Any, a: Any) -> JsonDict:
            version, report = c.data.ingest(path, dataset, a, {"on_error": on_error})
            return {
                "version": version.model_dump(mode="json", by_alias=True),
                "report": report.model_dump(mode="json"),
            }

        if isinstance(self._t, LocalTransport):
            return self._do(None, local, HttpCall("POST", ""))
        with open(path, "rb") as fh:
            files = {"file": (Path(path).name, fh.read())}
        return self._do(
            None,
            local,
            HttpCall(
                "POST", f"/api/data/{dataset}/ingest", files=files, data={"on_error": on_error}
            ),
        )

    def profile_dataset(self, dataset: str, version: int | str = "latest") -> JsonDict:
        return self._do(
            None,
            lambda c, a: c.data.profile(dataset, a, version)[0].model_dump(mode="json"),
            HttpCall("POST", f"/api/data/{dataset}/versions/{version}/profile"),
        )

    def clean_dataset(
        self, dataset: str, recipe: JsonDict, version: int | str = "latest", to: str | None = None
    ) -> DatasetVersionPublic:
        def local(c: Any, a: Any) -> DatasetVersionPublic:
            return c.data.clean(dataset, recipe, a, version, to)[0]

        result = self._t.call(
            local,
            HttpCall(
                "POST",
                f"/api/data/{dataset}/versions/{version}/clean",
                {"recipe": recipe, "to": to},
            ),
        )
        if isinstance(result, dict):
            return DatasetVersionPublic.model_validate(result["version"])
        return result  # type: ignore[no-any-return]

    def split_dataset(
        self, dataset: str, version: int | str = "latest", config: JsonDict | None = None
    ) -> dict[str, DatasetVersionPublic]:
        def local(c: Any, a: Any) -> dict[str, DatasetVersionPublic]:
            return c.data.split(dataset, a, version, config)[0]

        result = self._t.call(
            local,
            HttpCall(
                "POST", f"/api/data/{dataset}/versions/{version}/split", {"config": config or {}}
            ),
        )
        if isinstance(self._t, LocalTransport):
            return result  # type: ignore[no-any-return]
        return {k: DatasetVersionPublic.model_validate(v) for k, v in result["versions"].items()}

    # --- prompts -----------------------------------------------------------------------------

    def create_prompt(self, name: str, description: str = "") -> PromptPublic:
        spec = PromptCreate(name=name, description=description)
        return self._do(
            PromptPublic,
            lambda c, a: c.prompts.create(spec, a),
            HttpCall("POST", "/api/prompts", spec),
        )

    def list_prompts(self) -> list[PromptPublic]:
        return self._do(
            list[PromptPublic], lambda c, a: c.prompts.list(), HttpCall("GET", "/api/prompts")
        )

    def get_prompt(self, name: str) -> PromptPublic:
        return self._do(
            PromptPublic, lambda c, a: c.prompts.get(name), HttpCall("GET", f"/api/prompts/{name}")
        )

    def create_prompt_version(
        self,
        name: str,
        template: str,
        variables: list[str] | None = None,
        params: JsonDict | None = None,
        message: str = "",
    ) -> PromptVersionPublic:
        spec = PromptVersionCreate(
            template=template, variables=variables, params=params or {}, message=message
        )
        return self._do(
            PromptVersionPublic,
            lambda c, a: c.prompts.create_version(name, spec, a),
            HttpCall("POST", f"/api/prompts/{name}/versions", spec),
        )

    def list_prompt_versions(self, name: str) -> list[PromptVersionPublic]:
        return self._do(
            list[PromptVersionPublic],
            lambda c, a: c.prompts.list_versions(name),
            HttpCall("GET", f"/api/prompts/{name}/versions"),
        )

    def get_prompt_version(self, name: str, ref: int | str = "latest") -> PromptVersionPublic:
        return self._do(
            PromptVersionPublic,
            lambda c, a: c.prompts.get_version(name, ref),
            HttpCall("GET", f"/api/prompts/{name}/versions/{ref}"),
        )

    def render_prompt(
        self, name: str, variables: JsonDict, ref: int | str = "production"
    ) -> PromptRendered:
        body = PromptRender(variables=variables)
        return self._do(
            PromptRendered,
            lambda c, a: c.prompts.render(name, variables, ref),
            HttpCall("POST", f"/api/prompts/{name}/render", body, params={"ref": str(ref)}),
        )

    def diff_prompt(self, name: str, a: int | str, b: int | str) -> JsonDict:
        return self._do(
            None,
            lambda c, _: c.prompts.diff(name, a, b),
            HttpCall("GET", f"/api/prompts/{name}/diff", params={"a": str(a), "b": str(b)}),
        )

    def set_prompt_label(self, name: str, label: str, version: int) -> PromptPublic:
        body = LabelMove(label=label, version=version)
        return self._do(
            PromptPublic,
            lambda c, a: c.prompts.set_label(name, label, version, a),
            HttpCall("PUT", f"/api/prompts/{name}/labels", body),
        )

    # --- runs --------------------------------------------------------------------------------

    def create_run(
        self,
        name: str = "",
        kind: str = "other",
        params: JsonDict | None = None,
        parent_id: str | None = None,
        inputs: list[str | RunInput] | None = None,
        tags: dict[str, str] | None = None,
    ) -> RunPublic:
        items = [i if isinstance(i, RunInput) else RunInput(id=i) for i in inputs or []]
        spec = RunCreate.model_validate(
            {
                "name": name,
                "kind": kind,
                "params": params or {},
                "parent_id": parent_id,
                "inputs": items,
                "tags": tags or {},
            }
        )
        return self._do(
            RunPublic, lambda c, a: c.runs.create(spec, a), HttpCall("POST", "/api/runs", spec)
        )

    def get_run(self, run_id: str) -> RunPublic:
        return self._do(
            RunPublic, lambda c, a: c.runs.get(run_id), HttpCall("GET", f"/api/runs/{run_id}")
        )

    def list_runs(self, kind: str | None = None, status: str | None = None) -> list[RunPublic]:
        params = {k: v for k, v in (("kind", kind), ("status", status)) if v}
        return self._do(
            list[RunPublic],
            lambda c, a: c.runs.list(kind, status),
            HttpCall("GET", "/api/runs", params=params),
        )

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int = 0) -> int:
        points = [MetricPoint(key=k, value=v, step=step) for k, v in metrics.items()]
        body = MetricLog(points=points)
        result = self._do(
            None,
            lambda c, a: c.runs.log_metrics(run_id, points, a),
            HttpCall("POST", f"/api/runs/{run_id}/metrics", body),
        )
        return int(result["logged"] if isinstance(result, dict) else result)

    def log_params(self, run_id: str, params: JsonDict) -> RunPublic:
        return self._do(
            RunPublic,
            lambda c, a: c.runs.log_params(run_id, params, a),
            HttpCall("PATCH", f"/api/runs/{run_id}/params", params),
        )

    def finish_run(self, run_id: str, status: str = "finished") -> RunPublic:
        body = RunFinish.model_validate({"status": status})
        return self._do(
            RunPublic,
            lambda c, a: c.runs.finish(run_id, status, a),
            HttpCall("POST", f"/api/runs/{run_id}/finish", body),
        )

    def metric_series(self, run_id: str, key: str | None = None) -> dict[str, list[JsonDict]]:
        return self._do(
            None,
            lambda c, a: c.runs.metric_series(run_id, key),
            HttpCall("GET", f"/api/runs/{run_id}/metrics", params={"key": key} if key else None),
        )

    # --- models ------------------------------------------------------------------------------

    def create_model(self, name: str, description: str = "") -> ModelPublic:
        spec = ModelCreate(name=name, description=description)
        return self._do(
            ModelPublic,
            lambda c, a: c.models.create(spec, a),
            HttpCall("POST", "/api/models", spec),
        )

    def list_models(self) -> list[ModelPublic]:
        return self._do(
            list[ModelPublic], lambda c, a: c.models.list(), HttpCall("GET", "/api/models")
        )

    def get_model(self, name: str) -> ModelPublic:
        return self._do(
            ModelPublic, lambda c, a: c.models.get(name), HttpCall("GET", f"/api/models/{name}")
        )

    def create_model_version(self, name: str, **fields: Any) -> ModelVersionPublic:
        """Fields of :class:`ModelVersionCreate`: base_model, format, artifact, run_id, ..."""
        spec = ModelVersionCreate.model_validate(fields)
        return self._do(
            ModelVersionPublic,
            lambda c, a: c.models.create_version(name, spec, a),
            HttpCall("POST", f"/api/models/{name}/versions", spec),
        )

    def list_model_versions(self, name: str) -> list[ModelVersionPublic]:
        return self._do(
            list[ModelVersionPublic],
            lambda c, a: c.models.list_versions(name),
            HttpCall("GET", f"/api/models/{name}/versions"),
        )

    def get_model_version(self, name: str, ref: int | str = "latest") -> ModelVersionPublic:
        return self._do(
            ModelVersionPublic,
            lambda c, a: c.models.get_version(name, ref),
            HttpCall("GET", f"/api/models/{name}/versions/{ref}"),
        )

    def set_model_alias(self, name: str, alias: str, version: int) -> ModelPublic:
        body = AliasMove(alias=alias, version=version)
        return self._do(
            ModelPublic,
            lambda c, a: c.models.set_alias(name, alias, version, a),
            HttpCall("PUT", f"/api/models/{name}/aliases", body),
        )

    def set_model_stage(self, name: str, version: int, stage: str) -> ModelVersionPublic:
        body = StageMove.model_validate({"stage": stage})
        return self._do(
            ModelVersionPublic,
            lambda c, a: c.models.set_stage(name, version, stage, a),
            HttpCall("PUT", f"/api/models/{name}/versions/{version}/stage", body),
        )

    # --- governance --------------------------------------------------------------------------

    def protect(self, kind: str, name: str, label: str, protected: bool = True) -> None:
        body = {"kind": kind, "name": name, "label": label, "protected": protected}
        self._do(
            None,
            lambda c, a: c.governance.protect(kind, name, label, protected, a),
            HttpCall("PUT", "/api/protections", body),
        )

    def request_approval(
        self, kind: str, name: str, label: str, version: int, comment: str = ""
    ) -> ApprovalPublic:
        spec = ApprovalCreate.model_validate(
            {"kind": kind, "name": name, "label": label, "version": version, "comment": comment}
        )
        return self._do(
            ApprovalPublic,
            lambda c, a: c.governance.request(spec, a),
            HttpCall("POST", "/api/approvals", spec),
        )

    def approve(self, approval_id: str, comment: str = "") -> ApprovalPublic:
        body = ApprovalDecision(comment=comment)
        return self._do(
            ApprovalPublic,
            lambda c, a: c.governance.decide(approval_id, True, a, comment),
            HttpCall("POST", f"/api/approvals/{approval_id}/approve", body),
        )

    def reject(self, approval_id: str, comment: str = "") -> ApprovalPublic:
        body = ApprovalDecision(comment=comment)
        return self._do(
            ApprovalPublic,
            lambda c, a: c.governance.decide(approval_id, False, a, comment),
            HttpCall("POST", f"/api/approvals/{approval_id}/reject", body),
        )

    def list_approvals(self, status: str | None = None) -> list[ApprovalPublic]:
        return self._do(
            list[ApprovalPublic],
            lambda c, a: c.governance.list_approvals(status),
            HttpCall("GET", "/api/approvals", params={"status": status} if status else None),
        )

    def audit(
        self, entity_id: str | None = None, limit: int = 100, after_id: int = 0
    ) -> list[AuditEntry]:
        params: dict[str, Any] = {"limit": limit, "after_id": after_id}
        if entity_id:
            params["entity_id"] = entity_id
        return self._do(
            list[AuditEntry],
            lambda c, a: c.governance.audit(entity_id, limit, after_id),
            HttpCall("GET", "/api/audit", params=params),
        )

    def lineage(self, entity_id: str, direction: str = "both") -> LineageGraph:
        return self._do(
            LineageGraph,
            lambda c, a: c.governance.lineage(entity_id, direction),
            HttpCall("GET", f"/api/lineage/{entity_id}", params={"direction": direction}),
        )

    # --- keys --------------------------------------------------------------------------------

    def create_key(
        self, name: str, role: str = "viewer", limits: JsonDict | None = None
    ) -> ApiKeyCreated:
        spec = ApiKeyCreate.model_validate({"name": name, "role": role, "limits": limits or {}})
        return self._do(
            ApiKeyCreated, lambda c, a: c.keys.create(spec, a), HttpCall("POST", "/api/keys", spec)
        )

    def list_keys(self) -> list[ApiKeyPublic]:
        return self._do(
            list[ApiKeyPublic], lambda c, a: c.keys.list(), HttpCall("GET", "/api/keys")
        )

    def revoke_key(self, key_id: str) -> ApiKeyPublic:
        return self._do(
            ApiKeyPublic,
            lambda c, a: c.keys.revoke(key_id, a),
            HttpCall("POST", f"/api/keys/{key_id}/revoke"),
        )
