"""audit_log: entity ids wide enough for a pointer's ("<owner id>:<label or alias>")

A label or alias move is audited under its owner's id and its name: past nine characters of
name ("challenger") that is longer than an id's 40, which PostgreSQL refused (SQLite does not
enforce a varchar's length, so its table is left as it is).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 08:50:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    op.alter_column("audit_log", "entity_id", type_=sa.String(160), existing_nullable=False)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    op.alter_column("audit_log", "entity_id", type_=sa.String(40), existing_nullable=False)
