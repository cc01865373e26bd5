"""The hook call's own WSGI path, in front of Flask: POST /cds-services/<id> is answered here, everything else by Flask.

A hook call needs none of what Flask builds per request (request and response objects, contexts, routing,
hooks), which cost about a quarter of a call (BENCHMARKS.md, "The serving stack"). This path reads the body and
the few headers it needs from the WSGI environ and answers with headers computed once: the security headers,
and Flask-Cors's answer for each Origin (computed by Flask-Cors itself, from the same options as Flask's).
What it does is what the Flask route did: authenticate, read and parse the body, answer, log, count, record;
errors are answered as OperationOutcomes by the same functions as Flask's (web/errors.py).

Flask still holds the route (OpenAPI, OPTIONS preflights, 405 for other methods) without a view; a request
whose Host is not trusted is left to Flask, which refuses it as it does for every URL.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import lru_cache
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from flask_cors.core import get_cors_headers, get_cors_options
from werkzeug.datastructures import Headers
from werkzeug.exceptions import RequestEntityTooLarge, SecurityError
from werkzeug.http import parse_options_header
from werkzeug.sansio.utils import get_host
from werkzeug.wsgi import get_input_stream

from cds_service.errors import (
    ClientError,
    PayloadTooLarge,
    PrefetchUnavailable,
    UnsupportedMediaType,
    operation_outcome,
)
from cds_service.observability import metrics
from cds_service.pipeline.analytics import clinician_pseudonym, hook_call_record
from cds_service.pipeline.call import CallResult, answer_hook
from cds_service.pipeline.validation import parse_hook_request
from cds_service.web.errors import UNEXPECTED, log_refusal, log_unexpected
from cds_service.web.json_provider import OrjsonProvider

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from flask import Flask

    from cds_service.settings import Settings
    from cds_service.web.auth import Caller
    from cds_service.wiring import AppServices
    from hooks.service import ServiceDefinition

log = logging.getLogger("lbp_cds")

HOOK_PATH = re.compile(r"/cds-services/([^/]+)")
RULE = "/cds-services/<service_id>"
STATUS_LINES = {200: "200 OK"}
HeaderList = list[tuple[str, str]]


class HookPath:
    """WSGI middleware: hook calls here, every other request to `flask` (the Flask app's WSGI callable)."""

    def __init__(
        self,
        app: Flask,
        services: AppServices,
        settings: Settings,
        json: OrjsonProvider,
        headers: HeaderList,
        cors_options: dict[str, Any] | None,
    ) -> None:
        self.flask: WSGIApplication = app.wsgi_app
        self.services = services
        self.settings = settings
        self.encode = json.encode
        self.headers = headers  # security headers, Cache-Control, HSTS: the same on every hook answer
        self.cors = CorsAnswers(app, cors_options) if cors_options else None
        self.trusted_hosts: list[str] | None = app.config.get("TRUSTED_HOSTS")
        # The Host header checked and read per (scheme, Host, server), once: an EHR sends the same few.
        self.host = lru_cache(maxsize=64)(self.checked_host)
        self.known = frozenset(service.id for service in services.registry)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        match = HOOK_PATH.fullmatch(environ.get("PATH_INFO", ""))
        if match is None or environ.get("REQUEST_METHOD") != "POST":
            return self.flask(environ, start_response)
        try:
            base = self.base_url(environ)
        except SecurityError:
            return self.flask(environ, start_response)  # an untrusted Host: refused as on every URL
        service_id = match[1].encode("latin-1").decode("utf-8", "replace")
        status, body, extra, request = self.answer(environ, service_id, base)
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *self.headers, *extra]
        if self.cors is not None:
            headers += self.cors.headers(
                environ.get("HTTP_ORIGIN"), environ.get("HTTP_ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK")
            )
        start_response(STATUS_LINES.get(status) or status_line(status), headers)
        return Answer(body, request)

    def base_url(self, environ: WSGIEnvironment) -> str:
        """Where this service's pages are reachable: configured, else as the request was addressed (the Host
        checked against the trusted hosts, as Flask checks it)."""
        scheme = environ.get("wsgi.url_scheme", "http")
        host = self.host(scheme, environ.get("HTTP_HOST"), environ.get("SERVER_NAME", ""), environ.get("SERVER_PORT"))
        if self.settings.public_base_url:
            return self.settings.public_base_url
        script_root = environ.get("SCRIPT_NAME", "").encode("latin-1").decode("utf-8", "replace")
        return f"{scheme}://{host}{script_root}".rstrip("/")

    def checked_host(self, scheme: str, host: str | None, server_name: str, server_port: str | None) -> str:
        """The request's host as Flask reads it; SecurityError (never remembered) when it is not trusted."""
        return get_host(scheme, host, (server_name, int(server_port or 0) or None), self.trusted_hosts)

    def answer(self, environ: WSGIEnvironment, service_id: str, base: str) -> tuple[int, bytes, HeaderList, object]:
        """Status, JSON body and the headers that go with this answer, and the request as read (freed after the
        answer is handed to the server: Answer)."""
        services = self.services
        route = RULE.replace("<service_id>", service_id) if service_id in self.known else RULE
        started = time.perf_counter()
        try:
            services.content.check()  # edited content files are looked for on a request
            service = services.registry.get(service_id)
            try:
                result, caller, user_id, request = self.call(environ, services, service, base, route)
            except ClientError as error:
                log_call(service.id, error.status, started, refused=error)
                raise
            except Exception:
                log_call(service.id, 500, started)
                raise
        except ClientError as error:
            log_refusal(error, route)
            return (
                error.status,
                self.encode(operation_outcome(error.status, error.message)),
                [*error.headers.items()],
                None,
            )
        except Exception:
            log_unexpected("POST", route)
            return 500, self.encode(operation_outcome(500, UNEXPECTED)), [], None
        line = call_line(service.id, 200, started, result=result)
        for topic in result.topics:
            metrics.cards_issued(service.id, topic).inc()
        record_issued(services, service.id, service.hook, result, caller, user_id, line)
        return 200, self.encode(result.response()), [], (request, result)

    def call(
        self, environ: WSGIEnvironment, services: AppServices, service: ServiceDefinition, base: str, route: str
    ) -> tuple[CallResult, Caller | None, object, object]:
        """The call's result, who called (the JWT's issuer, tenant and subject), the context's userId and the
        request as read."""
        caller = None
        if services.jwt_verifier is not None:
            caller = services.jwt_verifier.verify(
                environ.get("HTTP_AUTHORIZATION"), audience=base + environ["PATH_INFO"], endpoint=base + route
            )
        require_json(parse_options_header(environ.get("CONTENT_TYPE", ""))[0].lower())
        body = parse_hook_request(read_body(environ, services.settings.max_body_bytes))
        result = answer_hook(service, body, services.call_dependencies(base, caller))
        return result, caller, body["context"].get("userId"), body


class Answer(list[bytes]):
    """A hook call's WSGI answer (its one body), holding the request as read and the call's result until the
    server lets go of the answer, after it has taken the body: a large record is freed while the answer is sent,
    not before (freeing a 10,000-resource record's typed data took about 2.5 ms)."""

    __slots__ = ("keep",)

    def __init__(self, body: bytes, keep: object) -> None:
        super().__init__((body,))
        self.keep = keep


def status_line(status: int) -> str:
    return f"{status} {HTTPStatus(status).phrase}"


class CorsAnswers:
    """Flask-Cors's headers for a hook answer, by the request's Origin, computed by Flask-Cors once per origin."""

    def __init__(self, app: Flask, options: dict[str, Any]) -> None:
        self.options = get_cors_options(app, options)  # with the app's CORS_* settings, as Flask-Cors merges them
        self.vary = options["origins"] != ["*"]  # whether CORS headers are sent depends on the Origin header
        self.headers = lru_cache(maxsize=64)(self.compute)

    def compute(self, origin: str | None, private_network: str | None) -> HeaderList:
        request = Headers()
        if origin is not None:
            request["Origin"] = origin
        if private_network is not None:
            request["Access-Control-Request-Private-Network"] = private_network
        answer = [
            (name, str(value)) for name, value in get_cors_headers(self.options, request, "POST").items(multi=True)
        ]
        if self.vary and ("Vary", "Origin") not in answer:
            answer.append(("Vary", "Origin"))
        return answer


def require_json(mimetype: str) -> None:
    """415 unless the body is said to be JSON (application/json or a +json type): every JSON route's check."""
    if not mimetype or not (mimetype == "application/json" or mimetype.endswith("+json")):
        raise UnsupportedMediaType("Send the request as application/json (Content-Type).")


def read_body(environ: WSGIEnvironment, limit: int) -> bytes:
    """The body, 413 beyond `limit` bytes whatever the transfer encoding (a chunked body is read up to one
    byte over the limit, so that one that reaches it is seen to be too large)."""
    length = environ.get("CONTENT_LENGTH")
    if length and length.isdigit() and int(length) <= limit:  # the usual case, read as it is (no wrapper stream)
        return environ["wsgi.input"].read(int(length))  # type: ignore[no-any-return]
    try:
        raw = get_input_stream(environ, max_content_length=limit + 1).read()
    except RequestEntityTooLarge:
        raw = b""
        too_large = True
    else:
        too_large = len(raw) > limit
    if too_large:
        raise PayloadTooLarge(f"The request body is larger than the limit of {limit} bytes.")
    return raw


def log_call(service_id: str, status: int, started: float, refused: ClientError | None = None) -> None:
    """The line of a call that was not answered (call_line), written now; an answered call's line goes to the
    issued-card writer with its record (record_issued)."""
    line = call_line(service_id, status, started, refused=refused)
    if line is not None:
        log.handle(line)


def call_line(
    service_id: str,
    status: int,
    started: float,
    result: CallResult | None = None,
    refused: ClientError | None = None,
) -> logging.LogRecord | None:
    """One line per hook call: what was answered, how long it took, which data was fetched or missing; made
    now (its time and duration), written by whoever takes it (None when the service does not log at INFO)."""
    seconds = time.perf_counter() - started
    metrics.hook_seconds(service_id, status).observe(seconds)
    if not log.isEnabledFor(logging.INFO):
        return None
    fields: dict[str, Any] = {
        "event": "hook_call",
        "service": service_id,
        "status": status,
        "topics": list(result.topics) if result else [],
        "fetched": dict(result.fetched) if result else {},
        "missing": sorted(result.missing) if result else [],
        "systemActions": len(result.system_actions) if result else 0,
        "ms": round(seconds * 1000, 2),
    }
    if result is not None:
        fields["hookInstance"] = result.hook_instance
    if isinstance(refused, PrefetchUnavailable):
        fields["hookInstance"] = refused.hook_instance
        fields["fetched"], fields["missing"] = refused.fetched, sorted(refused.missing)
    # What log.info would make (no caller's file or line: logs.skip_unused_record_fields).
    return log.makeRecord(
        log.name, logging.INFO, "(unknown file)", 0, "hook call", (), None, "(unknown function)", extra=fields
    )


def record_issued(
    services: AppServices,
    service_id: str,
    hook: str,
    result: CallResult,
    caller: Caller | None,
    user_id: object,
    line: logging.LogRecord | None,
) -> None:
    """Record the call and its cards for the feedback report and analytics: the record is made here, while what
    it is made of is in the CPU's caches, and stored by the writer thread, off the call's path. The writer
    writes the call's log line too."""
    issuer, tenant = (caller.issuer, caller.tenant) if caller else (None, None)
    key, key_id = services.settings.clinician_key, services.settings.clinician_key_id
    user = user_id if isinstance(user_id, str) and user_id else (caller.subject if caller else None)
    pseudonym = clinician_pseudonym(key.get_secret_value(), issuer, tenant, user) if key else None
    try:
        call = hook_call_record(
            result,
            service_id,
            hook,
            datetime.now(UTC),
            services.current_content(),
            (issuer, tenant),
            (pseudonym, key_id),
        )
    except Exception:  # bookkeeping: never the clinician's problem
        log.exception("hook call not recorded (analytics record could not be made)")
        if line is not None:
            log.handle(line)
        return
    services.issued_cards.record(call, line)
