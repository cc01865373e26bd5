"""Only plan staff see /analytics: the guard on every analytics URL, the staff session and CSRF on its forms.

The guard runs before every request under /analytics, whichever blueprint serves it (an unknown path too, so
that nothing says which pages exist):
- development (`CDS_REQUIRE_JWT=false`) without an identity provider: open to loopback callers, as /preview is;
- with an identity provider (CDS_STAFF_OIDC_*): a staff session is required; a browser is sent to sign in,
  any other caller is answered 401;
- in production without one: every analytics URL answers 401, saying staff sign-in is not configured.
Anything that changes state there (POST, PUT, PATCH, DELETE) must carry the session's CSRF token, as the form
field `csrf_token` (the Jinja global `csrf_token()` gives it) or the header `X-CSRF-Token`.
"""

from __future__ import annotations

import time
from datetime import timedelta
from urllib.parse import urlencode

from flask import Flask, Response, redirect, render_template, request, session
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError, CSRFProtect

from cds_service.settings import Settings, is_loopback
from cds_service.web.errors import error_response
from cds_service.wiring import current_services

PREFIX = "/analytics"
SIGN_IN_PATH = f"{PREFIX}/sign-in"
# Reached before a staff session exists: the sign-in and the identity provider's way back.
SIGN_IN_PATHS = frozenset({SIGN_IN_PATH, f"{PREFIX}/callback"})
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
STAFF_UNTIL = "staff_until"  # session key: when the staff sign-in ends (seconds since the epoch)

csrf = CSRFProtect()


def init_app(app: Flask, settings: Settings) -> None:
    app.config.update(
        SECRET_KEY=settings.session_key,
        SESSION_COOKIE_NAME="lbp_cds_staff",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        # Secure in production (served over https); a development instance on http://127.0.0.1 could not keep it.
        SESSION_COOKIE_SECURE=settings.require_jwt,
        PERMANENT_SESSION_LIFETIME=timedelta(minutes=settings.staff_session_minutes),
        # The token is checked only under /analytics (guard), lives as long as the session, and is read
        # from the form field or the X-CSRF-Token header. The service sends no Referer (Referrer-Policy:
        # no-referrer), so Flask-WTF's referrer check for https is off: the token and SameSite do the work.
        WTF_CSRF_CHECK_DEFAULT=False,
        WTF_CSRF_TIME_LIMIT=None,
        WTF_CSRF_HEADERS=["X-CSRF-Token"],
        WTF_CSRF_SSL_STRICT=False,
    )
    csrf.init_app(app)
    app.before_request(guard)
    app.register_error_handler(CSRFError, refused_form)


def is_analytics(path: str) -> bool:
    return path == PREFIX or path.startswith(f"{PREFIX}/")


def guard() -> ResponseReturnValue | None:
    if not is_analytics(request.path):
        return None
    settings = current_services().settings
    refusal = access_refused(settings)
    if refusal is not None:
        return refusal
    if request.method in STATE_CHANGING:
        csrf.protect()  # raises CSRFError: answered by refused_form
    return None


def access_refused(settings: Settings) -> ResponseReturnValue | None:
    """Why this caller may not see this analytics URL, as the answer to give; None when it may."""
    if not settings.staff_sign_in:
        if settings.require_jwt:
            return refuse(
                401,
                "Staff sign-in is not configured",
                "The analytics dashboard needs a staff sign-in through the organization's identity provider, "
                "and none is configured on this service (see CDS_STAFF_OIDC_ISSUER).",
            )
        if not is_loopback(request.remote_addr or ""):
            return refuse(
                403,
                "Open on this computer only",
                "Without an identity provider, the analytics dashboard of a development instance is open only "
                "to callers on the same computer (loopback).",
            )
        return None
    if request.path in SIGN_IN_PATHS or signed_in():
        return None
    if is_browser_navigation():
        return redirect_to_sign_in()
    return refuse(401, "Sign-in required", "Sign in as plan staff to see the analytics dashboard.")


def signed_in() -> bool:
    """A staff session that has not ended; an ended one is forgotten."""
    until = session.get(STAFF_UNTIL)
    if isinstance(until, int | float) and time.time() < until:
        return True
    session.pop(STAFF_UNTIL, None)
    return False


def wants_page() -> bool:
    """A browser asks for a page by name; scripts and curl send */* or less."""
    asked = {value for value, _quality in request.accept_mimetypes}
    return bool(asked & {"text/html", "application/xhtml+xml"})


def is_browser_navigation() -> bool:
    return request.method in ("GET", "HEAD") and wants_page()


def redirect_to_sign_in() -> ResponseReturnValue:
    # Back to the same analytics page after signing in: a path of this service, never a full URL.
    return redirect(f"{request.script_root}{SIGN_IN_PATH}?{urlencode({'next': request.full_path.rstrip('?')})}")


def refuse(status: int, title: str, message: str) -> Response:
    """A page for a person, the service's JSON error for anything else; never any analytics data."""
    if wants_page():
        return Response(render_template("staff_message.html", title=title, message=message), status=status)
    return error_response(status, message)


def refused_form(error: CSRFError) -> Response:
    return refuse(
        403,
        "Form refused",
        "This form did not carry the right security token (it may have been open since an earlier sign-in). "
        "Reload the page and try again.",
    )
