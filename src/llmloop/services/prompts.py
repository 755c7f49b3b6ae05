"""Prompt templates: versions (immutable), labels (movable, protectable), render and diff.

Templates are Jinja2 rendered in a bounded sandbox (``core/sandbox.py``) with strict undefined
variables; the declared variables are checked against the ones the template uses when a version
is created.
"""

from __future__ import annotations

import builtins
import difflib
import json
from typing import Any

from jinja2 import TemplateSyntaxError, UndefinedError, meta
from jinja2.exceptions import SecurityError

from llmloop.core.ids import new_id
from llmloop.core.prompts import (
    PromptCreate,
    PromptPublic,
    PromptRendered,
    PromptVersionCreate,
    PromptVersionPublic,
)
from llmloop.core.sandbox import BoundedSandbox, render_bounded
from llmloop.errors import ConflictError, InvalidInputError, NotFoundError
from llmloop.services.actors import Actor
from llmloop.services.owners import get_or_create_owner
from llmloop.services.pointers import PROMPT_LABEL, move_pointer, pointer_map, resolve_version
from llmloop.store import tables as t
from llmloop.store.registry import Row, Store, Tx, utcnow

_ENV = BoundedSandbox()


def template_variables(template: str) -> list[str]:
    """The undeclared variables a Jinja2 template reads, sorted."""
    try:
        return sorted(meta.find_undeclared_variables(_ENV.parse(template)))
    except TemplateSyntaxError as exc:
        raise InvalidInputError(f"template syntax error on line {exc.lineno}: {exc.message}")


def render_template(template: str, variables: dict[str, Any]) -> str:
    """Render in the sandbox; a missing variable or an unsafe access is an InvalidInputError."""
    try:
        return render_bounded(_ENV, template, variables)
    except UndefinedError as exc:
        raise InvalidInputError(f"missing template variable: {exc.message}")
    except SecurityError as exc:
        raise InvalidInputError(f"template refused by the sandbox: {exc}")
    except TemplateSyntaxError as exc:
        raise InvalidInputError(f"template syntax error on line {exc.lineno}: {exc.message}")
    except (TypeError, ValueError, ArithmeticError) as exc:
        raise InvalidInputError(f"template failed to render: {exc}")
    except RecursionError:
        raise InvalidInputError("template failed to render: it recurses without end")
    except MemoryError:
        raise InvalidInputError("template failed to render: it needs more memory than there is")


class PromptService:
    def __init__(self, store: Store) -> None:
        self.store = store

    def _prompt(self, tx: Tx, name: str, lock: bool = False) -> Row:
        row = tx.get(t.prompts, for_update=lock, name=name)
        if row is None:
            raise NotFoundError(f"no prompt named '{name}'")
        return row

    def _public(self, tx: Tx, row: Row) -> PromptPublic:
        return PromptPublic(
            id=row["id"],
            name=row["name"],
            description=row["description"],
            created_at=row["created_at"],
            labels=pointer_map(tx, PROMPT_LABEL, row["id"], "prompt_versions"),
            latest_version=tx.max_value(t.prompt_versions, "version", prompt_id=row["id"]),
        )

    def create(self, spec: PromptCreate, actor: Actor) -> PromptPublic:
        actor.require("editor")
        row: Row = {
            "id": new_id("prompt"),
            "name": spec.name,
            "description": spec.description,
            "created_at": utcnow(),
            "created_by": actor.name,
        }
        with self.store.transaction() as tx:
            if tx.get(t.prompts, name=spec.name) is not None:
                raise ConflictError(f"prompt '{spec.name}' already exists")
            tx.insert(t.prompts, row)
            tx.audit(actor.name, "prompt.create", "prompt", row["id"], None, row)
            return self._public(tx, row)

    def count(self) -> int:
        """How many prompts there are."""
        with self.store.read() as tx:
            return tx.count(t.prompts)

    def list(self, limit: int = 100, offset: int = 0) -> list[PromptPublic]:
        with self.store.read() as tx:
            return [
                self._public(tx, r)
                for r in tx.select(t.prompts, order_by="name", limit=limit, offset=offset)
            ]

    def get(self, name: str) -> PromptPublic:
        with self.store.read() as tx:
            return self._public(tx, self._prompt(tx, name))

    def create_version(
        self, name: str, spec: PromptVersionCreate, actor: Actor, create_missing: bool = True
    ) -> PromptVersionPublic:
        actor.require("editor")
        used = template_variables(spec.template)
        declared = sorted(set(spec.variables)) if spec.variables is not None else used
        undeclared = sorted(set(used) - set(declared))
        if undeclared:
            raise InvalidInputError(f"template uses undeclared variables: {', '.join(undeclared)}")
        try:
            json.dumps(spec.params)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"params must be JSON: {exc}")
        with self.store.transaction() as tx:
            prompt = get_or_create_owner(tx, t.prompts, "prompt", name, actor, create_missing)
            number = (tx.max_value(t.prompt_versions, "version", prompt_id=prompt["id"]) or 0) + 1
            row: Row = {
                "id": new_id("prompt_version"),
                "prompt_id": prompt["id"],
                "version": number,
                "template": spec.template,
                "variables": declared,
                "params": spec.params,
                "message": spec.message,
                "created_at": utcnow(),
                "created_by": actor.name,
            }
            tx.insert(t.prompt_versions, row)
            tx.audit(actor.name, "prompt_version.create", "prompt_version", row["id"], None, row)
            return _version_public(row, name)

    def list_versions(self, name: str) -> builtins.list[PromptVersionPublic]:
        with self.store.read() as tx:
            prompt = self._prompt(tx, name)
            rows = tx.select(t.prompt_versions, {"prompt_id": prompt["id"]}, order_by="version")
            return [_version_public(r, name) for r in rows]

    def get_version(self, name: str, ref: int | str = "latest") -> PromptVersionPublic:
        """A version by number, by label (``production``) or ``latest``."""
        with self.store.read() as tx:
            prompt = self._prompt(tx, name)
            row = self._resolve(tx, prompt, ref)
            return _version_public(row, name)

    def _resolve(self, tx: Tx, prompt: Row, ref: int | str) -> Row:
        return resolve_version(tx, PROMPT_LABEL, prompt, ref)

    def render(
        self, name: str, variables: dict[str, Any], ref: int | str = "production"
    ) -> PromptRendered:
        version = self.get_version(name, ref)
        return PromptRendered(
            prompt_name=name,
            version=version.version,
            text=render_template(version.template, variables),
            params=version.params,
        )

    def diff(self, name: str, a: int | str, b: int | str) -> dict[str, Any]:
        """A unified diff of the templates and the changed params between two versions."""
        va, vb = self.get_version(name, a), self.get_version(name, b)
        lines = difflib.unified_diff(
            va.template.splitlines(),
            vb.template.splitlines(),
            fromfile=f"{name}@{va.version}",
            tofile=f"{name}@{vb.version}",
            lineterm="",
        )
        keys = sorted(set(va.params) | set(vb.params))
        params = {
            k: {"from": va.params.get(k), "to": vb.params.get(k)}
            for k in keys
            if va.params.get(k) != vb.params.get(k)
        }
        return {
            "from": va.version,
            "to": vb.version,
            "template_diff": "\n".join(lines),
            "params_changed": params,
            "variables_added": sorted(set(vb.variables) - set(va.variables)),
            "variables_removed": sorted(set(va.variables) - set(vb.variables)),
        }

    def set_label(
        self, name: str, label: str, version: int, actor: Actor, approved: bool = False
    ) -> PromptPublic:
        actor.require("editor")
        with self.store.transaction() as tx:
            prompt = self._prompt(tx, name)
            target = tx.get(t.prompt_versions, prompt_id=prompt["id"], version=version)
            if target is None:
                raise NotFoundError(f"prompt '{name}' has no version {version}")
            move_pointer(tx, PROMPT_LABEL, prompt["id"], label, target["id"], actor, approved)
            return self._public(tx, prompt)

    def owner_id(self, name: str) -> str:
        with self.store.read() as tx:
            return str(self._prompt(tx, name)["id"])


def _version_public(row: Row, name: str) -> PromptVersionPublic:
    return PromptVersionPublic(
        id=row["id"],
        prompt_id=row["prompt_id"],
        prompt_name=name,
        version=row["version"],
        template=row["template"],
        variables=row["variables"],
        params=row["params"],
        message=row["message"],
        created_at=row["created_at"],
        created_by=row["created_by"],
    )
