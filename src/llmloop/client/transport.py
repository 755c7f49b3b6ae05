"""How the SDK reaches llmloop: in process through the services, or over HTTP.

Each SDK method hands both ways to :meth:`Transport.call`: a function of (container, actor) for
in-process use, and (method, path, body, params) for HTTP. HTTP problem JSON is turned back into
the same ``llmloop.errors`` exception the service raised, so callers handle one set of errors.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import BaseModel, ValidationError

from llmloop import errors
from llmloop.client import checks
from llmloop.config import Settings
from llmloop.services.actors import Actor

_BY_CODE: dict[str, type[errors.LlmloopError]] = {}


def _index_errors(cls: type[errors.LlmloopError]) -> None:
    _BY_CODE.setdefault(cls.code, cls)
    for sub in cls.__subclasses__():
        _index_errors(sub)


_index_errors(errors.LlmloopError)


@dataclass
class HttpCall:
    method: str
    path: str
    body: Any = None
    params: dict[str, Any] | None = None
    files: dict[str, Any] | None = None
    data: dict[str, Any] | None = None


LocalCall = Callable[[Any, Actor], Any]


_PROBLEM_KEYS = {"type", "title", "status", "detail", "instance", "code"}


def error_from_problem(
    status: int, payload: Any, headers: Mapping[str, str] | None = None
) -> errors.LlmloopError:
    """The llmloop error a problem JSON (or an OpenAI error body) stands for: the same class,
    detail and extra fields (``existing_version``, ``approval_id``, …) the service raised, and
    ``retry_after`` (from the Retry-After header) and ``retryable`` where the class has them
    (problem JSON does not carry ``retryable``: only a timeout is known to be worth a retry)."""
    if isinstance(payload, dict) and "error" in payload and isinstance(payload["error"], dict):
        payload = {"code": payload["error"].get("code"), "detail": payload["error"].get("message")}
    code = payload.get("code") if isinstance(payload, dict) else None
    detail = payload.get("detail") if isinstance(payload, dict) else None
    cls = _BY_CODE.get(str(code), errors.LlmloopError)
    message = str(detail or f"HTTP {status}")
    if cls in (errors.MissingExtraError,):
        cls = errors.LlmloopError
    extra = (
        {k: v for k, v in payload.items() if k not in _PROBLEM_KEYS}
        if isinstance(payload, dict)
        else {}
    )
    err = cls.__new__(cls)
    errors.LlmloopError.__init__(err, message, **extra)
    if cls is errors.LlmloopError:
        err.status = status
    if isinstance(err, errors.RateLimitError | errors.OverloadedError):
        err.retry_after = _retry_after(headers)
    if isinstance(err, errors.UpstreamError):
        err.retryable = bool(extra.pop("retryable", isinstance(err, errors.UpstreamTimeoutError)))
    return err


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    try:
        return float(headers["Retry-After"]) if headers and "Retry-After" in headers else None
    except ValueError:
        return None


class LocalTransport:
    def __init__(self, settings: Settings, actor: Actor) -> None:
        from llmloop.services.container import Container

        self.container = Container(settings)
        self.actor = actor

    def call(self, local: LocalCall, http: HttpCall) -> Any:
        try:
            return local(self.container, self.actor)
        except ValidationError as exc:  # a value a service built from the arguments: as a 422
            raise checks.invalid(exc) from None

    def close(self) -> None:
        self.container.close()


class HttpTransport:
    def __init__(
        self,
        url: str,
        api_key: str | None,
        timeout: float = 30.0,
        client: httpx.Client | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = client or httpx.Client(base_url=url.rstrip("/"), timeout=timeout)
        self.client.headers.update(headers)

    def call(self, local: LocalCall, http: HttpCall) -> Any:
        body = (
            http.body.model_dump(mode="json", by_alias=True)
            if isinstance(http.body, BaseModel)
            else http.body
        )
        params = {k: v for k, v in (http.params or {}).items() if v is not None} or None
        try:
            json.dumps(body, allow_nan=False)
        except ValueError:  # what the service, in process, refuses as invalid input too
            raise errors.InvalidInputError(
                "a number is NaN or infinite: JSON (and llmloop) takes finite numbers only"
            ) from None
        try:
            if http.files is not None:
                response = self.client.request(
                    http.method, http.path, files=http.files, data=http.data, params=params
                )
            else:
                response = self.client.request(http.method, http.path, json=body, params=params)
        except httpx.HTTPError as exc:
            raise errors.UpstreamError(
                f"cannot reach llmloop at {self.client.base_url}: {exc}", retryable=True
            ) from exc
        if response.status_code >= 400:
            try:
                payload = response.json()
            except ValueError:
                payload = {"detail": response.text[:500]}
            raise error_from_problem(response.status_code, payload, response.headers)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def close(self) -> None:
        self.client.close()
