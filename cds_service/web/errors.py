"""Every error answered in one place, as a FHIR OperationOutcome with the right status."""

from __future__ import annotations

import logging
import re

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, SecurityError

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
    log_refusal(error, route())
    return error_response(error.status, error.message, error.headers)


def log_refusal(error: ClientError, where: str) -> None:
    """Where (the route) and what kind, never the message: it may name what the client sent."""
    log.log(
        logging.WARNING if error.status >= 500 else logging.INFO,
        "answered %s on %s: %s",
        error.status,
        where,
        error.log_detail(),
        extra={"event": "refused", "status": error.status, "kind": error.kind},
    )


def route() -> str:
    """The route the request matched, with the service id when it names one (never the raw path)."""
    rule = request.url_rule.rule if request.url_rule is not None else "(no route)"
    service_id = (request.view_args or {}).get("service_id")
    if service_id is not None and service_id in known_service_ids():
        return rule.replace("<service_id>", service_id)
    return rule


SERVICE_PATH = re.compile(r"/cds-services/(?P<id>[^/]+)(?:/feedback)?")


def unknown_service_path() -> bool:
    """The request names a CDS service (or its feedback) by an id no service has."""
    match = SERVICE_PATH.fullmatch(request.path)
    return match is not None and match["id"] not in known_service_ids()


def known_service_ids() -> set[str]:
    from cds_service.wiring import current_services

    return {service.id for service in current_services().registry}


def http_error(error: HTTPException) -> Response:
    status = error.code or 500
    if isinstance(error, MethodNotAllowed) and unknown_service_path():
        # GET /cds-services/no-such-id: the service is missing, not the method (a POST gets the same 404).
        return error_response(404, f"No CDS service at this path. Services: {', '.join(sorted(known_service_ids()))}.")
    headers = (
        {"Allow": ", ".join(error.valid_methods)} if isinstance(error, MethodNotAllowed) and error.valid_methods else {}
    )
    return error_response(status, http_message(status, error), headers)


UNEXPECTED = "The CDS service failed to process this request."


def unexpected(error: Exception) -> Response:
    log_unexpected(request.method, route())
    return error_response(500, UNEXPECTED)


def log_unexpected(method: str, where: str) -> None:
    """A bug: logged with where it happened (the formatter prints the stack and the exception types, never their
    messages, which may hold values); the answer reveals nothing and the worker stays alive."""
    log.exception("unexpected error on %s %s", method, where)


def http_message(status: int, error: HTTPException) -> str:
    if status == 413:
        limit = (request.max_content_length or 1) - 1  # setup.py sets it one byte over the service's limit
        return f"The request body is larger than the limit of {limit} bytes."
    if status == 405 and isinstance(error, MethodNotAllowed):
        return f"This method is not allowed here; allowed: {', '.join(error.valid_methods or [])}."
    if status == 404:
        return "No resource at this path."
    if isinstance(error, SecurityError):
        return "The Host header names a host this service does not answer for (see CDS_PUBLIC_BASE_URL)."
    if status == 400:
        return "The request is malformed (request line or headers)."
    return error.name
