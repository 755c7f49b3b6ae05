"""llmloop: the closed loop of LLMOps, local-first.

The public API is small on purpose: the SDK client, settings and the error base class.
Everything else is reached through them, the CLI (`llmloop --help`) or the REST API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Client", "LlmloopError", "Settings", "__version__", "load_settings"]

if TYPE_CHECKING:
    from llmloop.client import Client
    from llmloop.config import Settings, load_settings
    from llmloop.errors import LlmloopError


def __getattr__(name: str) -> Any:
    # Lazy so that `import llmloop` stays cheap (no FastAPI, SQLAlchemy or httpx up front).
    if name == "Client":
        from llmloop.client import Client

        return Client
    if name in ("Settings", "load_settings"):
        from llmloop import config

        return getattr(config, name)
    if name == "LlmloopError":
        from llmloop.errors import LlmloopError

        return LlmloopError
    raise AttributeError(f"module 'llmloop' has no attribute {name!r}")
