"""Cleaning recipes: a declarative list of steps, applied as a stream, with a report per step.

A recipe is YAML (or a dict)::

    name: clean-v1
    steps:
      - fix_unicode: {}
      - near_dedup: {threshold: 0.85}
      - step: pii            # the other spelling: a 'step' key beside the config
        action: redact

``build_steps`` turns it into step instances (``ConfigError`` naming the step index and the known
steps when a name or a config is wrong); ``RecipeRunner.run`` streams batches through them and
fills a ``RecipeReport`` (rows removed and changed per step, with examples). ``diff_rows``
compares two row streams by a key field or by content hash.

It does not load files (``loaders``) nor store versions (the service does).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llmloop.data.shapes import Batch, Row, row_hash, row_text
from llmloop.data.steps import STEPS, Step
from llmloop.errors import ConfigError, InvalidInputError

MAX_EXAMPLES = 3
_EXAMPLE_CHARS = 300


class StepSpec(BaseModel):
    """One step of a recipe: its registered name and its config."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    step: str = Field(description="Registered step name, e.g. 'near_dedup'.")
    config: dict[str, Any] = Field(default_factory=dict, description="The step's config fields.")


class Recipe(BaseModel):
    """A named, ordered list of cleaning steps (stored with the dataset version it made)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(default="recipe", description="Recipe name, for lineage.")
    description: str = Field(default="", description="What the recipe is for.")
    steps: list[StepSpec] = Field(description="Steps in the order they run.")


class StepExample(BaseModel):
    kind: Literal["removed", "changed"]
    before: str
    after: str = ""
    reason: str = ""


class StepReport(BaseModel):
    index: int = Field(description="0-based position in the recipe.")
    step: str
    rows_in: int = 0
    rows_removed: int = 0
    rows_changed: int = 0
    examples: list[StepExample] = Field(default_factory=list)


class RecipeReport(BaseModel):
    recipe: str
    rows_in: int = 0
    rows_out: int = 0
    steps: list[StepReport] = Field(default_factory=list)

    def step(self, name: str) -> StepReport:
        """The report of the first step called ``name``."""
        for report in self.steps:
            if report.step == name:
                return report
        raise InvalidInputError(f"recipe {self.recipe!r} has no step {name!r}")


def _spec(index: int, item: Any) -> StepSpec:
    if isinstance(item, str):
        return StepSpec(step=item)
    if isinstance(item, Mapping) and "step" in item and set(item) <= {"step", "config"}:
        config = item.get("config") or {}
        if not isinstance(config, Mapping):
            raise ConfigError(f"recipe step {index} ({item['step']}): config must be a mapping")
        return StepSpec(step=str(item["step"]), config=dict(config))
    if isinstance(item, Mapping) and "step" in item:
        return StepSpec(
            step=str(item["step"]), config={k: v for k, v in item.items() if k != "step"}
        )
    if isinstance(item, Mapping) and len(item) == 1:
        ((name, config),) = item.items()
        if config is None:
            config = {}
        if not isinstance(config, Mapping):
            raise ConfigError(f"recipe step {index} ({name}): config must be a mapping")
        return StepSpec(step=str(name), config=dict(config))
    raise ConfigError(f"recipe step {index}: write '- NAME: {{config}}' or '- step: NAME'")


def load_recipe(source: Recipe | Mapping[str, Any] | str | Path) -> Recipe:
    """A recipe from a ``Recipe``, a dict, a YAML string or a YAML file path."""
    if isinstance(source, Recipe):
        return source
    if isinstance(source, Path) or (
        isinstance(source, str) and "\n" not in source and source.endswith((".yaml", ".yml"))
    ):
        try:
            source = Path(source).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read recipe {source}: {exc}")
    if isinstance(source, str):
        try:
            source = yaml.safe_load(source)
        except yaml.YAMLError as exc:
            raise ConfigError(f"recipe is not valid YAML: {exc}")
    if not isinstance(source, Mapping) or not isinstance(source.get("steps"), list):
        raise ConfigError("a recipe is a mapping with a 'steps' list")
    steps = [_spec(i, item) for i, item in enumerate(source["steps"])]
    try:
        return Recipe(
            name=source.get("name", "recipe"),
            description=source.get("description", ""),
            steps=steps,
        )
    except ValidationError as exc:
        raise ConfigError(f"recipe is invalid: {exc}")


def build_steps(recipe: Recipe, registry: Mapping[str, type[Step]] | None = None) -> list[Step]:
    """Step instances for ``recipe``; unknown names and bad configs raise ``ConfigError``."""
    known = registry if registry is not None else STEPS
    steps: list[Step] = []
    for index, spec in enumerate(recipe.steps):
        cls = known.get(spec.step)
        if cls is None:
            raise ConfigError(
                f"recipe step {index}: unknown step {spec.step!r}; "
                f"known steps: {', '.join(sorted(known))}",
                step_index=index,
                known_steps=sorted(known),
            )
        try:
            steps.append(cls(cls.config_cls.model_validate(spec.config)))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in exc.errors()
            )
            raise ConfigError(f"recipe step {index} ({spec.step}): {problems}", step_index=index)
        except ConfigError as exc:
            raise ConfigError(f"recipe step {index} ({spec.step}): {exc.detail}", step_index=index)
    return steps


def _example(text: str) -> str:
    return text if len(text) <= _EXAMPLE_CHARS else text[:_EXAMPLE_CHARS] + "…"


class RecipeRunner:
    """Runs a recipe over a stream of batches; ``report`` is complete when the stream ends."""

    def __init__(self, recipe: Recipe, registry: Mapping[str, type[Step]] | None = None) -> None:
        self.recipe = recipe
        self.steps = build_steps(recipe, registry)
        self.report = RecipeReport(
            recipe=recipe.name,
            steps=[StepReport(index=i, step=s.step) for i, s in enumerate(recipe.steps)],
        )

    def run(self, batches: Iterable[Batch]) -> Iterator[Batch]:
        """The cleaned batches (empty batches are not yielded)."""
        for batch in batches:
            self.report.rows_in += len(batch)
            for step, report in zip(self.steps, self.report.steps, strict=True):
                batch = self._apply(step, report, batch)
                if not batch:
                    break
            self.report.rows_out += len(batch)
            if batch:
                yield batch

    def _apply(self, step: Step, report: StepReport, batch: Batch) -> Batch:
        outcomes = step.apply(batch)
        if len(outcomes) != len(batch):
            raise InvalidInputError(
                f"step {report.step} returned {len(outcomes)} outcomes for {len(batch)} rows"
            )
        report.rows_in += len(batch)
        kept: Batch = []
        for before, (after, reason) in zip(batch, outcomes, strict=True):
            if after is None:
                report.rows_removed += 1
                if len(report.examples) < MAX_EXAMPLES:
                    report.examples.append(
                        StepExample(
                            kind="removed", before=_example(row_text(before)), reason=reason
                        )
                    )
                continue
            if after != before:
                report.rows_changed += 1
                if sum(e.kind == "changed" for e in report.examples) < MAX_EXAMPLES:
                    report.examples.append(
                        StepExample(
                            kind="changed",
                            before=_example(row_text(before)),
                            after=_example(row_text(after)),
                        )
                    )
            kept.append(after)
        return kept


def apply_recipe(
    recipe: Recipe | Mapping[str, Any] | str | Path,
    batches: Iterable[Batch],
    registry: Mapping[str, type[Step]] | None = None,
) -> tuple[list[Row], RecipeReport]:
    """All cleaned rows and the report (for small data; stream with ``RecipeRunner`` otherwise)."""
    runner = RecipeRunner(load_recipe(recipe), registry)
    rows = [row for batch in runner.run(batches) for row in batch]
    return rows, runner.report


class RowDiff(BaseModel):
    added: int
    removed: int
    changed: int
    unchanged: int
    key: str | None = Field(description="Key field compared by; None means by content hash.")
    examples: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)


def diff_rows(old: Iterable[Row], new: Iterable[Row], key: str | None = None) -> RowDiff:
    """Rows added, removed and changed from ``old`` to ``new``.

    With ``key`` rows are matched by that field (a changed row keeps its key); without, rows are
    compared by content hash, so an edit counts as one removal plus one addition.
    """

    def ident(row: Row) -> str:
        if key is None:
            return row_hash(row)
        if key not in row:
            raise InvalidInputError(f"row has no key field {key!r}: {sorted(row)}")
        return repr(row[key])

    before: dict[str, tuple[str, Row]] = {}
    for row in old:
        before[ident(row)] = (row_hash(row), row)
    examples: dict[str, list[dict[str, Any]]] = {"added": [], "removed": [], "changed": []}
    added = changed = unchanged = 0
    for row in new:
        found = before.pop(ident(row), None)
        if found is None:
            added += 1
            if len(examples["added"]) < MAX_EXAMPLES:
                examples["added"].append(row)
        elif found[0] != row_hash(row):
            changed += 1
            if len(examples["changed"]) < MAX_EXAMPLES:
                examples["changed"].append({"before": found[1], "after": row})
        else:
            unchanged += 1
    examples["removed"] = [row for _, row in list(before.values())[:MAX_EXAMPLES]]
    return RowDiff(
        added=added,
        removed=len(before),
        changed=changed,
        unchanged=unchanged,
        key=key,
        examples=examples,
    )
