"""Structured output: the final answer must be JSON that validates against a JSON Schema.

Checked once, on the final text only (a partial JSON document is never valid), with the
``jsonschema`` library (Draft 2020-12 unless the schema says otherwise). A fenced code block
(```json ... ```) around the document is accepted. A malformed *schema* is a configuration error
raised when the guard is built, not a verdict. It does not repair or re-ask the model.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import Field

from llmloop.core.guards import GuardVerdict
from llmloop.errors import ConfigError, MissingExtraError
from llmloop.guards.base import Guard, GuardConfig

_FENCE = re.compile(r"^\s*```(?:json)?\s*\n(.*?)\n?```\s*$", re.S | re.I)


class JsonSchemaConfig(GuardConfig):
    json_schema: dict[str, Any] = Field(
        default_factory=dict, description="The JSON Schema the final output must satisfy."
    )
    allow_fence: bool = Field(default=True, description="Accept a ```json fenced block.")
    action: Literal["block", "flag"] = Field(default="block", description="What a failure does.")


def _validator(schema: dict[str, Any]) -> Any:
    try:
        import jsonschema
    except ImportError as exc:
        raise MissingExtraError("eval", "JSON-schema output validation") from exc
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ConfigError(f"invalid JSON schema: {exc.message}") from exc
    return cls(schema)


class JsonSchemaGuard(Guard):
    """Output guard: the final response must parse as JSON and satisfy ``json_schema``."""

    name = "json_schema"
    config_cls = JsonSchemaConfig
    config: JsonSchemaConfig
    window_chars = 0

    def __init__(self, config: JsonSchemaConfig | None = None) -> None:
        super().__init__(config)
        self._validator = _validator(self.config.json_schema)

    def _verdict(self, rule_id: str, reason: str) -> list[GuardVerdict]:
        return [
            GuardVerdict(
                guard=self.name,
                rule_id=rule_id,
                action=self.config.action,
                stage="output",
                reason=reason,
            )
        ]

    def validate(self, text: str) -> list[GuardVerdict]:
        """Verdicts on a complete document (empty when it is valid)."""
        fenced = _FENCE.match(text) if self.config.allow_fence else None
        body = fenced.group(1) if fenced else text
        try:
            document = json.loads(body)
        except json.JSONDecodeError as exc:
            return self._verdict("schema.invalid_json", f"not JSON: {exc.msg} at {exc.pos}")
        errors = sorted(self._validator.iter_errors(document), key=lambda e: list(e.path))
        if not errors:
            return []
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path) or "(root)"
        return self._verdict(
            "schema.violation", f"{len(errors)} error(s); at {where}: {first.message[:200]}"
        )

    def check_output(self, text: str, final: bool) -> list[GuardVerdict]:
        return self.validate(text) if final else []
