"""The state of one CLI invocation: the global flags, the Settings built from them, the
Container (built lazily, closed when the command ends) and the acting local user.

Settings are built once here, at the edge, with :func:`llmloop.config.load_settings`; nothing
else in the CLI reads the environment. This module does not parse command options
(``cli/options.py``) or print anything (``cli/output.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from llmloop.config import Settings, load_settings

if TYPE_CHECKING:
    from llmloop.services.actors import Actor
    from llmloop.services.container import Container


@dataclass
class CliState:
    """What the global options decided; commands ask it for settings, services and the actor."""

    overrides: dict[str, Any] = field(default_factory=dict)
    as_user: str | None = None
    _settings: Settings | None = None
    _container: Container | None = None

    @property
    def settings(self) -> Settings:
        """Settings from flags > env > llmloop.toml > defaults, built on first use."""
        if self._settings is None:
            self._settings = load_settings(self.overrides)
        return self._settings

    @property
    def container(self) -> Container:
        """The composition root; imported lazily so ``--help`` stays light."""
        if self._container is None:
            from llmloop.services.container import Container

            self._container = Container(self.settings)
        return self._container

    def actor(self, as_user: str | None = None) -> Actor:
        """The local user (``--as NAME`` acts as someone else, e.g. a second approver)."""
        from llmloop.services.actors import local_actor

        return local_actor(as_user or self.as_user)

    def close(self) -> None:
        """Release database connections; safe to call when nothing was opened."""
        if self._container is not None:
            self._container.close()
            self._container = None


def build_state(
    home: Path | None = None,
    database_url: str | None = None,
    artifacts_url: str | None = None,
    as_user: str | None = None,
) -> CliState:
    """The state for the global flags; a flag left out is not an override."""
    overrides: dict[str, Any] = {
        "home": home,
        "database_url": database_url,
        "artifacts_url": artifacts_url,
    }
    return CliState(
        overrides={k: v for k, v in overrides.items() if v is not None}, as_user=as_user
    )


def get_state(ctx: typer.Context) -> CliState:
    """The invocation's state, set by the root callback (a default one when run bare)."""
    state = ctx.find_object(CliState)
    if state is None:
        state = build_state()
        ctx.obj = state
        ctx.call_on_close(state.close)
    return state
