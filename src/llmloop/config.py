"""Settings: built once at an edge (CLI, ``create_app``, ``Client``) and passed down.

Precedence: explicit flags > environment ``LLMLOOP_*`` > ``llmloop.toml`` > defaults.
``describe_settings`` reports where each effective value came from (``llmloop config show``).
Nothing below ``services`` reads the environment; only :func:`load_settings` does.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from llmloop.errors import ConfigError

ENV_PREFIX = "LLMLOOP_"
CONFIG_FILE_NAME = "llmloop.toml"
SECRET_SETTINGS = frozenset({"pii_key"})


class Settings(BaseSettings):
    """Every setting of llmloop, each described; the reference docs are generated from this."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    home: Path = Field(
        default_factory=lambda: Path("~/.llmloop").expanduser(),
        description="Folder for the embedded database, artifacts and caches.",
    )
    database_url: str = Field(
        default="",
        description="SQLAlchemy URL of the store; default: SQLite file under home (WAL mode). "
        "PostgreSQL: postgresql+psycopg://user@host/db.",
    )
    artifacts_url: str = Field(
        default="",
        description="fsspec URL of the artifact store root; default: a folder under home.",
    )
    redis_url: str = Field(
        default="",
        description="Redis URL shared by several gateway processes for limits and caches; "
        "empty keeps limits in the store.",
    )
    host: str = Field(default="127.0.0.1", description="Address `llmloop serve` binds.")
    port: int = Field(default=8400, ge=0, le=65535, description="Port `llmloop serve` binds.")
    max_body_bytes: int = Field(
        default=8 * 1024 * 1024, gt=0, description="Largest request body the server accepts."
    )
    server_gc_threshold: int = Field(
        default=10_000,
        ge=0,
        description="The server's garbage collector: collect the youngest generation after "
        "this many new container objects (Python's default is 700, which under load spent "
        "over a tenth of the gateway's CPU re-scanning in-flight requests), with the objects "
        "built at start-up frozen out of every collection. 0 keeps Python's defaults.",
    )
    auto_migrate_empty: bool = Field(
        default=True,
        description="Create the schema in an empty database on first use "
        "(an outdated one is never upgraded silently).",
    )
    deployments_file: str = Field(
        default="", description="YAML file of deployments loaded when the server starts."
    )
    allow_self_approval: bool = Field(
        default=False,
        description="Let the requester of an approval also approve it (single-person setups).",
    )
    pipelines_dir: str = Field(
        default="",
        description="Folder of pipeline YAML files whose triggers the server checks; empty: off.",
    )
    pipeline_tick_s: float = Field(
        default=30.0, gt=0, description="How often the server checks pipeline triggers."
    )
    pii_key: str = Field(
        default="",
        description="Secret key for PII pseudonymisation (HMAC); kept out of recipes and lineage.",
    )
    device_hour_price: float = Field(
        default=0.0, ge=0, description="Price of one device-hour, for cost estimates."
    )
    log_level: str = Field(default="INFO", description="Log level of the server and CLI.")
    trace_flush_ms: int = Field(
        default=200, ge=1, le=60_000, description="Gateway trace writer: flush at least this often."
    )
    trace_batch_size: int = Field(
        default=500, ge=1, le=100_000, description="Gateway trace writer: rows per bulk insert."
    )
    trace_queue_max: int = Field(
        default=100_000,
        ge=1,
        description="Gateway trace writer: records held in memory; beyond it the oldest "
        "unwritten records are dropped and counted (the request path never waits).",
    )
    trace_writer: str = Field(
        default="process",
        pattern="^(process|thread)$",
        description="Gateway trace writer: 'process' inserts traces in a child process beside "
        "the server (the server's event loop only hands over batches); 'thread' inserts them "
        "from a worker thread of the server process.",
    )
    trace_max_text: int = Field(
        default=4000, ge=0, description="Characters of request/response text kept per trace."
    )
    responses_store_max: int = Field(
        default=10_000,
        ge=0,
        description="Responses API: answers kept for previous_response_id and "
        "GET /v1/responses/{id}, in each gateway process's memory or, with redis_url, in Redis "
        "for every process (least recently used go first; 0 keeps none).",
    )
    otel_exporter: str = Field(
        default="none",
        pattern="^(none|console|otlp)$",
        description="Export gateway spans through OpenTelemetry: none, console or otlp.",
    )
    otel_endpoint: str = Field(
        default="", description="OTLP/HTTP endpoint for spans (empty: the SDK's default)."
    )
    metrics_public: bool = Field(
        default=True,
        description="Serve Prometheus /metrics without an API key (like /health); "
        "set false to require a viewer key.",
    )
    gateway_reload_s: float = Field(
        default=10.0,
        ge=0,
        description="How often the gateway re-resolves deployment aliases (0: only on demand).",
    )
    drift_interval_s: float = Field(
        default=0.0,
        ge=0,
        description="How often the server runs drift checks per deployment (0: never; "
        "`llmloop drift run` or POST /api/drift/run run them on demand).",
    )
    drift_window_s: float = Field(
        default=3600.0,
        gt=0,
        description="Scheduled drift: the last window_s of traces against the window_s before it.",
    )
    alert_interval_s: float = Field(
        default=60.0, ge=0, description="How often the server evaluates alert rules (0: never)."
    )
    alert_webhook_timeout_s: float = Field(
        default=5.0, gt=0, description="Timeout of one alert webhook POST."
    )
    alert_webhook_retries: int = Field(
        default=3, ge=0, le=10, description="Retries of a failed alert webhook POST."
    )

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        home = Path(self.home).expanduser()
        object.__setattr__(self, "home", home)
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{home / 'llmloop.db'}")
        if not self.artifacts_url:
            object.__setattr__(self, "artifacts_url", str(home / "artifacts"))
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file is merged by load_settings (so its path can be chosen per call).
        return (init_settings, env_settings)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    section = data.get("llmloop", data)
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: [llmloop] must be a table")
    return section


def find_config_file(env: Mapping[str, str]) -> Path | None:
    """The TOML file in use: ``LLMLOOP_CONFIG``, else ``./llmloop.toml`` when present."""
    explicit = env.get(f"{ENV_PREFIX}CONFIG")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"LLMLOOP_CONFIG points to {path}, which is not a file")
        return path
    local = Path.cwd() / CONFIG_FILE_NAME
    return local if local.is_file() else None


def _collect(
    overrides: Mapping[str, Any] | None, env: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    fields = Settings.model_fields
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    config_file = find_config_file(env)
    if config_file is not None:
        for key, value in _read_toml(config_file).items():
            if key not in fields:
                raise ConfigError(f"{config_file}: unknown setting '{key}'")
            values[key], sources[key] = value, f"file {config_file}"
    for key in fields:
        env_key = f"{ENV_PREFIX}{key.upper()}"
        if env.get(env_key, "") != "":
            values[key], sources[key] = env[env_key], f"env {env_key}"
    for key, value in (overrides or {}).items():
        if key not in fields:
            raise ConfigError(f"unknown setting '{key}'")
        if value is not None:
            values[key], sources[key] = value, "flag"
    return values, sources


def load_settings(
    overrides: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Build Settings from flags, the environment and the TOML file (edges only)."""
    values, sources = _collect(overrides, os.environ if env is None else env)
    try:
        return Settings.model_validate(values) if values else Settings.model_validate({})
    except ValidationError as exc:
        raise ConfigError(f"invalid settings: {_describe_errors(exc, sources)}") from None
    except ValueError as exc:
        raise ConfigError(f"invalid settings: {exc}") from exc


def _describe_errors(exc: ValidationError, sources: Mapping[str, str]) -> str:
    """Each refused setting with where its value came from (a flag, a variable, the file),
    which pydantic's own text does not say; values are left out, as some are secrets."""
    parts = []
    for err in exc.errors():
        loc = err.get("loc") or ()
        name = ".".join(str(part) for part in loc) or "settings"
        source = f" ({sources.get(str(loc[0]), 'default')})" if loc else ""
        parts.append(f"{name}{source}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def describe_settings(
    overrides: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
) -> list[dict[str, str]]:
    """Each setting's effective value and where it came from."""
    env = os.environ if env is None else env
    settings = load_settings(overrides, env)
    _, sources = _collect(overrides, env)
    rows = []
    for key, field in Settings.model_fields.items():
        value = getattr(settings, key)
        source = sources.get(key, "default")
        if key in {"database_url", "artifacts_url"} and key not in sources:
            source = "default (under home)"
        rows.append(
            {
                "name": key,
                "env": f"{ENV_PREFIX}{key.upper()}",
                "value": "***" if key in SECRET_SETTINGS and value else redact_url(str(value)),
                "source": source,
                "description": field.description or "",
            }
        )
    return rows


def redact_url(value: str) -> str:
    """Hide the password of a URL such as ``postgresql://user:secret@host``."""
    if "://" in value and "@" in value.split("://", 1)[1]:
        scheme, rest = value.split("://", 1)
        creds, host = rest.split("@", 1)
        if ":" in creds:
            creds = creds.split(":", 1)[0] + ":***"
        return f"{scheme}://{creds}@{host}"
    return value


def settings_reference() -> str:
    """docs/settings.md, generated from the Settings fields (a test keeps the file in sync)."""
    lines = [
        "# Settings reference",
        "",
        "Generated by `llmloop config docs` from `llmloop.config.Settings`; do not edit by hand.",
        "Precedence: flags > environment > `llmloop.toml` (`[llmloop]` table) > defaults.",
        "",
        "| setting | environment | default | description |",
        "|---|---|---|---|",
    ]
    for name, field in Settings.model_fields.items():
        default = field.default if field.default_factory is None else "(computed)"
        if name in ("home",):
            default = "~/.llmloop"
        shown = f"`{default}`" if default not in ("", None) else "(empty)"
        desc = (field.description or "").replace("|", "\\|")
        lines.append(f"| {name} | `{ENV_PREFIX}{name.upper()}` | {shown} | {desc} |")
    return "\n".join(lines) + "\n"
