"""The one step every SDK method ends in: hand both ways of the call to the transport and give
back the same pydantic values either way (HTTP answers are validated into them)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

from llmloop.client import checks
from llmloop.client.transport import HttpCall, HttpTransport, LocalTransport
from llmloop.errors import UpstreamError

T = TypeVar("T")


class Calls:
    _t: LocalTransport | HttpTransport

    @property
    def _local(self) -> bool:
        return isinstance(self._t, LocalTransport)

    def _do(self, shape: Any, local: Any, http: HttpCall) -> Any:
        checks.finite(http.body)
        result = self._t.call(local, http)
        if shape is None or self._local:
            return result
        try:
            return TypeAdapter(shape).validate_python(result)
        except ValidationError as exc:  # a server of another version, or not llmloop at all
            raise UpstreamError(f"{http.method} {http.path} answered an unexpected shape: {exc}")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a service coroutine to the end from synchronous code, also where an event loop
    already runs in this thread (a notebook): there it runs on a loop of its own thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # handed to the caller's thread below
            box["error"] = exc

    worker = threading.Thread(target=target, name="llmloop-sdk-call")
    worker.start()
    worker.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]
