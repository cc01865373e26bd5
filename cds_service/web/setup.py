"""Puts the HTTP layer on a Flask app: JSON, errors, blueprints, CORS, security headers, proxies."""

from __future__ import annotations

from flask import Flask, Response
from flask_cors import CORS
from werkzeug.middleware.proxy_fix import ProxyFix

from cds_service.settings import Settings
from cds_service.web import errors, hook_routes, ops, pages, preview, prior_notification
from cds_service.web.json_provider import OrjsonProvider
from cds_service.wiring import current_services

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'; "
        "frame-ancestors 'none'"
    ),
}


def init_app(app: Flask, settings: Settings) -> None:
    app.json = OrjsonProvider(app)
    app.json.sort_keys = False  # keep cards in the order a clinician should read them
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.before_request(pick_up_content_edits)
    errors.init_app(app)
    app.register_blueprint(hook_routes.blueprint)
    app.register_blueprint(pages.blueprint)
    app.register_blueprint(prior_notification.blueprint)
    app.register_blueprint(ops.blueprint)
    if settings.shows_preview:
        app.register_blueprint(preview.blueprint)
    enable_cors(app, settings)
    app.after_request(add_security_headers)
    if settings.trusted_proxy_hops:
        hops = settings.trusted_proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops, x_prefix=hops)  # type: ignore[method-assign]


def pick_up_content_edits() -> None:
    """Edited content files are looked for on a request (at most every CDS_CONTENT_RELOAD_SECONDS)."""
    current_services().content.check()


def enable_cors(app: Flask, settings: Settings) -> None:
    """Browser-based CDS clients (CDS Hooks "Cross-Origin Resource Sharing"): discovery, services, feedback,
    and the FHIR endpoints of Prior Notification (a browser-based form filler posts QuestionnaireResponses)."""
    origins = list(settings.allowed_origins)
    if not origins:
        return
    options = {
        "origins": origins,
        "methods": ["GET", "POST", "OPTIONS"],
        "allow_headers": ["Authorization", "Content-Type"],
        "expose_headers": ["WWW-Authenticate", "Retry-After"],
        "supports_credentials": False,  # the JWT travels in a header, never in a cookie
        "send_wildcard": origins == ["*"],
        "max_age": 600,
    }
    CORS(
        app,
        resources={r"/cds-services(/.*)?$": options, r"/fhir/(Questionnaire|QuestionnaireResponse)(/.*)?$": options},
    )


def add_security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response
