"""The application factory: settings → shared objects (wiring) → the HTTP layer and the commands."""

from __future__ import annotations

import logging

from flask import Flask

from cds_service import cli
from cds_service.content.loader import Content
from cds_service.observability.logs import configure_logging
from cds_service.pipeline.clock import Clock
from cds_service.settings import Settings
from cds_service.web import setup as web
from cds_service.wiring import attach, build_services

log = logging.getLogger("lbp_cds")


def create_app(
    settings: Settings | None = None,
    content: Content | None = None,
    clock: Clock | None = None,
    require_content: bool = True,
    serving: bool = True,
) -> Flask:
    """The application factory: settings from the environment unless given.

    `clock` gives the clinical "today" (ages, look-back windows); tests and dated examples fix it.
    Content given here is fixed; otherwise it is loaded from settings.content_dir and reloaded when
    edited. With no valid content (and no saved last good copy) the factory fails, listing the
    problems, unless `require_content` is False: then hook calls are answered 503 until it is fixed.
    With `serving` False (the `flask` commands) the JWT settings are not required: nothing is served,
    and a service started that way would refuse every call for want of a trusted issuer.
    The database is not touched here: migrations are a deploy step (`flask --app wsgi db upgrade`).
    """
    settings = settings or Settings.from_env()
    if serving:
        settings.check()
    configure_logging(settings.log_format, logging.INFO if serving else logging.WARNING)
    app = Flask(__name__, template_folder="web/templates")
    attach(app, build_services(settings, content, clock, require_content, serving))
    web.init_app(app, settings)
    cli.init_app(app)
    if not settings.require_jwt:
        log.warning("CDS_REQUIRE_JWT=false: service calls are accepted without a JWT. Use only for development.")
    return app
