"""lbp-cds: a CDS Hooks 2.0 service for the low back pain Medical Spine Center pathway."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date

from flask import Flask, Response
from werkzeug.middleware.proxy_fix import ProxyFix

from cds_service import api, cli, live_content, pages, preview
from cds_service.config import Settings
from cds_service.content import Content
from cds_service.errors import register_error_handlers
from cds_service.registry import Registry
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
) -> Flask:
    """The application factory: settings from the environment unless given.

    `today` is the clinical "today" (ages, look-back windows); tests and dated examples fix it.
    Content given here is fixed; otherwise it is loaded from settings.content_dir and reloaded when
    edited. With no valid content (and no saved last good copy) the factory fails, listing the
    problems, unless `require_content` is False: then hook calls are answered 503 until it is fixed.
    """
    settings = settings or Settings.from_env()
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = Flask(__name__)
    app.config["LBP_SETTINGS"] = settings
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # keep cards in the order a clinician should read them
    if content is not None:
        app.extensions["lbp_content"] = content
    else:
        live_content.serve(app, settings, require_content)
    app.extensions["lbp_registry"] = Registry(SERVICES)
    app.extensions["lbp_today"] = today
    register_error_handlers(app)
    app.register_blueprint(api.blueprint)
    app.register_blueprint(pages.blueprint)
    if settings.shows_preview:
        app.register_blueprint(preview.blueprint)
    app.cli.add_command(cli.content_commands)
    app.after_request(add_security_headers)
    if settings.trusted_proxy_hops:
        hops = settings.trusted_proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops, x_prefix=hops)  # type: ignore[method-assign]
    if not settings.require_jwt:
        log.warning("CDS_REQUIRE_JWT=false: service calls are accepted without a JWT. Use only for development.")
    return app


def add_security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response
