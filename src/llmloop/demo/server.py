"""``llmloop serve`` in a thread of the demo's own process, on a free loopback port."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

from llmloop.config import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """The real server (REST API and gateway) on 127.0.0.1; a context manager."""

    def __init__(self, settings: Settings, container: Any = None) -> None:
        import uvicorn

        from llmloop.api.app import create_app

        self.port = free_port()
        config = uvicorn.Config(
            create_app(settings, container),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the demo server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"
