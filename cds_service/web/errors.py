"""Every error answered in one place, as a FHIR OperationOutcome with the right status."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from cds_service.errors import ClientError, operation_outcome

log = logging.getLogger("lbp_cds")


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    response = jsonify(operation_outcome(status, message))
    response.status_code = status
    response.headers.update(headers or {})
    return response


def init_app(app: Flask) -> None:
    app.register_error_handler(ClientError, client_error)
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(Exception, unexpected)


def client_error(error: ClientError) -> Response:
    log.log(
        logging.WARNING if error.status >= 500 else logging.INFO,
        "answered %s on %s: %s",
        error.status,
        request.path,
        error.message,
    )
    return error_response(error.status, error.message, error.headers)


def http_error(error: HTTPException) -> Response:
    status = error.code or 500
    return error_response(status, http_message(status, error))


def unexpected(error: Exception) -> Response:
    # A bug: log it with the call it happened in, reveal nothing, keep the worker alive.
    log.exception("unexpected error on %s %s", request.method, request.path)
    return error_response(500, "The CDS service failed to process this request.")


def http_message(status: int, error: HTTPException) -> str:
    if status == 413:
        return f"The request body is larger than the limit of {request.max_content_length} bytes."
    if status == 405:
        return f"{request.method} is not allowed on {request.path}."
    if status == 404:
        return f"No resource at {request.path}."
    return error.description or error.name
