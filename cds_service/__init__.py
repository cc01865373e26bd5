"""lbp-cds: a CDS Hooks 2.0 service for the low back pain Medical Spine Center pathway."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import date

from flask import Flask, Response
from flask_cors import CORS
from pythonjsonlogger.json import JsonFormatter
from werkzeug.middleware.proxy_fix import ProxyFix

from cds_service import api, cli, live_content, ops, pages, preview, validation
from cds_service.auth import JwtVerifier, RedisReplayStore, ReplayStore
from cds_service.config import Settings
from cds_service.content import Content
from cds_service.errors import register_error_handlers
from cds_service.fhir_client import FhirFetcher
from cds_service.issued import IssuedCardRecorder
from cds_service.json_provider import OrjsonProvider
from cds_service.registry import Registry
from cds_service.storage import Storage
from hooks import SERVICES

log = logging.getLogger("lbp_cds")

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'; "
        "frame-ancestors 'none'"
    ),
}


def create_app(
    settings: Settings | None = None,
    content: Content | None = None,
    today: Callable[[], date] = date.today,
    require_content: bool = True,
    serving: bool = True,
) -> Flask:
    """The application factory: settings from the environment unless given.

    `today` is the clinical "today" (ages, look-back windows); tests and dated examples fix it.
    Content given here is fixed; otherwise it is loaded from settings.content_dir and reloaded when
    edited. With no valid content (and no saved last good copy) the factory fails, listing the
    problems, unless `require_content` is False: then hook calls are answered 503 until it is fixed.
    With `serving` False (the `flask` commands) the JWT settings are not required: nothing is served,
    and a service started that way would refuse every call for want of a trusted issuer.
    """
    settings = settings or Settings.from_env()
    if serving:
        settings.check()
    configure_logging(logging.INFO if serving else logging.WARNING)
    app = Flask(__name__)
    app.json = OrjsonProvider(app)
    app.config["LBP_SETTINGS"] = settings
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # keep cards in the order a clinician should read them
    if content is not None:
        app.extensions["lbp_content"] = content
    else:
        live_content.serve(app, settings, require_content)
    app.extensions["lbp_registry"] = Registry(SERVICES)
    validation.prepare(service.hook for service in SERVICES)
    app.extensions["lbp_today"] = today
    app.extensions["lbp_fetcher"] = FhirFetcher(
        allowlist=settings.fhir_allowlist,
        budget_ms=settings.fhir_budget_ms,
        page_limit=settings.fhir_page_limit,
        cache_seconds=settings.fhir_cache_seconds,
        cache_size=settings.fhir_cache_size,
    )
    storage = Storage(settings.database_url)
    storage.migrate()
    app.extensions["lbp_storage"] = storage
    app.extensions["lbp_issued_cards"] = IssuedCardRecorder(storage)
    app.extensions["lbp_jwt_verifier"] = jwt_verifier(settings, storage)
    register_error_handlers(app)
    app.register_blueprint(api.blueprint)
    app.register_blueprint(pages.blueprint)
    app.register_blueprint(ops.blueprint)
    if settings.shows_preview:
        app.register_blueprint(preview.blueprint)
    cli.register(app)
    enable_cors(app, settings)
    app.after_request(add_security_headers)
    if settings.trusted_proxy_hops:
        hops = settings.trusted_proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops, x_prefix=hops)  # type: ignore[method-assign]
    if not settings.require_jwt:
        log.warning("CDS_REQUIRE_JWT=false: service calls are accepted without a JWT. Use only for development.")
    return app


def jwt_verifier(settings: Settings, storage: Storage) -> JwtVerifier | None:
    if not settings.require_jwt:
        return None
    # Shared by every worker and replica, so a token cannot be replayed against another process.
    replay: ReplayStore = RedisReplayStore(settings.redis_url) if settings.redis_url else storage
    return JwtVerifier(settings, replay)


def enable_cors(app: Flask, settings: Settings) -> None:
    """Browser-based CDS clients (CDS Hooks "Cross-Origin Resource Sharing"): discovery, services, feedback."""
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
    CORS(app, resources={r"/cds-services(/.*)?$": options})


def configure_logging(level: int) -> None:
    """One JSON object per line (CDS_LOG_FORMAT=text for people), unless the host configured logging."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler()
    if os.environ.get("CDS_LOG_FORMAT", "json").lower() == "text":
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    else:
        fields = "%(asctime)s %(levelname)s %(name)s %(message)s"
        handler.setFormatter(JsonFormatter(fields, rename_fields={"levelname": "level", "asctime": "time"}))
    root.addHandler(handler)
    root.setLevel(level)


def add_security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response
