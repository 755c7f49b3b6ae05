"""Data preparation as use cases: ingest files, profile, clean with a recipe, split, diff and
augment — each result a new immutable dataset version whose lineage names its parent and the
recipe or step that made it.

Rows stream from source to a canonical JSONL temp file and into the artifact store, so files
larger than memory are never loaded whole; a failed step leaves no half-written version (the
version row is written last, in one transaction). The data adapters do the work.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from llmloop.core.base import NAME_PATTERN, ArtifactRef, JsonDict
from llmloop.core.datasets import DatasetVersionPublic
from llmloop.data.loaders import LoadOptions, LoadReport, RowReader
from llmloop.data.profile import DataProfile, ProfileConfig, Profiler
from llmloop.data.recipes import RecipeReport, RecipeRunner, RowDiff, diff_rows, load_recipe
from llmloop.data.shapes import Batch, detect_shape, write_canonical
from llmloop.data.split import SplitConfig, split_rows
from llmloop.errors import ConfigError, ConflictError, InvalidInputError, NotFoundError
from llmloop.services.actors import Actor
from llmloop.services.datasets import SchemaBuilder

REPORT_ARTIFACT_KEY = "report_artifact"


class _Sink:
    """Canonical JSONL written to a temp file while schema and shape are inferred on the way."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(tempfile.mkstemp(suffix=".jsonl", dir=directory)[1])
        self.schema = SchemaBuilder()
        self.shape: str | None = None

    def consume(self, batches: Iterable[Batch]) -> tuple[str, int]:
        def tap() -> Iterator[Batch]:
            for batch in batches:
                if batch and self.shape is None:
                    self.shape = detect_shape(batch[0]) or "table"
                self.schema.update(batch)
                yield batch

        with self.path.open("wb") as fh:
            return write_canonical(tap(), fh)


class DataService:
    def __init__(self, container: Any) -> None:
        self.c = container

    @contextmanager
    def _sink(self) -> Iterator[_Sink]:
        tmp = self.c.settings.home / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        sink = _Sink(tmp)
        try:
            yield sink
        finally:
            sink.path.unlink(missing_ok=True)

    def _store(
        self,
        sink: _Sink,
        count: int,
        dataset: str,
        actor: Actor,
        recipe: JsonDict,
        description: str,
        parent: DatasetVersionPublic | None = None,
        reuse: bool = False,
    ) -> DatasetVersionPublic:
        """Register the sink's rows; with ``reuse``, rows the dataset already holds as a version
        give that version back (a pipeline rerun) instead of a ConflictError."""
        if count == 0:
            raise InvalidInputError("no rows left: refusing to create an empty dataset version")
        ref = self.c.artifacts.put(sink.path)
        same_dataset = parent is not None and parent.dataset_name == dataset
        try:
            return self.c.datasets.register_version(
                dataset,
                ref,
                row_count=count,
                shape=sink.shape or "table",
                schema=sink.schema.result(),
                actor=actor,
                parent_version=parent.version if parent is not None and same_dataset else None,
                recipe=recipe,
                description=description,
                sources=[parent.id] if parent is not None and not same_dataset else None,
            )
        except ConflictError as exc:
            existing = exc.extra.get("existing_version")
            if not reuse or existing is None:
                raise
            return self.c.datasets.get_version(dataset, existing)

    def batches(self, version: DatasetVersionPublic, batch_size: int = 10_000) -> Iterator[Batch]:
        """The rows of a version, streamed from its artifact."""
        reader = RowReader(version.artifact.uri, LoadOptions(format="jsonl", batch_size=batch_size))
        yield from reader

    # --- use cases ---------------------------------------------------------------------------

    def ingest(
        self,
        source: str,
        dataset: str,
        actor: Actor,
        options: JsonDict | None = None,
        description: str = "",
        reuse: bool = False,
        source_name: str | None = None,
    ) -> tuple[DatasetVersionPublic, LoadReport]:
        """Read a file or folder (any fsspec URL) into a new version of ``dataset`` (``reuse``:
        see ``_store``). ``source_name`` is what messages and lineage call the source (an
        upload's own file name rather than the server's temp file)."""
        actor.require("editor")
        opts = LoadOptions.model_validate(options or {})
        name = source_name or source
        reader = RowReader(source, opts, name=name)
        with self._sink() as sink:
            _, count = sink.consume(reader)
            if count == 0:
                raise InvalidInputError(f"{name}: no valid rows to ingest")
            recipe = {
                "step": "ingest",
                "source": name,
                "options": opts.model_dump(mode="json", exclude={"storage_options"}),
                "rows_skipped": reader.report.rows_skipped,
            }
            version = self._store(sink, count, dataset, actor, recipe, description, reuse=reuse)
        return version, reader.report

    def profile(
        self,
        dataset: str,
        actor: Actor,
        version: int | str = "latest",
        config: JsonDict | None = None,
    ) -> tuple[DataProfile, str]:
        """EDA of a version: facts stored on the version, an HTML report stored as an artifact.
        Returns the profile and the HTML."""
        from llmloop.data.report import render_report

        actor.require("editor")
        dv = self.c.datasets.get_version(dataset, version)
        # The unpacked language model is cached under home, like the rest of llmloop's caches.
        raw = {"cache_dir": str(self.c.settings.home / "cache"), **(config or {})}
        with Profiler(ProfileConfig.model_validate(raw)) as profiler:
            for batch in self.batches(dv):
                profiler.update(batch)
            profile = profiler.finish()
        html = render_report(profile, title=f"{dataset} v{dv.version}")
        ref = self.c.artifacts.put(html.encode("utf-8"), name="profile.html")
        facts = profile.model_dump(mode="json")
        facts[REPORT_ARTIFACT_KEY] = ref.model_dump(mode="json")
        self.c.datasets.set_profile(dv.id, facts, actor)
        return profile, html

    def report_html(self, dataset: str, version: int | str = "latest") -> str:
        """The stored EDA report of a version (NotFoundError until it is profiled)."""
        dv = self.c.datasets.get_version(dataset, version)
        stored = (dv.profile or {}).get(REPORT_ARTIFACT_KEY)
        if not stored:
            raise NotFoundError(f"{dataset} v{dv.version} has no profile yet: profile it first")
        with self.c.artifacts.open(ArtifactRef.model_validate(stored)) as fh:
            return str(fh.read().decode("utf-8"))

    def clean(
        self,
        dataset: str,
        recipe: Any,
        actor: Actor,
        version: int | str = "latest",
        out_dataset: str | None = None,
        reuse: bool = False,
    ) -> tuple[DatasetVersionPublic, RecipeReport]:
        """Apply a cleaning recipe (YAML path, YAML text or mapping) to make a new version
        (``reuse``: see ``_store``)."""
        actor.require("editor")
        spec = load_recipe(recipe)
        spec = self._inject_secrets(spec)
        runner = RecipeRunner(spec, self._step_registry(spec))
        dv = self.c.datasets.get_version(dataset, version)
        with self._sink() as sink:
            _, count = sink.consume(runner.run(self.batches(dv)))
            lineage = {
                "step": "clean",
                "recipe": _public_recipe(spec),
                "report": runner.report.model_dump(mode="json", exclude={"steps"}),
                "removed_per_step": {
                    f"{s.index}:{s.step}": s.rows_removed for s in runner.report.steps
                },
            }
            new = self._store(
                sink,
                count,
                out_dataset or dataset,
                actor,
                lineage,
                f"clean of {dataset} v{dv.version} with {spec.name}",
                dv,
                reuse,
            )
        return new, runner.report

    def split(
        self,
        dataset: str,
        actor: Actor,
        version: int | str = "latest",
        config: JsonDict | None = None,
        reuse: bool = False,
    ) -> tuple[dict[str, DatasetVersionPublic], JsonDict]:
        """Split a version into ``<dataset>-<split>`` datasets (deterministic by seed), with a
        leakage check across splits (``reuse``: see ``_store``)."""
        actor.require("editor")
        cfg = SplitConfig.model_validate(config or {})
        targets = {name: f"{dataset}-{name}" for name in cfg.ratios}
        for target in targets.values():
            if not NAME_PATTERN.match(target):
                raise InvalidInputError(
                    f"split dataset name {target!r} must be 1-128 characters of letters, "
                    "digits, '.', '_' or '-': rename the split"
                )
        dv = self.c.datasets.get_version(dataset, version)
        rows = [row for batch in self.batches(dv) for row in batch]
        result = split_rows(rows, cfg)
        for name, part in result.splits.items():
            if not part:
                why = " once leaking rows are removed" if result.leakage.removed else ""
                raise InvalidInputError(
                    f"split '{name}' would be empty{why}: add rows or change ratios"
                )
        recipe = {"step": "split", "config": cfg.model_dump(mode="json")}
        made: dict[str, DatasetVersionPublic] = {}
        with ExitStack() as stack:
            sinks: dict[str, tuple[_Sink, str, int]] = {}
            for name, part in result.splits.items():
                sink = stack.enter_context(self._sink())
                sinks[name] = (sink, *sink.consume([part]))
            # Every refusal comes before the first version is stored: all splits or none.
            if not reuse:
                for name, (_, digest, _) in sinks.items():
                    existing = self.c.datasets.version_with_content(targets[name], digest)
                    if existing is not None:
                        raise ConflictError(
                            f"dataset '{targets[name]}' already has this split as version "
                            f"{existing}: nothing was stored",
                            existing_version=existing,
                        )
            for name, (sink, _, count) in sinks.items():
                made[name] = self._store(
                    sink,
                    count,
                    targets[name],
                    actor,
                    {**recipe, "split": name},
                    f"{name} split of {dataset} v{dv.version}",
                    dv,
                    reuse,
                )
        report = {
            "counts": result.counts,
            "strata": result.strata,
            "leakage": result.leakage.model_dump(mode="json"),
        }
        return made, report

    def combine(
        self,
        sources: list[tuple[str, int | str]],
        out_dataset: str,
        actor: Actor,
        description: str = "",
    ) -> DatasetVersionPublic:
        """Concatenate dataset versions (e.g. training data plus curated feedback) into a new
        version whose lineage names every source."""
        actor.require("editor")
        if not sources:
            raise InvalidInputError("combine needs at least one source dataset")
        versions = [self.c.datasets.get_version(name, ref) for name, ref in sources]

        def batches() -> Iterator[Batch]:
            for version in versions:
                yield from self.batches(version)

        with self._sink() as sink:
            _, count = sink.consume(batches())
            if count == 0:
                raise InvalidInputError("no rows left: refusing to create an empty dataset version")
            ref = self.c.artifacts.put(sink.path)
            recipe = {
                "step": "combine",
                "sources": [f"{v.dataset_name}:v{v.version}" for v in versions],
            }
            return self.c.datasets.register_version(
                out_dataset,
                ref,
                row_count=count,
                shape=sink.shape or "table",
                schema=sink.schema.result(),
                actor=actor,
                recipe=recipe,
                description=description,
                sources=[v.id for v in versions],
            )

    def diff(self, dataset: str, a: int | str, b: int | str, key: str | None = None) -> RowDiff:
        """Rows added, removed and changed between two versions."""
        va = self.c.datasets.get_version(dataset, a)
        vb = self.c.datasets.get_version(dataset, b)
        rows_a = [r for batch in self.batches(va) for r in batch]
        rows_b = [r for batch in self.batches(vb) for r in batch]
        return diff_rows(rows_a, rows_b, key=key)

    def augment(
        self,
        dataset: str,
        actor: Actor,
        templates: JsonDict | None = None,
        paraphrase: JsonDict | None = None,
        generate: Callable[[str], Any] | None = None,
        version: int | str = "latest",
    ) -> tuple[DatasetVersionPublic, JsonDict]:
        """Template expansion (new rows) and/or paraphrase through ``generate`` (an async
        prompt -> text callable, e.g. a deployment); recorded in lineage."""
        from llmloop.data.augment import (
            ParaphraseConfig,
            TemplateConfig,
            expand_templates,
            paraphrase_rows,
        )

        actor.require("editor")
        if templates is None and paraphrase is None:
            raise ConfigError("give templates and/or paraphrase settings")
        parent = None
        rows: list[JsonDict] = []
        reports: JsonDict = {}
        if templates is not None:
            made, rep = expand_templates(TemplateConfig.model_validate(templates))
            rows += made
            reports["templates"] = rep.model_dump(mode="json")
        if paraphrase is not None:
            if generate is None:
                raise ConfigError("paraphrase needs a model: pass --model or a deployment")
            parent = self.c.datasets.get_version(dataset, version)
            base = [r for batch in self.batches(parent) for r in batch]
            para, rep = asyncio.run(
                paraphrase_rows(base, generate, ParaphraseConfig.model_validate(paraphrase))
            )
            rows = base + rows + para
            reports["paraphrase"] = rep.model_dump(mode="json")
        with self._sink() as sink:
            _, count = sink.consume([rows])
            recipe = {
                "step": "augment",
                "templates": templates,
                "paraphrase": paraphrase,
                "report": reports,
            }
            new = self._store(sink, count, dataset, actor, recipe, "augmentation", parent)
        return new, reports

    # --- helpers -----------------------------------------------------------------------------

    def _step_registry(self, spec: Any) -> dict[str, Any]:
        plugins = self.c.plugins
        names = set(plugins.names("data_steps"))
        unknown = [s.step for s in spec.steps if s.step not in names]
        if unknown:
            known = ", ".join(sorted(names))
            raise ConfigError(f"unknown recipe step(s) {', '.join(unknown)} (known: {known})")
        return {s.step: plugins.resolve("data_steps", s.step) for s in spec.steps}

    def _inject_secrets(self, spec: Any) -> Any:
        """Pseudonymisation keys come from settings, never from the recipe stored in lineage."""
        steps = []
        for item in spec.steps:
            config = dict(item.config)
            if item.step == "pii" and config.get("action") == "pseudonymise":
                if config.get("key"):
                    raise ConfigError(
                        "do not put a pseudonymisation key in a recipe: set "
                        "LLMLOOP_PII_KEY instead (the recipe is stored in lineage)"
                    )
                if not self.c.settings.pii_key:
                    raise ConfigError("pseudonymisation needs a key: set LLMLOOP_PII_KEY")
                config["key"] = self.c.settings.pii_key
            steps.append(item.model_copy(update={"config": config}))
        return spec.model_copy(update={"steps": steps})


def _public_recipe(spec: Any) -> JsonDict:
    data: JsonDict = spec.model_dump(mode="json")
    for step in data.get("steps", []):
        step.get("config", {}).pop("key", None)
    return data
