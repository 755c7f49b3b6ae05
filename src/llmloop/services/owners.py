"""Named owners of versions (datasets, prompts, models): looked up, or created in the same
transaction as their first version so a failed version leaves no empty owner behind."""

from __future__ import annotations

import sqlalchemy as sa

from llmloop.core.base import NAME_PATTERN
from llmloop.core.ids import new_id
from llmloop.errors import InvalidInputError, NotFoundError
from llmloop.services.actors import Actor
from llmloop.store.registry import Row, Tx, utcnow


def get_owner(tx: Tx, table: sa.Table, entity: str, name: str, lock: bool = False) -> Row:
    row = tx.get(table, for_update=lock, name=name)
    if row is None:
        raise NotFoundError(f"no {entity} named '{name}'")
    return row


def get_or_create_owner(
    tx: Tx, table: sa.Table, entity: str, name: str, actor: Actor, create: bool
) -> Row:
    """The locked owner row named ``name``, inserted (and audited) when missing and allowed."""
    row = tx.get(table, for_update=True, name=name)
    if row is not None:
        return row
    if not create:
        raise NotFoundError(f"no {entity} named '{name}'")
    if not NAME_PATTERN.match(name):
        # The same rule as the REST API's create: a name it could not address is never stored.
        raise InvalidInputError(
            f"{entity} name {name!r} must be 1-128 characters of letters, digits, '.', '_' or '-',"
            " starting with a letter or digit"
        )
    row = {"id": new_id(entity), "name": name, "description": "", "created_at": utcnow(),
           "created_by": actor.name}  # fmt: skip
    try:
        with tx.conn.begin_nested():  # a savepoint: losing a race must not end the transaction
            tx.conn.execute(table.insert().values(**row))
    except sa.exc.IntegrityError:
        # Another writer created it between our read and our insert (two pipelines ingesting
        # into a new dataset at once): use theirs, as if it had been there.
        theirs = tx.get(table, for_update=True, name=name)
        if theirs is None:
            raise
        return theirs
    tx.audit(actor.name, f"{entity}.create", entity, row["id"], None, row)
    return row
