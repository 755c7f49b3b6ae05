"""Augmentation: template expansion over variable lists, and paraphrase through a caller's model.

``expand_templates`` renders sandboxed Jinja2 templates (one per output field) over the product
of variable lists into new rows. ``paraphrase_rows`` asks a caller-supplied async
``generate(prompt) -> str`` (the service passes a deployment or engine; tests pass a fake) for
paraphrases of one text field, with bounded concurrency. Both return an ``AugmentReport``.

It does not pick or call a model itself, and never touches the network on its own.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

from jinja2 import TemplateError
from pydantic import BaseModel, ConfigDict, Field

from llmloop.core.sandbox import BoundedSandbox, render_compiled
from llmloop.data.shapes import Row
from llmloop.errors import ConfigError, InvalidInputError

Generate = Callable[[str], Awaitable[str]]
MAX_EXAMPLES = 3


class AugmentReport(BaseModel):
    step: str
    rows_in: int = 0
    rows_added: int = 0
    failures: int = 0
    errors: list[str] = Field(default_factory=list, description="First few failure messages.")
    examples: list[dict[str, Any]] = Field(default_factory=list)


class TemplateConfig(BaseModel):
    """Templates per output field, rendered over every combination of the variables."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    templates: dict[str, str] = Field(min_length=1, description="Output field -> Jinja2 template.")
    variables: dict[str, list[Any]] = Field(description="Variable -> values to combine.")
    max_rows: int = Field(default=100_000, ge=1, description="Refuse expansions larger than this.")
    keep_variables: bool = Field(default=False, description="Copy variable values into each row.")


def expand_templates(config: TemplateConfig) -> tuple[list[Row], AugmentReport]:
    """One row per combination of variable values; undefined variables are errors."""
    env = BoundedSandbox()
    try:
        compiled = {field: env.from_string(text) for field, text in config.templates.items()}
    except TemplateError as exc:
        raise ConfigError(f"template does not parse: {exc}")
    if any(not values for values in config.variables.values()):
        raise ConfigError("every template variable needs at least one value")
    total = 1
    for values in config.variables.values():
        total *= len(values)
    if total > config.max_rows:
        raise ConfigError(f"templates would make {total} rows, over max_rows={config.max_rows}")
    names = list(config.variables)
    rows: list[Row] = []
    for combination in itertools.product(*(config.variables[n] for n in names)):
        context = dict(zip(names, combination, strict=True))
        try:
            row: Row = {
                field: render_compiled(template, context) for field, template in compiled.items()
            }
        except TemplateError as exc:
            raise ConfigError(f"template failed for {context}: {exc}")
        if config.keep_variables:
            row.update({k: v for k, v in context.items() if k not in row})
        rows.append(row)
    report = AugmentReport(step="template", rows_added=len(rows), examples=rows[:MAX_EXAMPLES])
    return rows, report


class ParaphraseConfig(BaseModel):
    """How to paraphrase one text field of each row."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    field: str = Field(default="prompt", description="Field whose text is paraphrased.")
    instruction: str = Field(
        default=(
            "Paraphrase the following text. Keep its meaning; reply with the paraphrase only."
            "\n\n{text}"
        ),
        description="Prompt sent to the model; '{text}' is replaced by the field's text.",
    )
    variants: int = Field(default=1, ge=1, le=20, description="Paraphrases per row.")
    concurrency: int = Field(default=4, ge=1, le=256, description="Requests in flight at once.")
    keep_original: bool = Field(default=True, description="Return the original rows too.")
    on_error: Literal["skip", "fail"] = Field(default="skip", description="On a failed request.")
    mark_field: str | None = Field(
        default="augmented_from", description="Field recording the source row index; None for none."
    )


async def paraphrase_rows(
    rows: Sequence[Row], generate: Generate, config: ParaphraseConfig | None = None
) -> tuple[list[Row], AugmentReport]:
    """Originals (if kept) followed by paraphrased copies, in a deterministic order."""
    cfg = config if config is not None else ParaphraseConfig()
    if "{text}" not in cfg.instruction:
        raise ConfigError("the paraphrase instruction must contain '{text}'")
    for index, row in enumerate(rows):
        if not isinstance(row.get(cfg.field), str):
            raise InvalidInputError(f"row {index} has no text field {cfg.field!r} to paraphrase")
    report = AugmentReport(step="paraphrase", rows_in=len(rows))
    limit = asyncio.Semaphore(cfg.concurrency)

    async def one(index: int, row: Row) -> Row | None:
        async with limit:
            try:
                text = await generate(cfg.instruction.replace("{text}", row[cfg.field]))
            except Exception as exc:
                if cfg.on_error == "fail":
                    raise InvalidInputError(f"paraphrase of row {index} failed: {exc}")
                report.failures += 1
                if len(report.errors) < MAX_EXAMPLES:
                    report.errors.append(f"row {index}: {type(exc).__name__}: {exc}")
                return None
        text = text.strip() if isinstance(text, str) else ""
        if not text or text == row[cfg.field].strip():
            report.failures += 1
            return None
        out = {**row, cfg.field: text}
        if cfg.mark_field:
            out[cfg.mark_field] = index
        return out

    jobs = [one(i, row) for i, row in enumerate(rows) for _ in range(cfg.variants)]
    made = [r for r in await asyncio.gather(*jobs) if r is not None]
    report.rows_added = len(made)
    report.examples = made[:MAX_EXAMPLES]
    return ([*rows, *made] if cfg.keep_original else made), report
