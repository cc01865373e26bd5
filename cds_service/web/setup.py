"""Puts the HTTP layer on a Flask app: JSON, errors, blueprints, CORS, security headers, proxies."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, request
from flask_cors import CORS
from werkzeug.middleware.proxy_fix import ProxyFix

from cds_service.settings import Settings
from cds_service.web import analytics, errors, hook_routes, openapi, ops, pages, preview, prior_notification, staff
from cds_service.web.hook_path import HookPath
from cds_service.web.json_provider import OrjsonProvider
from cds_service.wiring import current_services, services_of

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # Scripts and styles come from this service's own files (web/static), never inline.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "base-uri 'none'; frame-ancestors 'none'"
    ),
}
HSTS = "max-age=31536000"  # a year; only when the public base URL is https
# Without a public base URL or a trusted proxy, card links are built from the Host header: only these
# may name it, so that a request cannot point the links at another host.
LOOPBACK_HOSTS = ["localhost", "127.0.0.1", "[::1]", "::1"]
STATIC_MAX_AGE_SECONDS = 3600


def init_app(app: Flask, settings: Settings) -> None:
    app.json = OrjsonProvider(app)
    app.json.sort_keys = False  # keep cards in the order a clinician should read them
    # One byte over the limit, so that a chunked body cut there is seen to be too large (hook_routes.read_body).
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes + 1
    app.before_request(pick_up_content_edits)
    if not settings.public_base_url and not settings.trusted_proxy_hops:
        app.config["TRUSTED_HOSTS"] = LOOPBACK_HOSTS
    app.config["SEND_FILE_MAX_AGE_DEFAULT"] = STATIC_MAX_AGE_SECONDS
    errors.init_app(app)
    staff.init_app(app, settings)  # before any blueprint: its guard covers every /analytics URL
    app.register_blueprint(hook_routes.blueprint)
    app.register_blueprint(pages.blueprint)
    app.register_blueprint(prior_notification.blueprint)
    app.register_blueprint(ops.blueprint)
    app.register_blueprint(openapi.blueprint)
    app.register_blueprint(analytics.blueprint)
    if settings.shows_preview:
        app.register_blueprint(preview.blueprint)
    enable_cors(app, settings)
    app.after_request(add_security_headers)
    if (settings.public_base_url or "").startswith("https://"):
        app.after_request(add_hsts)
    hook_path = HookPath(
        app, services_of(app), settings, app.json, hook_answer_headers(settings), cors_options(settings)
    )
    app.wsgi_app = hook_path  # type: ignore[method-assign]
    if settings.trusted_proxy_hops:
        hops = settings.trusted_proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops, x_prefix=hops)  # type: ignore[method-assign]


def pick_up_content_edits() -> None:
    """Edited content files are looked for on a request (at most every CDS_CONTENT_RELOAD_SECONDS)."""
    current_services().content.check()


def enable_cors(app: Flask, settings: Settings) -> None:
    """Browser-based CDS clients (CDS Hooks "Cross-Origin Resource Sharing"): discovery, services, feedback,
    and the FHIR endpoints of Prior Notification (a browser-based form filler posts QuestionnaireResponses)."""
    options = cors_options(settings)
    if options is None:
        return
    CORS(
        app,
        resources={r"/cds-services(/.*)?$": options, r"/fhir/(Questionnaire|QuestionnaireResponse)(/.*)?$": options},
    )
    if options["origins"] != ["*"]:
        app.after_request(vary_on_origin)


def cors_options(settings: Settings) -> dict[str, Any] | None:
    """Flask-Cors's options for the CDS Hooks and FHIR endpoints (the hook path asks Flask-Cors with them too);
    None: no origin is allowed."""
    origins = list(settings.allowed_origins)
    if not origins:
        return None
    return {
        "origins": origins,
        "methods": ["GET", "POST", "OPTIONS"],
        "allow_headers": ["Authorization", "Content-Type"],
        "expose_headers": ["WWW-Authenticate", "Retry-After"],
        "supports_credentials": False,  # the JWT travels in a header, never in a cookie
        "send_wildcard": origins == ["*"],
        "max_age": 600,
    }


def hook_answer_headers(settings: Settings) -> list[tuple[str, str]]:
    """The headers every hook answer has, as add_security_headers and add_hsts give them to Flask's answers."""
    headers = [*SECURITY_HEADERS.items(), ("Cache-Control", "no-store")]
    if (settings.public_base_url or "").startswith("https://"):
        headers.append(("Strict-Transport-Security", HSTS))
    return headers


def vary_on_origin(response: Response) -> Response:
    """Whether CORS headers are sent depends on the Origin header, also when they are not (a refused origin)."""
    if request.path == "/cds-services" or request.path.startswith(("/cds-services/", "/fhir/")):
        response.vary.add("Origin")
    return response


# The security headers with their names as Werkzeug compares them, computed once: adding what is missing in one
# pass costs about a fifth of one Headers.setdefault per header (BENCHMARKS.md, "The serving stack").
SECURITY_HEADER_ITEMS = tuple((name.lower(), name, value) for name, value in SECURITY_HEADERS.items())


def add_security_headers(response: Response) -> Response:
    headers = response.headers
    present = {name.lower() for name, _value in headers}
    headers.extend([(name, value) for key, name, value in SECURITY_HEADER_ITEMS if key not in present])
    # Hook answers, feedback and pages may carry patient data: no cache keeps them. Only this
    # service's own static files (scripts, styles) may be cached.
    if request.endpoint != "static":
        if "cache-control" in present:
            headers["Cache-Control"] = "no-store"
        else:
            headers.add("Cache-Control", "no-store")
    return response


def add_hsts(response: Response) -> Response:
    response.headers.setdefault("Strict-Transport-Security", HSTS)
    return response
