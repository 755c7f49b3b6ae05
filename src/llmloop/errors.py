"""One exception hierarchy for llmloop.

Every error a user can cause derives from :class:`LlmloopError` and carries the HTTP status,
a stable machine code and a human title. The API maps them to RFC 9457 problem JSON in one
place (``api/problems.py``) and the CLI maps them to a message and an exit code in one place
(``cli/main.py``). This module holds no mapping logic of its own beyond those attributes.
"""

from __future__ import annotations

from typing import Any


class LlmloopError(Exception):
    """Base of every error llmloop raises on purpose."""

    status: int = 500
    code: str = "internal_error"
    title: str = "Internal error"
    exit_code: int = 1

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    def to_dict(self) -> dict[str, Any]:
        """The error as plain data (used by problem JSON and ``--json`` CLI output)."""
        return {"code": self.code, "title": self.title, "detail": self.detail, **self.extra}


class InvalidInputError(LlmloopError):
    """The input is malformed or breaks a rule (HTTP 422)."""

    status = 422
    code = "invalid_input"
    title = "Invalid input"
    exit_code = 2


class BadRequestError(InvalidInputError):
    """The request itself cannot be read (HTTP 400)."""

    status = 400
    code = "bad_request"
    title = "Bad request"


class ContextLengthExceededError(BadRequestError):
    """The prompt, with the tokens asked for, does not fit the model's context (HTTP 400, as
    OpenAI's ``context_length_exceeded``)."""

    code = "context_length_exceeded"
    title = "Context length exceeded"


class NotFoundError(LlmloopError):
    """An id, name or version that does not exist (HTTP 404)."""

    status = 404
    code = "not_found"
    title = "Not found"
    exit_code = 3


class ConflictError(LlmloopError):
    """The change clashes with what exists: a duplicate, an immutable record (HTTP 409)."""

    status = 409
    code = "conflict"
    title = "Conflict"
    exit_code = 4


class ApprovalRequiredError(ConflictError):
    """A protected label or alias can only move through an approved request (HTTP 409)."""

    code = "approval_required"
    title = "Approval required"


class AuthenticationError(LlmloopError):
    """No credentials, or credentials that do not match a live key (HTTP 401)."""

    status = 401
    code = "unauthenticated"
    title = "Authentication required"
    exit_code = 5


class PermissionDeniedError(LlmloopError):
    """The caller's role does not allow the action (HTTP 403)."""

    status = 403
    code = "forbidden"
    title = "Forbidden"
    exit_code = 5


class UnsupportedMediaTypeError(BadRequestError):
    """The body is in an encoding or media type the endpoint does not read (HTTP 415)."""

    status = 415
    code = "unsupported_media_type"
    title = "Unsupported media type"


class PayloadTooLargeError(LlmloopError):
    """The body is over the configured limit (HTTP 413)."""

    status = 413
    code = "payload_too_large"
    title = "Payload too large"
    exit_code = 2


class RateLimitError(LlmloopError):
    """A quota, rate, concurrency or budget limit was reached (HTTP 429)."""

    status = 429
    code = "rate_limited"
    title = "Too many requests"
    exit_code = 6

    def __init__(self, detail: str, retry_after: float | None = None, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.retry_after = retry_after


class BudgetExceededError(RateLimitError):
    """The key's spend budget is used up (HTTP 429)."""

    code = "budget_exceeded"
    title = "Budget exceeded"


class OverloadedError(LlmloopError):
    """The server's queue is full; try again later (HTTP 503)."""

    status = 503
    code = "overloaded"
    title = "Service overloaded"
    exit_code = 6

    def __init__(self, detail: str, retry_after: float | None = None, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.retry_after = retry_after


class UpstreamError(LlmloopError):
    """An engine or upstream model failed (HTTP 502); ``retryable`` says whether to retry."""

    status = 502
    code = "upstream_error"
    title = "Upstream error"
    exit_code = 7

    def __init__(self, detail: str, retryable: bool = False, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.retryable = retryable


class UpstreamTimeoutError(UpstreamError):
    """An engine or upstream did not answer in time (HTTP 504)."""

    status = 504
    code = "upstream_timeout"
    title = "Upstream timeout"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail, retryable=True, **extra)


class GuardBlockedError(LlmloopError):
    """A guardrail blocked the request or the response (HTTP 400, OpenAI's content filter)."""

    status = 400
    code = "content_filter"
    title = "Blocked by a guardrail"
    exit_code = 8


class SchemaOutdatedError(LlmloopError):
    """The database schema is older than this llmloop; run ``llmloop db upgrade``."""

    status = 503
    code = "schema_outdated"
    title = "Database schema out of date"
    exit_code = 9


class MissingExtraError(LlmloopError):
    """An optional dependency is not installed; the message names the extra to install."""

    status = 501
    code = "missing_extra"
    title = "Optional dependency missing"
    exit_code = 10

    def __init__(self, extra_name: str, feature: str) -> None:
        super().__init__(
            f"{feature} needs the '{extra_name}' extra: pip install 'llmloop[{extra_name}]'",
            extra=extra_name,
        )


class ConfigError(LlmloopError):
    """Settings or a declarative file (recipe, pipeline, deployment) is wrong."""

    status = 422
    code = "config_error"
    title = "Configuration error"
    exit_code = 2


def require_extra(module: str, extra_name: str, feature: str) -> None:
    """Raise :class:`MissingExtraError` when ``module`` cannot be imported."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise MissingExtraError(extra_name, feature)
