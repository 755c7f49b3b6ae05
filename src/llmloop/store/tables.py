"""SQLAlchemy Core tables of the registry. Versions are rows that are never updated in place.

Movable pointers (prompt labels, model aliases) live in ``pointers``; every mutation is also
written to ``audit_log`` by the service in the same transaction. Schema changes go through an
Alembic migration under ``store/migrations/versions``; this module is the target they describe.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = sa.String(40)
TS = sa.DateTime(timezone=True)


def _created() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("created_at", TS, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False, server_default=""),
    ]


datasets = sa.Table(
    "datasets",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    *_created(),
)

dataset_versions = sa.Table(
    "dataset_versions",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("dataset_id", ID, sa.ForeignKey("datasets.id"), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("row_count", sa.Integer, nullable=False),
    sa.Column("shape", sa.String(32), nullable=False),
    sa.Column("schema", sa.JSON, nullable=False),
    sa.Column("parent_id", ID, sa.ForeignKey("dataset_versions.id"), nullable=True),
    sa.Column("recipe", sa.JSON, nullable=True),
    sa.Column("artifact_uri", sa.Text, nullable=False),
    sa.Column("artifact_sha256", sa.String(64), nullable=False),
    sa.Column("artifact_size", sa.BigInteger, nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("profile", sa.JSON, nullable=True),
    *_created(),
    sa.UniqueConstraint("dataset_id", "version", name="uq_dataset_versions_number"),
    sa.UniqueConstraint("dataset_id", "content_hash", name="uq_dataset_versions_content"),
)

prompts = sa.Table(
    "prompts",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    *_created(),
)

prompt_versions = sa.Table(
    "prompt_versions",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("prompt_id", ID, sa.ForeignKey("prompts.id"), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("template", sa.Text, nullable=False),
    sa.Column("variables", sa.JSON, nullable=False),
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("message", sa.Text, nullable=False, server_default=""),
    *_created(),
    sa.UniqueConstraint("prompt_id", "version", name="uq_prompt_versions_number"),
)

models = sa.Table(
    "models",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    *_created(),
)

model_versions = sa.Table(
    "model_versions",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("model_id", ID, sa.ForeignKey("models.id"), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("base_model", sa.Text, nullable=False, server_default=""),
    sa.Column("format", sa.String(32), nullable=False),
    sa.Column("artifact_uri", sa.Text, nullable=True),
    sa.Column("artifact_sha256", sa.String(64), nullable=True),
    sa.Column("artifact_size", sa.BigInteger, nullable=True),
    sa.Column("tokenizer", sa.Text, nullable=False, server_default=""),
    sa.Column("metrics", sa.JSON, nullable=False),
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("run_id", ID, sa.ForeignKey("runs.id"), nullable=True),
    sa.Column("stage", sa.String(32), nullable=False, server_default="none"),
    sa.Column("status", sa.String(32), nullable=False, server_default="ready"),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    *_created(),
    sa.UniqueConstraint("model_id", "version", name="uq_model_versions_number"),
)

# Movable names: prompt labels ('production') and model aliases ('champion').
pointers = sa.Table(
    "pointers",
    metadata,
    sa.Column("kind", sa.String(32), primary_key=True),
    sa.Column("owner_id", ID, primary_key=True),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("target_id", ID, nullable=True),
    sa.Column("protected", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("updated_at", TS, nullable=False),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("name", sa.String(256), nullable=False, server_default=""),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("parent_id", ID, sa.ForeignKey("runs.id"), nullable=True),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("ended_at", TS, nullable=True),
    *_created(),
)

run_metrics = sa.Table(
    "run_metrics",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("run_id", ID, sa.ForeignKey("runs.id"), nullable=False),
    sa.Column("key", sa.String(250), nullable=False),
    sa.Column("step", sa.BigInteger, nullable=False),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("at", TS, nullable=False),
    sa.Index("ix_run_metrics_run_key_step", "run_id", "key", "step"),
)

run_artifacts = sa.Table(
    "run_artifacts",
    metadata,
    sa.Column("run_id", ID, sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("name", sa.String(256), primary_key=True),
    sa.Column("uri", sa.Text, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
)

lineage_edges = sa.Table(
    "lineage_edges",
    metadata,
    sa.Column("source_id", ID, primary_key=True),
    sa.Column("target_id", ID, primary_key=True),
    sa.Column("relation", sa.String(64), primary_key=True),
    sa.Column("created_at", TS, nullable=False),
    sa.Index("ix_lineage_edges_target", "target_id"),
)

approvals = sa.Table(
    "approvals",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("label", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("requested_by", sa.String(128), nullable=False),
    sa.Column("comment", sa.Text, nullable=False, server_default=""),
    sa.Column("decided_by", sa.String(128), nullable=True),
    sa.Column("decision_comment", sa.Text, nullable=True),
    sa.Column("decided_at", TS, nullable=True),
    sa.Column("created_at", TS, nullable=False),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("at", TS, nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("entity_type", sa.String(32), nullable=False),
    sa.Column("entity_id", sa.String(160), nullable=False),  # an id, or "<owner id>:<pointer>"
    sa.Column("before", sa.JSON, nullable=True),
    sa.Column("after", sa.JSON, nullable=True),
    sa.Index("ix_audit_log_entity", "entity_id"),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("prefix", sa.String(32), nullable=False, unique=True),
    sa.Column("salt", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(128), nullable=False),
    sa.Column("limits", sa.JSON, nullable=False),
    sa.Column("revoked_at", TS, nullable=True),
    *_created(),
)

# --- Gateway (migration 0002): deployments declared by file/API/CLI, and one trace per request.

deployments = sa.Table(
    "deployments",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("source", sa.String(16), nullable=False, server_default="api"),
    sa.Column("updated_at", TS, nullable=False),
    *_created(),
)

# OpenTelemetry GenAI names map to columns (gen_ai.request.model -> request_model, ...); the
# full attribute set is kept in ``attributes`` under its dotted names.
traces = sa.Table(
    "traces",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("at", TS, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False, server_default="primary"),
    sa.Column("parent_id", ID, nullable=True),
    sa.Column("operation", sa.String(32), nullable=False),
    sa.Column("deployment", sa.String(128), nullable=False, server_default=""),
    sa.Column("request_model", sa.String(128), nullable=False, server_default=""),
    sa.Column("response_model", sa.String(256), nullable=False, server_default=""),
    sa.Column("model_version_id", ID, nullable=True),
    sa.Column("target", sa.String(256), nullable=False, server_default=""),
    sa.Column("key_id", ID, nullable=True),
    sa.Column("user", sa.String(256), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("http_status", sa.Integer, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("stream", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("ttft_ms", sa.Float, nullable=True),
    sa.Column("input_tokens", sa.Integer, nullable=False, server_default="0"),
    sa.Column("output_tokens", sa.Integer, nullable=False, server_default="0"),
    sa.Column("cost", sa.Float, nullable=False, server_default="0"),
    sa.Column("cache_hit", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("finish_reason", sa.String(32), nullable=True),
    sa.Column("guard_verdicts", sa.JSON, nullable=True),
    sa.Column("attributes", sa.JSON, nullable=False),
    sa.Column("request_text", sa.Text, nullable=False, server_default=""),
    sa.Column("response_text", sa.Text, nullable=False, server_default=""),
    sa.Index("ix_traces_at", "at"),
    sa.Index("ix_traces_deployment_at", "deployment", "at"),
    # shadow copies only: primaries (parent_id NULL) would cost every insert an entry (0008)
    sa.Index(
        "ix_traces_parent",
        "parent_id",
        sqlite_where=sa.text("parent_id IS NOT NULL"),
        postgresql_where=sa.text("parent_id IS NOT NULL"),
    ),
)

# Gateway limits per API key (services/gateway/policy_store.py). Windows are fixed 60-second
# buckets keyed by their start (epoch seconds); spend is durable; a reservation row is one
# in-flight request (its lease expires, so a crashed process cannot hold a key's budget forever).
usage_windows = sa.Table(
    "usage_windows",
    metadata,
    sa.Column("key_id", ID, primary_key=True),
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("window_start", sa.BigInteger, primary_key=True),
    sa.Column("amount", sa.BigInteger, nullable=False),
)

key_spend = sa.Table(
    "key_spend",
    metadata,
    sa.Column("key_id", ID, primary_key=True),
    sa.Column("spent_usd", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

limit_reservations = sa.Table(
    "limit_reservations",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("key_id", ID, nullable=False),
    sa.Column("deployment", sa.String(128), nullable=False, server_default=""),
    sa.Column("window_start", sa.BigInteger, nullable=False),
    sa.Column("est_tokens", sa.BigInteger, nullable=False),
    sa.Column("est_cost", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Index("ix_limit_reservations_key", "key_id"),
)

# --- The loop (migration 0004): pipeline step cache, feedback and annotation, drift, alerts.

pipeline_cache = sa.Table(
    "pipeline_cache",
    metadata,
    sa.Column("cache_key", sa.String(64), primary_key=True),
    sa.Column("pipeline", sa.String(128), nullable=False),
    sa.Column("step_id", sa.String(64), nullable=False),
    sa.Column("run_id", ID, sa.ForeignKey("runs.id"), nullable=False),
    sa.Column("outputs", sa.JSON, nullable=False),
    sa.Column("created_at", TS, nullable=False),
)

feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("trace_id", ID, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("name", sa.String(64), nullable=False, server_default=""),
    sa.Column("value", sa.Float, nullable=True),
    sa.Column("comment", sa.Text, nullable=False, server_default=""),
    sa.Column("correction", sa.Text, nullable=True),
    sa.Column("alternative", sa.Text, nullable=True),
    sa.Column("preferred", sa.String(16), nullable=True),
    sa.Column("user", sa.String(256), nullable=True),
    # Migration 0005: the scale a score was given on, so scores on 1-5 and 0-10 average together.
    sa.Column("scale_min", sa.Float, nullable=True),
    sa.Column("scale_max", sa.Float, nullable=True),
    *_created(),
    sa.Index("ix_feedback_trace", "trace_id"),
)

annotation_queues = sa.Table(
    "annotation_queues",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("filter", sa.JSON, nullable=False),
    sa.Column("label_schema", sa.JSON, nullable=False),
    sa.Column("ordering", sa.String(16), nullable=False, server_default="created"),
    *_created(),
)

annotation_items = sa.Table(
    "annotation_items",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("queue_id", ID, sa.ForeignKey("annotation_queues.id"), nullable=False),
    sa.Column("item_ref", sa.String(128), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("assignee", sa.String(128), nullable=True),
    sa.Column("label", sa.JSON, nullable=True),
    sa.Column("priority", sa.Float, nullable=False, server_default="0"),
    sa.Column("updated_at", TS, nullable=False),
    sa.UniqueConstraint("queue_id", "item_ref", name="uq_annotation_items_ref"),
    sa.Index("ix_annotation_items_queue_status", "queue_id", "status"),
)

drift_results = sa.Table(
    "drift_results",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("at", TS, nullable=False),
    sa.Column("deployment", sa.String(128), nullable=False),
    sa.Column("model_version_id", ID, nullable=True),
    sa.Column("metric", sa.String(64), nullable=False),
    sa.Column("test", sa.String(64), nullable=False),
    sa.Column("statistic", sa.Float, nullable=False),
    sa.Column("p_value", sa.Float, nullable=False),
    sa.Column("drifted", sa.Boolean, nullable=False),
    sa.Column("reference", sa.JSON, nullable=False),
    sa.Column("current", sa.JSON, nullable=False),
    sa.Column("details", sa.JSON, nullable=False),
    sa.Index("ix_drift_results_deployment_at", "deployment", "at"),
)

alert_rules = sa.Table(
    "alert_rules",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("state", sa.String(16), nullable=False, server_default="ok"),
    sa.Column("pending_since", TS, nullable=True),
    sa.Column("changed_at", TS, nullable=True),
    sa.Column("last_value", sa.Float, nullable=True),
    *_created(),
)

alert_events = sa.Table(
    "alert_events",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("rule_id", ID, sa.ForeignKey("alert_rules.id"), nullable=False),
    sa.Column("at", TS, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("value", sa.Float, nullable=True),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("delivered", sa.Boolean, nullable=False, server_default=sa.false()),
)

# --- OTLP log records (migration 0007, services/otlp_pending.py). GenAI content that an app's
# instrumentation sends as log records, held by the span it belongs to until that span's trace
# row can take it (or the hold expires); and which trace row each ingested span became, so
# that records arriving after their span find it. ``span_key`` hashes the sending key with the
# OpenTelemetry trace and span ids (the random part of the trace row's id).
otlp_log_events = sa.Table(
    "otlp_log_events",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),  # a digest of the record: a resend is one
    sa.Column("span_key", sa.String(20), nullable=False),
    sa.Column("at_ns", sa.BigInteger, nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("content", sa.JSON, nullable=False),
    sa.Column("received_at", TS, nullable=False),
    sa.Column("trace_row_id", ID, nullable=True),  # set once merged into that row
    sa.Index("ix_otlp_log_events_span_key", "span_key"),
    sa.Index("ix_otlp_log_events_received_at", "received_at"),
    sa.Index("ix_otlp_log_events_trace_row_id", "trace_row_id"),
)

otlp_log_spans = sa.Table(
    "otlp_log_spans",
    metadata,
    sa.Column("span_key", sa.String(20), primary_key=True),
    sa.Column("trace_row_id", ID, nullable=False),
    sa.Column("seen_at", TS, nullable=False),
    sa.Index("ix_otlp_log_spans_seen_at", "seen_at"),
)
