"""feedback: the scale of a score (scale_min, scale_max)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 05:45:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("feedback") as batch:
        batch.add_column(sa.Column("scale_min", sa.Float(), nullable=True))
        batch.add_column(sa.Column("scale_max", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("feedback") as batch:
        batch.drop_column("scale_max")
        batch.drop_column("scale_min")
