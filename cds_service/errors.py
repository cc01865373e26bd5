"""What a call can fail with, as exceptions any room may raise (web/errors.py answers them).

Each carries the HTTP status and a message the client can act on; `operation_outcome` is the FHIR
body every error answer has. Nothing here knows about Flask.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

# FHIR issue-type codes for the HTTP statuses this service answers with.
ISSUE_TYPE_BY_STATUS = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    412: "incomplete",
    413: "too-long",
    415: "not-supported",
    422: "business-rule",
    500: "exception",
    503: "transient",
}


class ClientError(Exception):
    """An answer the client can act on: a status, a message and any headers that go with them.

    The message goes to the client and may name what the client sent (a path, a member name); the
    log line says only `kind` and `where` (both free of anything the client sent), so that no token,
    identifier or comment reaches the logs. Subclasses whose message is built from the service's own
    data alone (`message_is_loggable`) have it logged as well.
    """

    status = 400
    kind = "bad-request"
    message_is_loggable = False
    headers: ClassVar[dict[str, str]] = {}

    def __init__(self, message: str, where: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.where = where  # log-safe: a path with client-chosen names masked, a schema keyword

    def log_detail(self) -> str:
        parts = [self.kind, *(p for p in (self.where, self.message if self.message_is_loggable else None) if p)]
        return ": ".join(parts)


class BadRequest(ClientError):
    status = 400


class PayloadTooLarge(ClientError):
    status = 413
    kind = "too-large"
    message_is_loggable = True


class Unauthorized(ClientError):
    """The JWT is missing or invalid. The message never says which check failed (that goes to the log)."""

    status = 401
    kind = "unauthorized"
    headers: ClassVar[dict[str, str]] = {"WWW-Authenticate": "Bearer"}

    def __init__(self, message: str = "Authentication failed: send a valid JWT as 'Authorization: Bearer'.") -> None:
        super().__init__(message)


class UnknownService(ClientError):
    status = 404
    kind = "unknown-service"


class NotFound(ClientError):
    """A resource this service does not have (or does not show this caller)."""

    status = 404
    kind = "not-found"


class Unprocessable(ClientError):
    """Valid JSON and CDS Hooks, but not what Da Vinci CRD allows (CRD hook-13: 422)."""

    status = 422
    kind = "unprocessable"


class PrefetchUnavailable(ClientError):
    """Data the service needs was neither prefetched nor fetchable (CDS Hooks: 412).

    Carries what the gathering did, for the call's log line.
    """

    status = 412
    kind = "prefetch-unavailable"
    # The message is not logged: its reasons name the resources that could not be fetched
    # (e.g. PractitionerRole/123). The log line names the keys (`where`) instead.

    def __init__(
        self,
        message: str,
        hook_instance: str | None = None,
        fetched: Mapping[str, float] | None = None,
        missing: Mapping[str, str] | None = None,
        keys: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message, where=", ".join(keys) or None)
        self.hook_instance = hook_instance
        self.fetched = dict(fetched or {})
        self.missing = dict(missing or {})


class UnsupportedMediaType(ClientError):
    status = 415
    kind = "unsupported-media-type"


class StorageUnavailable(ClientError):
    """Not the client's fault, but answered the same way: the client should retry later (503, Retry-After)."""

    status = 503
    kind = "storage-unavailable"
    message_is_loggable = True
    headers: ClassVar[dict[str, str]] = {"Retry-After": "30"}


class ContentUnavailable(ClientError):
    """No valid content has ever been loaded (and none was saved): nothing can be answered."""

    status = 503
    kind = "content-unavailable"
    message_is_loggable = True  # the content files' problems: the service's own files


def operation_outcome(status: int, message: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error" if status < 500 else "fatal",
                "code": ISSUE_TYPE_BY_STATUS.get(status, "processing"),
                "diagnostics": message,
            }
        ],
    }
