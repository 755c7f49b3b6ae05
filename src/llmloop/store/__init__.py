"""The store: one SQLAlchemy implementation for SQLite and PostgreSQL, migrated with Alembic."""
