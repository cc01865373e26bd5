"""Client errors as exceptions, answered in one place as FHIR OperationOutcomes."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

log = logging.getLogger("lbp_cds")

# FHIR issue-type codes for the HTTP statuses this service answers with.
ISSUE_TYPE_BY_STATUS = {
    400: "invalid",
    401: "login",
    404: "not-found",
    405: "not-supported",
    412: "incomplete",
    413: "too-long",
    415: "not-supported",
    500: "exception",
    503: "transient",
}


class ClientError(Exception):
    """An answer the client can act on: a status, a message and any headers that go with them."""

    status = 400
    headers: ClassVar[dict[str, str]] = {}

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ClientError):
    status = 400


class Unauthorized(ClientError):
    """The JWT is missing or invalid. The message never says which check failed (that goes to the log)."""

    status = 401
    headers: ClassVar[dict[str, str]] = {"WWW-Authenticate": "Bearer"}

    def __init__(self, message: str = "Authentication failed: send a valid JWT as 'Authorization: Bearer'.") -> None:
        super().__init__(message)


class UnknownService(ClientError):
    status = 404


class PrefetchUnavailable(ClientError):
    """Data the service needs was neither prefetched nor fetchable (CDS Hooks: 412)."""

    status = 412


class UnsupportedMediaType(ClientError):
    status = 415


class StorageUnavailable(ClientError):
    """Not the client's fault, but answered the same way: the client should retry later (503, Retry-After)."""

    status = 503
    headers: ClassVar[dict[str, str]] = {"Retry-After": "30"}


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


def error_response(status: int, message: str) -> tuple[Response, int]:
    return jsonify(operation_outcome(status, message)), status


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ClientError)
    def client_error(error: ClientError) -> Response:
        log.log(
            logging.WARNING if error.status >= 500 else logging.INFO,
            "answered %s on %s: %s",
            error.status,
            request.path,
            error.message,
        )
        response, status = error_response(error.status, error.message)
        response.status_code = status
        response.headers.update(error.headers)
        return response

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> tuple[Response, int]:
        status = error.code or 500
        return error_response(status, http_message(status, error))

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> tuple[Response, int]:
        # A bug: log it with the call it happened in, reveal nothing, keep the worker alive.
        log.exception("unexpected error on %s %s", request.method, request.path)
        return error_response(500, "The CDS service failed to process this request.")


def http_message(status: int, error: HTTPException) -> str:
    if status == 413:
        limit = request.max_content_length
        return f"The request body is larger than the limit of {limit} bytes."
    if status == 405:
        return f"{request.method} is not allowed on {request.path}."
    if status == 404:
        return f"No resource at {request.path}."
    return error.description or error.name
