"""Who is acting: a name and a role, checked by services and written to the audit log.

Roles are ordered viewer < editor < admin. The in-process CLI and SDK act as the local user with
the admin role; the HTTP server acts as the API key's owner.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass

from llmloop.errors import PermissionDeniedError

ROLE_RANK = {"viewer": 0, "editor": 1, "admin": 2}


@dataclass(frozen=True)
class Actor:
    name: str
    role: str = "admin"
    key_id: str | None = None
    limits: dict[str, float] | None = None

    def require(self, role: str) -> None:
        """Raise PermissionDeniedError unless this actor has ``role`` or higher."""
        if ROLE_RANK.get(self.role, -1) < ROLE_RANK[role]:
            raise PermissionDeniedError(
                f"'{self.name}' has role '{self.role}'; this needs '{role}' or higher"
            )


def local_actor(name: str | None = None) -> Actor:
    """The person at the keyboard, for the in-process CLI and SDK."""
    try:
        user = name or getpass.getuser()
    except (KeyError, OSError):
        user = name or "local"
    return Actor(name=user, role="admin")
