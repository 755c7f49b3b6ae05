"""API keys: salted hashes stored, secrets shown once, revocable; authentication with a cache.

A secret looks like ``llk_<prefix>_<random>``; the prefix finds the row, the salted SHA-256 of
the whole secret proves it (the secret has 256 random bits, so a fast hash is safe, and the
gateway path stays fast). Verified keys are cached briefly; revocation in this process clears
the cache at once, and other processes notice within ``cache_ttl_s``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Any

from llmloop.core.governance import ApiKeyCreate, ApiKeyCreated, ApiKeyPublic
from llmloop.core.ids import new_id
from llmloop.errors import (
    AuthenticationError,
    ConfigError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
)
from llmloop.services.actors import Actor
from llmloop.services.gateway.policy import LIMIT_NAMES, KeyLimits
from llmloop.store import tables as t
from llmloop.store.registry import Row, Store, utcnow

SECRET_PREFIX = "llk_"


def _digest(salt: str, secret: str) -> str:
    return hashlib.sha256(f"{salt}:{secret}".encode()).hexdigest()


def check_limits(limits: dict[str, Any]) -> None:
    """Refuse limits the gateway would reject on every request (or silently ignore): unknown
    names, negative or non-finite values, fractional counts."""
    unknown = sorted(set(limits) - set(LIMIT_NAMES))
    if unknown:
        raise InvalidInputError(
            f"unknown limit(s) {', '.join(unknown)}: use {', '.join(LIMIT_NAMES)}"
        )
    for name in ("rpm", "tpm", "max_concurrent"):
        value = limits.get(name)
        if isinstance(value, float) and not value.is_integer():
            raise InvalidInputError(f"limit '{name}' must be a whole number, not {value}")
    try:
        KeyLimits.parse(limits)
    except ConfigError as exc:
        raise InvalidInputError(exc.detail) from None


class KeyService:
    def __init__(self, store: Store, cache_ttl_s: float = 5.0) -> None:
        self.store = store
        self.cache_ttl_s = cache_ttl_s
        self._cache: dict[str, tuple[float, Actor]] = {}

    def create(self, spec: ApiKeyCreate, actor: Actor) -> ApiKeyCreated:
        actor.require("admin")
        check_limits(spec.limits)
        prefix = secrets.token_hex(6)
        secret = f"{SECRET_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
        salt = secrets.token_hex(16)
        row: Row = {
            "id": new_id("api_key"),
            "name": spec.name,
            "role": spec.role,
            "prefix": prefix,
            "salt": salt,
            "hash": _digest(salt, secret),
            "limits": spec.limits,
            "revoked_at": None,
            "created_at": utcnow(),
            "created_by": actor.name,
        }
        with self.store.transaction() as tx:
            tx.insert(t.api_keys, row)
            safe = {k: v for k, v in row.items() if k not in ("salt", "hash")}
            tx.audit(actor.name, "api_key.create", "api_key", row["id"], None, safe)
        return ApiKeyCreated(**_public_fields(row), secret=secret)

    def list(self, include_revoked: bool = False) -> list[ApiKeyPublic]:
        with self.store.read() as tx:
            rows = tx.select(t.api_keys, order_by="created_at")
        return [
            ApiKeyPublic(**_public_fields(r))
            for r in rows
            if include_revoked or r["revoked_at"] is None
        ]

    def revoke(self, key_id: str, actor: Actor) -> ApiKeyPublic:
        actor.require("admin")
        with self.store.transaction() as tx:
            row = tx.get(t.api_keys, for_update=True, id=key_id)
            if row is None:
                raise NotFoundError(f"no API key with id '{key_id}'")
            if row["revoked_at"] is not None:
                raise ConflictError(f"API key '{key_id}' is already revoked")
            now = utcnow()
            tx.update(t.api_keys, {"id": key_id}, {"revoked_at": now})
            tx.audit(
                actor.name,
                "api_key.revoke",
                "api_key",
                key_id,
                {"revoked_at": None},
                {"revoked_at": now.isoformat()},
            )
        self._cache.clear()
        return ApiKeyPublic(**_public_fields({**row, "revoked_at": now}))

    def set_limits(self, key_id: str, limits: dict[str, float], actor: Actor) -> ApiKeyPublic:
        actor.require("admin")
        check_limits(limits)
        with self.store.transaction() as tx:
            row = tx.get(t.api_keys, for_update=True, id=key_id)
            if row is None:
                raise NotFoundError(f"no API key with id '{key_id}'")
            tx.update(t.api_keys, {"id": key_id}, {"limits": limits})
            tx.audit(
                actor.name,
                "api_key.limits",
                "api_key",
                key_id,
                {"limits": row["limits"]},
                {"limits": limits},
            )
        self._cache.clear()
        return ApiKeyPublic(**_public_fields({**row, "limits": limits}))

    def authenticate(self, secret: str | None) -> Actor:
        """The actor a secret belongs to; AuthenticationError for anything else."""
        if not secret:
            raise AuthenticationError("missing API key: send 'Authorization: Bearer <key>'")
        now = time.monotonic()
        cached = self._cache.get(secret)
        if cached is not None and cached[0] > now:
            return cached[1]
        parts = secret.split("_", 2)
        if len(parts) != 3 or f"{parts[0]}_" != SECRET_PREFIX:
            raise AuthenticationError("invalid API key")
        with self.store.read() as tx:
            row = tx.get(t.api_keys, prefix=parts[1])
        if row is None or not hmac.compare_digest(row["hash"], _digest(row["salt"], secret)):
            raise AuthenticationError("invalid API key")
        if row["revoked_at"] is not None:
            raise AuthenticationError("this API key was revoked")
        actor = Actor(name=row["name"], role=row["role"], key_id=row["id"], limits=row["limits"])
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[secret] = (now + self.cache_ttl_s, actor)
        return actor


def _public_fields(row: Row) -> dict[str, object]:
    return {
        k: row[k] for k in ("id", "name", "role", "prefix", "limits", "revoked_at", "created_at")
    }
