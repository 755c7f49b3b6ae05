"""Movable names over immutable versions: prompt labels and model aliases, one mechanism.

Moving a protected pointer is refused with ApprovalRequiredError unless the governance service
applies an approved request. Every move is audited with before and after.
"""

from __future__ import annotations

from llmloop.core.base import LABEL_PATTERN, MAX_VERSION
from llmloop.errors import ApprovalRequiredError, InvalidInputError, NotFoundError
from llmloop.services.actors import Actor
from llmloop.store import tables as t
from llmloop.store.registry import Row, Tx, utcnow

PROMPT_LABEL = "prompt_label"
MODEL_ALIAS = "model_alias"


def pointer_map(tx: Tx, kind: str, owner_id: str, versions_table: str) -> dict[str, int]:
    """name -> version number of every set pointer of one owner."""
    rows = tx.select(t.pointers, {"kind": kind, "owner_id": owner_id}, order_by="name")
    table = t.metadata.tables[versions_table]
    ids = [r["target_id"] for r in rows if r["target_id"]]
    numbers = {v["id"]: v["version"] for v in tx.select_in(table, "id", ids)}
    return {r["name"]: numbers[r["target_id"]] for r in rows if r["target_id"] in numbers}


def check_pointer_name(name: str) -> None:
    """A label or alias follows the API's rule (``core.base.Label``) and is reachable as
    ``NAME@REF``: ``latest`` would always mean the newest version instead."""
    if not LABEL_PATTERN.match(name) or name == "latest":
        raise InvalidInputError(
            f"{name!r} cannot be a label or alias: use lower-case letters, digits, '_' or '-', "
            "starting with a letter, and not 'latest'"
        )


def move_pointer(
    tx: Tx,
    kind: str,
    owner_id: str,
    name: str,
    target_id: str | None,
    actor: Actor,
    approved: bool = False,
) -> None:
    """Point ``name`` at ``target_id`` (None clears it), honouring protection."""
    if target_id is not None:
        check_pointer_name(name)
    current = tx.get(t.pointers, for_update=True, kind=kind, owner_id=owner_id, name=name)
    if current is not None and current["protected"] and not approved:
        raise ApprovalRequiredError(
            f"'{name}' is protected: it moves only through an approval "
            "(dashboard, API or `llmloop approvals request`)"
        )
    now = utcnow()
    if current is None:
        if target_id is None:
            raise NotFoundError(f"'{name}' is not set")
        tx.insert(
            t.pointers,
            {
                "kind": kind,
                "owner_id": owner_id,
                "name": name,
                "target_id": target_id,
                "protected": False,
                "updated_at": now,
            },
        )
    else:
        tx.update(
            t.pointers,
            {"kind": kind, "owner_id": owner_id, "name": name},
            {"target_id": target_id, "updated_at": now},
        )
    before = {"target_id": current["target_id"]} if current else None
    action = f"{kind}.{'move' if target_id else 'clear'}"
    tx.audit(
        actor.name,
        action,
        kind,
        f"{owner_id}:{name}",
        before,
        {"target_id": target_id, "via_approval": approved},
    )


def set_protected(
    tx: Tx, kind: str, owner_id: str, name: str, protected: bool, actor: Actor
) -> None:
    """Mark a pointer protected (moves need approval) or lift that; admins only."""
    actor.require("admin")
    current = tx.get(t.pointers, for_update=True, kind=kind, owner_id=owner_id, name=name)
    now = utcnow()
    if current is None:
        tx.insert(
            t.pointers,
            {
                "kind": kind,
                "owner_id": owner_id,
                "name": name,
                "target_id": None,
                "protected": protected,
                "updated_at": now,
            },
        )
    else:
        tx.update(
            t.pointers,
            {"kind": kind, "owner_id": owner_id, "name": name},
            {"protected": protected, "updated_at": now},
        )
    tx.audit(
        actor.name,
        f"{kind}.{'protect' if protected else 'unprotect'}",
        kind,
        f"{owner_id}:{name}",
        {"protected": bool(current and current["protected"])},
        {"protected": protected},
    )


def resolve_pointer(tx: Tx, kind: str, owner_id: str, name: str) -> str:
    row = tx.get(t.pointers, kind=kind, owner_id=owner_id, name=name)
    if row is None or row["target_id"] is None:
        raise NotFoundError(f"'{name}' is not set")
    return str(row["target_id"])


# What each pointer kind points into: (versions table, its owner column, owner noun, pointer noun).
_VERSIONED = {
    MODEL_ALIAS: (t.model_versions, "model_id", "model", "alias"),
    PROMPT_LABEL: (t.prompt_versions, "prompt_id", "prompt", "label"),
}


def resolve_version(tx: Tx, kind: str, owner: Row, ref: int | str) -> Row:
    """The version row ``ref`` (a number, ``latest`` or a pointer of ``kind``) of ``owner``
    (a model or prompt row) names now; NotFoundError saying which when it names none."""
    table, column, noun, pointer = _VERSIONED[kind]
    oid = owner["id"]
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isascii() and ref.isdigit()):
        number = int(ref)
        row = tx.get(table, **{column: oid, "version": number}) if number <= MAX_VERSION else None
    elif ref == "latest":
        latest = tx.max_value(table, "version", **{column: oid})
        row = tx.get(table, **{column: oid, "version": latest}) if latest else None
    else:
        try:
            target = resolve_pointer(tx, kind, oid, str(ref))
        except NotFoundError:
            raise NotFoundError(f"{noun} '{owner['name']}' has no {pointer} '{ref}'")
        row = tx.get(table, id=target)
    if row is None:
        raise NotFoundError(f"{noun} '{owner['name']}' has no version {ref}")
    return row
