"""The Store: transactions over the registry tables, with a small row API and the few queries
that need SQL (latest metrics, metric series, lineage neighbours, audit pages).

It maps database errors to llmloop errors (a unique clash is a ConflictError) and returns plain
dicts; turning rows into core values and enforcing the registry's rules is the services' job.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from llmloop.errors import ConflictError, InvalidInputError
from llmloop.store import tables as t
from llmloop.store.db import check_schema, create_db_engine

Row = dict[str, Any]


def utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _row(mapping: Any) -> Row:
    return {k: _aware(v) for k, v in mapping.items()}


class Tx:
    """One unit of work; every method runs inside the caller's transaction."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn

    def _execute(self, stmt: sa.Executable) -> sa.CursorResult[Any]:
        try:
            return self.conn.execute(stmt)
        except sa.exc.IntegrityError as exc:
            raise ConflictError(f"conflicts with an existing record: {exc.orig}") from exc
        except sa.exc.DataError as exc:
            raise InvalidInputError(f"value out of range for the database: {exc.orig}") from exc
        except OverflowError as exc:
            raise InvalidInputError(f"a number is too large for the database: {exc}") from exc

    def insert(self, table: sa.Table, values: Mapping[str, Any]) -> None:
        self._execute(table.insert().values(**values))

    def insert_many(self, table: sa.Table, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            try:
                self.conn.execute(table.insert(), [dict(r) for r in rows])
            except sa.exc.IntegrityError as exc:
                raise ConflictError(f"conflicts with an existing record: {exc.orig}") from exc

    def update(self, table: sa.Table, where: Mapping[str, Any], values: Mapping[str, Any]) -> int:
        stmt = table.update().where(*[table.c[k] == v for k, v in where.items()]).values(**values)
        return int(self._execute(stmt).rowcount)

    def delete(self, table: sa.Table, where: Mapping[str, Any]) -> int:
        stmt = table.delete().where(*[table.c[k] == v for k, v in where.items()])
        return int(self._execute(stmt).rowcount)

    def get(self, table: sa.Table, for_update: bool = False, **where: Any) -> Row | None:
        stmt = sa.select(table).where(*[table.c[k] == v for k, v in where.items()])
        if for_update:
            stmt = stmt.with_for_update()
        found = self.conn.execute(stmt).mappings().first()
        return _row(found) if found is not None else None

    def select(
        self,
        table: sa.Table,
        where: Mapping[str, Any] | None = None,
        order_by: str | None = None,
        descending: bool = False,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Row]:
        stmt = sa.select(table).where(*[table.c[k] == v for k, v in (where or {}).items()])
        if order_by:
            col = table.c[order_by]
            stmt = stmt.order_by(col.desc() if descending else col.asc())
        if limit is not None:
            stmt = stmt.limit(limit)
        if offset:
            stmt = stmt.offset(offset)
        return [_row(r) for r in self.conn.execute(stmt).mappings()]

    def select_in(self, table: sa.Table, column: str, values: Sequence[Any]) -> list[Row]:
        if not values:
            return []
        stmt = sa.select(table).where(table.c[column].in_(list(values)))
        return [_row(r) for r in self.conn.execute(stmt).mappings()]

    def max_value(self, table: sa.Table, column: str, **where: Any) -> Any:
        stmt = sa.select(sa.func.max(table.c[column])).where(
            *[table.c[k] == v for k, v in where.items()]
        )
        return self.conn.execute(stmt).scalar()

    def count(self, table: sa.Table, **where: Any) -> int:
        stmt = sa.select(sa.func.count()).select_from(table)
        stmt = stmt.where(*[table.c[k] == v for k, v in where.items()])
        return int(self.conn.execute(stmt).scalar() or 0)

    # --- metrics -----------------------------------------------------------------------------

    def latest_metrics(self, run_ids: Sequence[str]) -> dict[str, dict[str, float]]:
        """run id -> key -> value at the highest step (ties: the latest written)."""
        if not run_ids:
            return {}
        m = t.run_metrics
        ranked = (
            sa.select(
                m.c.run_id,
                m.c.key,
                m.c.value,
                sa.func.row_number()
                .over(partition_by=(m.c.run_id, m.c.key), order_by=(m.c.step.desc(), m.c.id.desc()))
                .label("rn"),
            )
            .where(m.c.run_id.in_(list(run_ids)))
            .subquery()
        )
        stmt = sa.select(ranked.c.run_id, ranked.c.key, ranked.c.value).where(ranked.c.rn == 1)
        out: dict[str, dict[str, float]] = {rid: {} for rid in run_ids}
        for run_id, key, value in self.conn.execute(stmt):
            out[run_id][key] = value
        return out

    def metric_series(self, run_id: str, key: str | None = None) -> list[Row]:
        m = t.run_metrics
        stmt = sa.select(m.c.key, m.c.step, m.c.value, m.c.at).where(m.c.run_id == run_id)
        if key is not None:
            stmt = stmt.where(m.c.key == key)
        stmt = stmt.order_by(m.c.key, m.c.step, m.c.id)
        return [_row(r) for r in self.conn.execute(stmt).mappings()]

    # --- lineage and audit -------------------------------------------------------------------

    def add_edge(self, source_id: str, target_id: str, relation: str) -> None:
        exists = self.get(
            t.lineage_edges, source_id=source_id, target_id=target_id, relation=relation
        )
        if exists is None:
            self.insert(
                t.lineage_edges,
                {
                    "source_id": source_id,
                    "target_id": target_id,
                    "relation": relation,
                    "created_at": utcnow(),
                },
            )

    def edges_touching(self, node_ids: Sequence[str], upstream: bool) -> list[Row]:
        """Edges whose target (upstream walk) or source (downstream walk) is in ``node_ids``."""
        column = "target_id" if upstream else "source_id"
        return self.select_in(t.lineage_edges, column, node_ids)

    def audit(
        self,
        actor: str,
        action: str,
        entity_type: str,
        entity_id: str,
        before: Mapping[str, Any] | None,
        after: Mapping[str, Any] | None,
    ) -> None:
        self.insert(
            t.audit_log,
            {
                "at": utcnow(),
                "actor": actor,
                "action": action,
                "entity_type": entity_type,
                "entity_id": entity_id,
                "before": _jsonable(before),
                "after": _jsonable(after),
            },
        )

    def audit_page(
        self,
        entity_id: str | None,
        limit: int,
        after_id: int = 0,
        actor: str | None = None,
        before_id: int | None = None,
    ) -> list[Row]:
        """Oldest first after ``after_id``; newest first below ``before_id`` when it is given
        (0: from the newest entry). An ``entity_id`` also matches its pointers' entries
        (``<id>:<alias or label>``), so a model's history shows its alias moves."""
        a = t.audit_log
        stmt = sa.select(a).where(a.c.id > after_id)
        if before_id:
            stmt = stmt.where(a.c.id < before_id)
        if entity_id:
            pointers = a.c.entity_id.startswith(entity_id + ":", autoescape=True)
            stmt = stmt.where(sa.or_(a.c.entity_id == entity_id, pointers))
        if actor:
            stmt = stmt.where(a.c.actor == actor)
        stmt = stmt.order_by(a.c.id.desc() if before_id is not None else a.c.id).limit(limit)
        return [_row(r) for r in self.conn.execute(stmt).mappings()]


def _jsonable(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    out: dict[str, Any] = {}
    for key, item in value.items():
        out[key] = item.isoformat() if isinstance(item, datetime) else item
    return out


class Store:
    """The store of one database URL; open it once per process and share it."""

    def __init__(self, url: str, auto_create_empty: bool = True, check: bool = True) -> None:
        self.url = url
        self.engine = create_db_engine(url)
        self.dialect = self.engine.dialect.name
        if check:
            check_schema(self.engine, auto_create_empty=auto_create_empty)

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """A transaction: committed when the block ends, rolled back on any error."""
        with self.engine.begin() as conn:
            yield Tx(conn)

    def read(self) -> Any:
        """A read-only unit of work (same API; rolled back at the end)."""
        return self._read()

    @contextmanager
    def _read(self) -> Iterator[Tx]:
        with self.engine.connect().execution_options(llmloop_readonly=True) as conn:
            yield Tx(conn)
            conn.rollback()

    def ping(self) -> str | None:
        """None when the database answers a trivial query, else the error's name."""
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError as exc:
            return exc.__class__.__name__
        return None

    def dispose(self) -> None:
        self.engine.dispose()
