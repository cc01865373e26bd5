"""Only plan staff see /analytics: the guard on every analytics URL, the staff sign-in and CSRF on its forms.

The guard runs before every request under /analytics, whichever blueprint serves it (an unknown path too, so
that nothing says which pages exist):
- development (`CDS_REQUIRE_JWT=false`) without an identity provider: open to loopback callers, as /preview is;
- with an identity provider (CDS_STAFF_OIDC_*): a staff session is required; a browser is sent to sign in,
  any other caller is answered 401;
- in production without one: every analytics URL answers 401, saying staff sign-in is not configured.
Anything that changes state there (POST, PUT, PATCH, DELETE) must carry the session's CSRF token, as the form
field `csrf_token` (the Jinja global `csrf_token()` gives it) or the header `X-CSRF-Token`.

The sign-in is OpenID Connect's authorization code flow (Authlib, with PKCE and a nonce): the ID token's claims
(or the UserInfo endpoint's, when the ID token lacks the role claim) must hold one of the staff role values.
The session cookie then holds only when the sign-in ends: no token, no claim. Nothing of either is logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests
from authlib.integrations.flask_client import OAuth, OAuthError
from flask import Blueprint, Flask, Response, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError, CSRFProtect
from joserfc.errors import JoseError

from cds_service.settings import Settings, is_loopback
from cds_service.web.errors import error_response
from cds_service.wiring import current_services

log = logging.getLogger("lbp_cds.staff")

PREFIX = "/analytics"
SIGN_IN_PATH = f"{PREFIX}/sign-in"
CALLBACK_PATH = f"{PREFIX}/callback"
SIGN_OUT_PATH = f"{PREFIX}/sign-out"
# Reached without a staff session: the sign-in, the identity provider's way back, and the sign-out (of a
# session that may just have ended; it still needs the CSRF token).
SIGN_IN_PATHS = frozenset({SIGN_IN_PATH, CALLBACK_PATH, SIGN_OUT_PATH})
NEXT = "staff_next"  # session key: the analytics page to return to after signing in
IDP_TIMEOUT_SECONDS = 10
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
STAFF_UNTIL = "staff_until"  # session key: when the staff sign-in ends (seconds since the epoch)

csrf = CSRFProtect()


def init_app(app: Flask, settings: Settings) -> None:
    app.config.update(
        SECRET_KEY=settings.session_key,
        # Secure in production (served over https; the __Host- prefix has browsers refuse it from anywhere
        # else); a development instance on http://127.0.0.1 could not keep a Secure cookie.
        SESSION_COOKIE_NAME=f"{'__Host-' if settings.require_jwt else ''}lbp_cds_staff",
        SESSION_COOKIE_SECURE=settings.require_jwt,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
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
    app.add_template_global(signed_in, "staff_signed_in")  # e.g. to show the sign-out button
    app.register_blueprint(StaffSignIn(app, settings).blueprint)


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
    return refuse(401, "Sign-in required", "Sign in as plan staff to see the analytics dashboard.", sign_in=True)


def signed_in() -> bool:
    """Whether a staff sign-in session is on and has not ended; an ended one is forgotten."""
    until = session.get(STAFF_UNTIL)
    if until is None:
        return False
    if isinstance(until, int | float) and time.time() < until:
        return True
    session.pop(STAFF_UNTIL)
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


def refuse(status: int, title: str, message: str, sign_in: bool = False) -> Response:
    """A page for a person (with a link to sign in, when that may help), the service's JSON error for anything
    else; never any analytics data."""
    if wants_page():
        page = render_template("staff_message.html", title=title, message=message, sign_in=sign_in)
        return Response(page, status=status)
    return error_response(status, message)


def refused_form(error: CSRFError) -> Response:
    return refuse(
        403,
        "Form refused",
        "This form did not carry the right security token (it may have been open since an earlier sign-in). "
        "Reload the page and try again.",
    )


class StaffSignIn:
    """/analytics/sign-in, /analytics/callback and /analytics/sign-out; without an identity provider the first
    two say that sign-in is not configured (the guard answers first in production)."""

    def __init__(self, app: Flask, settings: Settings) -> None:
        self.settings = settings
        self.client = identity_provider(app, settings) if settings.staff_sign_in else None
        self.blueprint = Blueprint("staff", __name__)
        self.blueprint.add_url_rule(SIGN_IN_PATH, "sign_in", self.sign_in, methods=["GET"])
        self.blueprint.add_url_rule(CALLBACK_PATH, "callback", self.callback, methods=["GET"])
        self.blueprint.add_url_rule(SIGN_OUT_PATH, "sign_out", self.sign_out, methods=["POST"])

    def sign_in(self) -> ResponseReturnValue:
        if self.client is None:
            return not_configured()
        session[NEXT] = return_path(request.args.get("next"))
        try:
            return self.client.authorize_redirect(self.redirect_uri())  # type: ignore[no-any-return]
        except requests.RequestException as error:
            return unreachable(error)

    def redirect_uri(self) -> str:
        base = self.settings.public_base_url
        return f"{base}{CALLBACK_PATH}" if base else url_for("staff.callback", _external=True)

    def callback(self) -> ResponseReturnValue:
        if self.client is None:
            return not_configured()
        try:
            claims = self.claims()
        except requests.RequestException as error:
            return unreachable(error)
        except (OAuthError, JoseError, KeyError) as error:
            # The error's kind only: its description may echo what the identity provider was sent.
            log.info("staff sign-in refused: %s", getattr(error, "error", None) or type(error).__name__)
            return refuse(
                401,
                "Sign-in did not complete",
                "The identity provider's answer could not be used (the sign-in may have been started too long "
                "ago, or in another window).",
                sign_in=True,
            )
        back_to = f"{request.script_root}{session.get(NEXT, PREFIX)}"
        session.clear()  # a fresh session (and CSRF token) for the signed-in staff member
        if not has_staff_role(claims, self.settings):
            log.info("staff sign-in refused: the role claim does not grant the staff role")
            return refuse(
                403,
                "No staff role",
                "You signed in, but your account does not have the plan staff role the analytics dashboard "
                f"needs ({self.settings.staff_role_claim}: {', '.join(self.settings.staff_role_values)}). "
                "Ask your identity provider's administrators to grant it.",
            )
        session.permanent = True
        session[STAFF_UNTIL] = time.time() + self.settings.staff_session_minutes * 60
        log.info("staff signed in")
        return redirect(back_to)

    def claims(self) -> Mapping[str, Any]:
        """The signed-in person's claims: the ID token's (verified by Authlib: signature, issuer, audience,
        expiry, nonce), and the UserInfo endpoint's when the ID token lacks the role claim."""
        assert self.client is not None
        token = self.client.authorize_access_token()
        claims: Mapping[str, Any] = token["userinfo"]
        if self.settings.staff_role_claim in claims:
            return claims
        more = self.client.userinfo(token=token)
        if more.get("sub") != claims["sub"]:  # OpenID Connect Core 5.3.2: else the answer is not to be used
            raise OAuthError(error="userinfo_subject_mismatch")
        return {**claims, **more}

    def sign_out(self) -> ResponseReturnValue:
        session.clear()
        log.info("staff signed out")
        return render_template(
            "staff_message.html",
            title="Signed out",
            message="You have signed out of the analytics dashboard.",
            sign_in=self.client is not None,
        )


def identity_provider(app: Flask, settings: Settings) -> Any:
    """The Authlib client of the organization's identity provider (its discovery document read when first used)."""
    logging.getLogger("authlib").setLevel(logging.INFO)  # at DEBUG it logs the PKCE code verifier
    secret = settings.staff_oidc_client_secret
    return OAuth(app).register(
        "staff",
        server_metadata_url=settings.staff_oidc_discovery_url,
        client_id=settings.staff_oidc_client_id,
        client_secret=secret.get_secret_value() if secret is not None else None,
        client_kwargs={
            "scope": " ".join(settings.staff_oidc_scopes),
            "code_challenge_method": "S256",
            "default_timeout": IDP_TIMEOUT_SECONDS,
        },
    )


def has_staff_role(claims: Mapping[str, Any], settings: Settings) -> bool:
    """The role claim (a string, or a list of strings) holds one of the values that grant the staff role."""
    value = claims.get(settings.staff_role_claim)
    held = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    return any(isinstance(item, str) and item in settings.staff_role_values for item in held)


def return_path(asked: str | None) -> str:
    """Where to go after signing in (below the script root): the analytics path asked for, never another site
    or page."""
    parts = urlsplit(asked or "")
    if parts.scheme or parts.netloc or not is_analytics(parts.path) or parts.path in SIGN_IN_PATHS:
        return PREFIX
    return parts.path + (f"?{parts.query}" if parts.query else "")


def not_configured() -> Response:
    return refuse(
        404,
        "Staff sign-in is not configured",
        "No identity provider is configured on this service (CDS_STAFF_OIDC_ISSUER).",
    )


def unreachable(error: requests.RequestException) -> Response:
    log.warning("staff sign-in: the identity provider could not be reached (%s)", type(error).__name__)
    return refuse(
        503,
        "Identity provider unreachable",
        "The identity provider could not be reached to sign you in. Try again in a moment.",
    )
