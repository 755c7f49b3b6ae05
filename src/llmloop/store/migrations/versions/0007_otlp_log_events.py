"""otlp_log_events, otlp_log_spans: GenAI content sent as OTLP log records, held for its span

Log records (``POST /otlp/v1/logs``) that carry a model call's messages wait here, by span,
until the span's trace row takes them; ``otlp_log_spans`` says which trace row each ingested
span became, for records that arrive after their span. Both are bounded and expire (see
``services/otlp_pending.py``); no existing table changes.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 10:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "otlp_log_events",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("span_key", sa.String(20), nullable=False),
        sa.Column("at_ns", sa.BigInteger(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("content", sa.JSON(), nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("trace_row_id", sa.String(40), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_otlp_log_events"),
    )
    op.create_index("ix_otlp_log_events_span_key", "otlp_log_events", ["span_key"])
    op.create_index("ix_otlp_log_events_received_at", "otlp_log_events", ["received_at"])
    op.create_index("ix_otlp_log_events_trace_row_id", "otlp_log_events", ["trace_row_id"])
    op.create_table(
        "otlp_log_spans",
        sa.Column("span_key", sa.String(20), nullable=False),
        sa.Column("trace_row_id", sa.String(40), nullable=False),
        sa.Column("seen_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("span_key", name="pk_otlp_log_spans"),
    )
    op.create_index("ix_otlp_log_spans_seen_at", "otlp_log_spans", ["seen_at"])


def downgrade() -> None:
    op.drop_index("ix_otlp_log_spans_seen_at", table_name="otlp_log_spans")
    op.drop_table("otlp_log_spans")
    op.drop_index("ix_otlp_log_events_trace_row_id", table_name="otlp_log_events")
    op.drop_index("ix_otlp_log_events_received_at", table_name="otlp_log_events")
    op.drop_index("ix_otlp_log_events_span_key", table_name="otlp_log_events")
    op.drop_table("otlp_log_events")
