"""gateway policy: usage windows, spend and in-flight reservations per API key

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 05:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_windows",
        sa.Column("key_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("window_start", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key_id", "kind", "window_start", name=op.f("pk_usage_windows")),
    )
    op.create_table(
        "key_spend",
        sa.Column("key_id", sa.String(length=40), nullable=False),
        sa.Column("spent_usd", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key_id", name=op.f("pk_key_spend")),
    )
    op.create_table(
        "limit_reservations",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("key_id", sa.String(length=40), nullable=False),
        sa.Column("deployment", sa.String(length=128), server_default="", nullable=False),
        sa.Column("window_start", sa.BigInteger(), nullable=False),
        sa.Column("est_tokens", sa.BigInteger(), nullable=False),
        sa.Column("est_cost", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_limit_reservations")),
    )
    with op.batch_alter_table("limit_reservations", schema=None) as batch_op:
        batch_op.create_index("ix_limit_reservations_key", ["key_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("limit_reservations", schema=None) as batch_op:
        batch_op.drop_index("ix_limit_reservations_key")
    op.drop_table("limit_reservations")
    op.drop_table("key_spend")
    op.drop_table("usage_windows")
