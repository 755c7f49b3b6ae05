"""A pure-ASGI body-size limit: 413 from the Content-Length header before anything is read, and
413 for streamed (chunked) bodies as soon as they cross the limit. It buffers nothing itself.

A route that catches the error of an over-long body and answers it its own way (FastAPI turns
any failure to read a body into a 400) still answers 413: the first response after the body
crossed the limit is replaced by this one.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(Exception):
    pass


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                too_big = int(length) > self.max_bytes
            except ValueError:
                too_big = False
            if too_big:
                await self._refuse(scope, send)
                return
        seen = 0
        over = started = refused = False

        async def limited_receive() -> Message:
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    over = True
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started, refused
            if refused:
                return  # the rest of the app's own answer to a body it could not read
            if message["type"] == "http.response.start":
                if over:  # the app caught BodyTooLarge (FastAPI: "error parsing the body")
                    refused = True
                    await self._refuse(scope, send)
                    return
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started and not refused:
                await self._refuse(scope, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        path = scope.get("path", "")
        detail = f"request body is over the limit of {self.max_bytes} bytes"
        body: dict[str, Any]
        if path.startswith("/v1/"):
            body = {
                "error": {
                    "message": detail,
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "payload_too_large",
                }
            }
            media = b"application/json"
        else:
            body = {
                "type": "https://llmloop.dev/problems/payload_too_large",
                "title": "Payload too large",
                "status": 413,
                "detail": detail,
                "instance": path,
                "code": "payload_too_large",
            }
            media = b"application/problem+json"
        payload = json.dumps(body).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", media),
                    (b"connection", b"close"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})
