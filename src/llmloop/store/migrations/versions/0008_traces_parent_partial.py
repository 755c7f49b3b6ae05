"""traces: the parent index holds only shadow copies (``WHERE parent_id IS NOT NULL``)

``ix_traces_parent`` answers one question, "the shadow copies of this trace" (``parent_id =
?``), which a partial index answers as well; but as a full index it took one entry, with its
B-tree insert, for every primary trace too, whose ``parent_id`` is NULL: a twentieth of what the
trace writer spends on a row. Nothing else in the schema changes.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 11:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_SHADOWS = sa.text("parent_id IS NOT NULL")


def upgrade() -> None:
    op.drop_index("ix_traces_parent", table_name="traces")
    op.create_index(
        "ix_traces_parent",
        "traces",
        ["parent_id"],
        sqlite_where=_SHADOWS,
        postgresql_where=_SHADOWS,
    )


def downgrade() -> None:
    op.drop_index("ix_traces_parent", table_name="traces")
    op.create_index("ix_traces_parent", "traces", ["parent_id"])
