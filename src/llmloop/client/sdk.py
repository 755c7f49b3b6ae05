"""``llmloop.Client``: one class, two ways in (in process, or HTTP), the same nouns and verbs as
the CLI and the REST API. Methods return the same pydantic values either way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

from llmloop.client import checks
from llmloop.client.governance import GovernanceMethods
from llmloop.client.loop import LoopMethods
from llmloop.client.transport import HttpCall, HttpTransport, LocalTransport
from llmloop.config import Settings, load_settings
from llmloop.core.base import JsonDict
from llmloop.core.datasets import (
    DatasetCreate,
    DatasetPublic,
    DatasetVersionCreate,
    DatasetVersionPublic,
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
from llmloop.core.runs import (
    MetricLog,
    MetricPoint,
    RunCreate,
    RunFinish,
    RunInput,
    RunKind,
    RunPublic,
    RunStatus,
)
from llmloop.errors import InvalidInputError
from llmloop.services.actors import local_actor

RUN_KINDS: tuple[str, ...] = get_args(RunKind)
RUN_STATUSES: tuple[str, ...] = get_args(RunStatus)


class Client(LoopMethods, GovernanceMethods):
    """``Client()`` works on the local store; ``Client(url=..., api_key=...)`` talks HTTP.

    Arguments are checked before the call goes either way (``client/checks.py``), so both
    raise the same ``llmloop.errors`` exception for the same mistake.
    """

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

    # --- datasets ----------------------------------------------------------------------------

    def create_dataset(self, name: str, description: str = "") -> DatasetPublic:
        spec = checks.build(DatasetCreate, name=name, description=description)
        return self._do(
            DatasetPublic,
            lambda c, a: c.datasets.create(spec, a),
            HttpCall("POST", "/api/datasets", spec),
        )

    def list_datasets(self, limit: int = 100, offset: int = 0) -> list[DatasetPublic]:
        checks.page(limit, offset)
        return self._do(
            list[DatasetPublic],
            lambda c, a: c.datasets.list(limit, offset),
            HttpCall("GET", "/api/datasets", params={"limit": limit, "offset": offset}),
        )

    def get_dataset(self, name: str) -> DatasetPublic:
        checks.name(name, "dataset")
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
        checks.name(name, "dataset")
        spec = checks.build(
            DatasetVersionCreate,
            rows=rows,
            description=description,
            parent_version=parent_version,
            recipe=recipe,
        )
        return self._do(
            DatasetVersionPublic,
            lambda c, a: c.datasets.create_version(name, spec, a),
            HttpCall("POST", f"/api/datasets/{name}/versions", spec),
        )

    def list_dataset_versions(self, name: str) -> list[DatasetVersionPublic]:
        checks.name(name, "dataset")
        return self._do(
            list[DatasetVersionPublic],
            lambda c, a: c.datasets.list_versions(name),
            HttpCall("GET", f"/api/datasets/{name}/versions"),
        )

    def get_dataset_version(self, name: str, version: int | str = "latest") -> DatasetVersionPublic:
        checks.name(name, "dataset")
        checks.ref(version)
        return self._do(
            DatasetVersionPublic,
            lambda c, a: c.datasets.get_version(name, version),
            HttpCall("GET", f"/api/datasets/{name}/versions/{version}"),
        )

    # --- data preparation --------------------------------------------------------------------

    def ingest(self, path: str, dataset: str, on_error: str = "fail") -> JsonDict:
        """Ingest a local file (uploaded when talking HTTP) as a new dataset version."""
        checks.name(dataset, "dataset")
        checks.choice(on_error, ("fail", "skip"), "on_error")

        def local(c: Any, a: Any) -> JsonDict:
            version, report = c.data.ingest(path, dataset, a, {"on_error": on_error})
            return {
                "version": version.model_dump(mode="json", by_alias=True),
                "report": report.model_dump(mode="json"),
            }

        if isinstance(self._t, LocalTransport):
            return self._do(None, local, HttpCall("POST", ""))
        try:
            fh = open(path, "rb")  # noqa: SIM115 - closed below, after the upload
        except FileNotFoundError:
            raise InvalidInputError(f"no such file: {path}") from None
        except OSError as exc:
            raise InvalidInputError(f"cannot read {path}: {exc.strerror or exc}") from None
        with fh:  # the upload streams the file: it is never read whole into memory
            files = {"file": (Path(path).name, fh)}
            return self._do(
                None,
                local,
                HttpCall(
                    "POST", f"/api/data/{dataset}/ingest", files=files, data={"on_error": on_error}
                ),
            )

    def profile_dataset(self, dataset: str, version: int | str = "latest") -> JsonDict:
        checks.name(dataset, "dataset")
        checks.ref(version)
        return self._do(
            None,
            lambda c, a: c.data.profile(dataset, a, version)[0].model_dump(mode="json"),
            HttpCall("POST", f"/api/data/{dataset}/versions/{version}/profile"),
        )

    def clean_dataset(
        self, dataset: str, recipe: JsonDict, version: int | str = "latest", to: str | None = None
    ) -> DatasetVersionPublic:
        checks.name(dataset, "dataset")
        checks.ref(version)
        if to is not None:
            checks.name(to, "dataset")

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
        checks.name(dataset, "dataset")
        checks.ref(version)

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
        spec = checks.build(PromptCreate, name=name, description=description)
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
        checks.name(name, "prompt")
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
        checks.name(name, "prompt")
        spec = checks.build(
            PromptVersionCreate,
            template=template,
            variables=variables,
            params=params or {},
            message=message,
        )
        return self._do(
            PromptVersionPublic,
            lambda c, a: c.prompts.create_version(name, spec, a),
            HttpCall("POST", f"/api/prompts/{name}/versions", spec),
        )

    def list_prompt_versions(self, name: str) -> list[PromptVersionPublic]:
        checks.name(name, "prompt")
        return self._do(
            list[PromptVersionPublic],
            lambda c, a: c.prompts.list_versions(name),
            HttpCall("GET", f"/api/prompts/{name}/versions"),
        )

    def get_prompt_version(self, name: str, ref: int | str = "latest") -> PromptVersionPublic:
        checks.name(name, "prompt")
        checks.ref(ref)
        return self._do(
            PromptVersionPublic,
            lambda c, a: c.prompts.get_version(name, ref),
            HttpCall("GET", f"/api/prompts/{name}/versions/{ref}"),
        )

    def render_prompt(
        self, name: str, variables: JsonDict, ref: int | str = "production"
    ) -> PromptRendered:
        checks.name(name, "prompt")
        checks.ref(ref)
        body = checks.build(PromptRender, variables=variables)
        return self._do(
            PromptRendered,
            lambda c, a: c.prompts.render(name, variables, ref),
            HttpCall("POST", f"/api/prompts/{name}/render", body, params={"ref": str(ref)}),
        )

    def diff_prompt(self, name: str, a: int | str, b: int | str) -> JsonDict:
        checks.name(name, "prompt")
        checks.ref(a)
        checks.ref(b)
        return self._do(
            None,
            lambda c, _: c.prompts.diff(name, a, b),
            HttpCall("GET", f"/api/prompts/{name}/diff", params={"a": str(a), "b": str(b)}),
        )

    def set_prompt_label(self, name: str, label: str, version: int) -> PromptPublic:
        checks.name(name, "prompt")
        body = checks.build(LabelMove, label=label, version=version)
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
        items = [
            i if isinstance(i, RunInput) else checks.build(RunInput, id=i) for i in inputs or []
        ]
        spec = checks.build(
            RunCreate,
            name=name,
            kind=kind,
            params=params or {},
            parent_id=parent_id,
            inputs=items,
            tags=tags or {},
        )
        return self._do(
            RunPublic, lambda c, a: c.runs.create(spec, a), HttpCall("POST", "/api/runs", spec)
        )

    def get_run(self, run_id: str) -> RunPublic:
        checks.entity_id(run_id, "run")
        return self._do(
            RunPublic, lambda c, a: c.runs.get(run_id), HttpCall("GET", f"/api/runs/{run_id}")
        )

    def list_runs(self, kind: str | None = None, status: str | None = None) -> list[RunPublic]:
        checks.choice(kind, RUN_KINDS, "kind")
        checks.choice(status, RUN_STATUSES, "status")
        params = {k: v for k, v in (("kind", kind), ("status", status)) if v}
        return self._do(
            list[RunPublic],
            lambda c, a: c.runs.list(kind, status),
            HttpCall("GET", "/api/runs", params=params),
        )

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int = 0) -> int:
        checks.entity_id(run_id, "run")
        points = [checks.build(MetricPoint, key=k, value=v, step=step) for k, v in metrics.items()]
        body = checks.build(MetricLog, points=points)
        result = self._do(
            None,
            lambda c, a: c.runs.log_metrics(run_id, points, a),
            HttpCall("POST", f"/api/runs/{run_id}/metrics", body),
        )
        return int(result["logged"] if isinstance(result, dict) else result)

    def log_params(self, run_id: str, params: JsonDict) -> RunPublic:
        checks.entity_id(run_id, "run")
        return self._do(
            RunPublic,
            lambda c, a: c.runs.log_params(run_id, params, a),
            HttpCall("PATCH", f"/api/runs/{run_id}/params", params),
        )

    def finish_run(self, run_id: str, status: str = "finished") -> RunPublic:
        checks.entity_id(run_id, "run")
        body = checks.build(RunFinish, status=status)
        return self._do(
            RunPublic,
            lambda c, a: c.runs.finish(run_id, status, a),
            HttpCall("POST", f"/api/runs/{run_id}/finish", body),
        )

    def metric_series(self, run_id: str, key: str | None = None) -> dict[str, list[JsonDict]]:
        checks.entity_id(run_id, "run")
        return self._do(
            None,
            lambda c, a: c.runs.metric_series(run_id, key),
            HttpCall("GET", f"/api/runs/{run_id}/metrics", params={"key": key} if key else None),
        )
