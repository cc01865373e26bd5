"""Only plan staff see /analytics: the OpenID Connect sign-in end to end against a local identity provider
(oidc-provider-mock, in a thread), the staff session, CSRF on state-changing requests, production without an
identity provider, and development on loopback.

The analytics pages themselves live elsewhere; these tests register a stand-in blueprint under /analytics
(below) whose every answer carries FIGURE, so that any answer holding it is seen to have revealed data.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from flask import Blueprint, Flask, render_template_string
from flask.testing import FlaskClient
from oidc_provider_mock import User, run_server_in_thread
from pydantic import SecretStr
from werkzeug.test import TestResponse

from cds_service.app import create_app
from cds_service.settings import Settings, SettingsError, TrustedIssuer
from cds_service.wiring import services_of
from tests.builders import patient
from tests.clinical_date import CLOCK
from tests.conftest import BASE_URL
from tests.docs_snippets import snippet
from tests.tokens import FORM_KEY, ISSUER, TENANT, bearer, make_key, token_for

FIGURE = "Accepted 4711 of 9000"  # what the stand-in pages reveal
PAGE = "/analytics/stand-in"
EXPORT = "/analytics/stand-in/export.csv"
MARK_READ = "/analytics/stand-in/comments/7/read"
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
SCRIPT = {"Accept": "*/*"}
SESSION_SECRET = SecretStr("test staff-session secret, 32+ characters")
CLIENT_ID = "lbp-cds-analytics"
# People at the identity provider: sentinels, so that a log line holding one is found.
ANALYST = User(sub="analyst-sub-5c1e", claims={"groups": ["lbp-analytics", "staff-all"], "email": "ann@plan.test"})
CLINICIAN = User(sub="clinician-sub-9b2d", claims={"groups": ["clinicians"], "email": "carl@plan.test"})
ROLE_AS_TEXT = User(sub="lead-sub-3a7f", claims={"groups": "lbp-analytics"})
SENTINELS = ("analyst-sub-5c1e", "clinician-sub-9b2d", "ann@plan.test", "carl@plan.test", "staff-all", "clinicians")


def stand_in_pages() -> Blueprint:
    """A test fixture, not product code: pages under /analytics as the dashboard has them (a page with a form,
    an export, a state-changing POST)."""
    pages = Blueprint("analytics_stand_in", __name__)

    @pages.get(PAGE)
    def page() -> str:
        return render_template_string(
            '<p>{{ figure }}</p><form method="post" action="{{ action }}">'
            '<input type="hidden" name="csrf_token" value="{{ csrf_token() }}"><button>Mark read</button></form>',
            figure=FIGURE,
            action=MARK_READ,
        )

    @pages.get(EXPORT)
    def export() -> tuple[str, int, dict[str, str]]:
        return f"figure\n{FIGURE}\n", 200, {"Content-Type": "text/csv"}

    @pages.post(MARK_READ)
    def mark_read() -> str:
        return f"Marked read. {FIGURE}"

    return pages


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def provider() -> Iterator[str]:
    """The organization's identity provider: its issuer URL."""
    with run_server_in_thread(user_claims=[ANALYST, CLINICIAN, ROLE_AS_TEXT]) as server:
        yield f"http://localhost:{server.server_port}"


EHR_KEY = make_key()  # the EHR's signing key, pinned in the production settings


def production(settings: Settings, **changes: Any) -> Settings:
    """Production settings (JWTs required, from an EHR whose key is pinned), with `changes`."""
    pinned = MappingProxyType({EHR_KEY.kid: EHR_KEY.public_jwk})
    issuer = TrustedIssuer(ISSUER, tenants=frozenset({TENANT}), pinned_keys=pinned)
    values = dict(require_jwt=True, trusted_issuers=MappingProxyType({ISSUER: issuer}), form_signing_key=FORM_KEY)
    return settings.model_copy(update={**values, **changes})


def app_with_stand_in(settings: Settings, content: Any) -> Flask:
    app = create_app(settings, content=content, clock=CLOCK)
    app.register_blueprint(stand_in_pages())
    return app


@pytest.fixture
def make_app(content) -> Iterator[Any]:
    apps: list[Flask] = []

    def make(settings: Settings) -> Flask:
        apps.append(app_with_stand_in(settings, content))
        return apps[-1]

    yield make
    for app in apps:
        services_of(app).close()


@pytest.fixture
def signing_in_settings(settings, provider) -> Settings:
    return production(
        settings,
        staff_oidc_issuer=provider,
        staff_oidc_client_id=CLIENT_ID,
        staff_oidc_client_secret=SecretStr("client secret at the identity provider"),
        staff_session_secret=SESSION_SECRET,
    )


@pytest.fixture
def staff_app(make_app, signing_in_settings) -> Flask:
    return make_app(signing_in_settings)


def get(client: FlaskClient, url: str, headers: dict[str, str] = BROWSER) -> TestResponse:
    return client.get(url, base_url=BASE_URL, headers=headers)


def post(client: FlaskClient, url: str, **kwargs: Any) -> TestResponse:
    return client.post(url, base_url=BASE_URL, **kwargs)


def sign_in(client: FlaskClient, provider: str, person: User, start: str = PAGE) -> TestResponse:
    """What a browser does: the analytics page sends it to sign in, the sign-in to the identity provider,
    where the person picks their account, and the provider back to the callback. The callback's answer."""
    asked = get(client, start)
    assert asked.status_code == 302, asked.status_code
    to_provider = get(client, asked.headers["Location"])
    assert to_provider.status_code == 302
    authorize = to_provider.headers["Location"]
    assert authorize.startswith(f"{provider}/oauth2/authorize?")
    assert parse_qs(urlsplit(authorize).query)["redirect_uri"] == [f"{BASE_URL}/analytics/callback"]
    back = requests.post(authorize, data={"sub": person.sub}, allow_redirects=False, timeout=10)
    assert back.status_code == 302, back.text
    assert back.headers["Location"].startswith(f"{BASE_URL}/analytics/callback?")
    return client.get(back.headers["Location"], headers=BROWSER)


def csrf_token_of(page: TestResponse) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True))
    assert found, page.get_data(as_text=True)
    return found[1]


def reveals_nothing(response: TestResponse) -> bool:
    return FIGURE not in response.get_data(as_text=True)


# --- signing in ---------------------------------------------------------------------------------------------


def test_staff_with_the_role_sign_in_and_see_the_page_they_asked_for(staff_app, provider):
    client = staff_app.test_client()
    signed_in = sign_in(client, provider, ANALYST, start=f"{EXPORT}?since=2026-01-01")
    assert signed_in.status_code == 302
    assert signed_in.headers["Location"] == f"{EXPORT}?since=2026-01-01"
    assert FIGURE in get(client, signed_in.headers["Location"]).get_data(as_text=True)
    assert FIGURE in get(client, PAGE, headers=SCRIPT).get_data(as_text=True)  # the session, not the Accept


def test_the_session_cookie_is_secure_http_only_same_site_and_short_lived(staff_app, provider, signing_in_settings):
    signed_in = sign_in(staff_app.test_client(), provider, ANALYST)
    cookie = signed_in.headers["Set-Cookie"]
    assert cookie.startswith("__Host-lbp_cds_staff=")
    assert {"Secure", "HttpOnly", "SameSite=Lax", "Path=/"} <= {part.strip() for part in cookie.split(";")}
    assert "Domain" not in cookie
    expires = parsedate_to_datetime(re.findall(r"Expires=([^;]+)", cookie)[0])
    assert expires - datetime.now(UTC) <= timedelta(minutes=signing_in_settings.staff_session_minutes)


def test_a_role_claim_given_as_one_string_grants_the_role_too(staff_app, provider):
    client = staff_app.test_client()
    assert sign_in(client, provider, ROLE_AS_TEXT).status_code == 302
    assert FIGURE in get(client, PAGE).get_data(as_text=True)


def test_without_the_role_the_person_is_told_so_and_sees_no_data(staff_app, provider):
    client = staff_app.test_client()
    refused = sign_in(client, provider, CLINICIAN)
    assert refused.status_code == 403
    page = refused.get_data(as_text=True)
    assert "does not have the plan staff role" in page
    assert "groups: lbp-analytics" in page
    assert reveals_nothing(refused)
    again = get(client, PAGE)
    assert again.status_code == 302
    assert again.headers["Location"].startswith("/analytics/sign-in?")


def test_the_staff_role_values_are_a_setting(make_app, signing_in_settings, provider):
    app = make_app(signing_in_settings.model_copy(update={"staff_role_values": ("clinicians",)}))
    client = app.test_client()
    assert sign_in(client, provider, CLINICIAN).status_code == 302
    assert FIGURE in get(client, PAGE).get_data(as_text=True)
    assert sign_in(app.test_client(), provider, ANALYST).status_code == 403


def test_an_ended_session_sends_the_browser_back_to_sign_in(staff_app, provider):
    client = staff_app.test_client()
    sign_in(client, provider, ANALYST)
    assert get(client, PAGE).status_code == 200
    with client.session_transaction(base_url=BASE_URL) as session:
        session["staff_until"] = time.time() - 1  # the sign-in's time has passed
    ended = get(client, PAGE)
    assert ended.status_code == 302
    assert ended.headers["Location"] == "/analytics/sign-in?next=%2Fanalytics%2Fstand-in"
    assert get(client, EXPORT, headers=SCRIPT).status_code == 401
    assert sign_in(client, provider, ANALYST).status_code == 302  # and signing in again works
    assert get(client, PAGE).status_code == 200


def test_a_callback_the_service_did_not_start_is_refused(staff_app, provider):
    client = staff_app.test_client()
    forged = get(client, "/analytics/callback?code=stolen&state=made-up")
    assert forged.status_code == 401
    assert "Sign-in did not complete" in forged.get_data(as_text=True)
    assert get(client, PAGE).status_code == 302


def test_after_sign_in_the_browser_goes_only_to_an_analytics_page(staff_app, provider):
    for asked in ("https://elsewhere.example/analytics", "//elsewhere.example/analytics", "/preview"):
        signed_in = sign_in_from(staff_app.test_client(), provider, f"/analytics/sign-in?{urlencode({'next': asked})}")
        assert signed_in.status_code == 302
        assert signed_in.headers["Location"] == "/analytics", asked


def sign_in_from(client: FlaskClient, provider: str, sign_in_url: str) -> TestResponse:
    authorize = get(client, sign_in_url).headers["Location"]
    back = requests.post(authorize, data={"sub": ANALYST.sub}, allow_redirects=False, timeout=10)
    return client.get(back.headers["Location"], headers=BROWSER)


def test_an_unreachable_identity_provider_is_said_so(make_app, signing_in_settings):
    app = make_app(signing_in_settings.model_copy(update={"staff_oidc_issuer": f"http://127.0.0.1:{free_port()}"}))
    answer = get(app.test_client(), "/analytics/sign-in")
    assert answer.status_code == 503
    assert "could not be reached" in answer.get_data(as_text=True)


def test_signing_out_ends_the_session(staff_app, provider):
    client = staff_app.test_client()
    sign_in(client, provider, ANALYST)
    token = csrf_token_of(get(client, PAGE))
    assert post(client, "/analytics/sign-out", headers=BROWSER).status_code == 403  # no CSRF token
    signed_out = post(client, "/analytics/sign-out", data={"csrf_token": token}, headers=BROWSER)
    assert signed_out.status_code == 200
    assert "You have signed out" in signed_out.get_data(as_text=True)
    assert get(client, PAGE).status_code == 302


def test_the_log_holds_no_token_claim_or_email(staff_app, provider, caplog):
    caplog.set_level(logging.DEBUG)
    sign_in(staff_app.test_client(), provider, ANALYST)
    sign_in(staff_app.test_client(), provider, CLINICIAN)
    lines = "\n".join(
        f"{record.getMessage()} {record.__dict__}" for record in caplog.records if is_the_services(record)
    )
    assert "staff signed in" in lines
    assert "staff sign-in refused" in lines
    assert not [sentinel for sentinel in SENTINELS if sentinel in lines]
    assert not re.findall(r".{0,200}(?:code=|state=|nonce=|code_verifier|eyJ).{0,100}", lines)  # no code, state or JWT


def is_the_services(record: logging.LogRecord) -> bool:
    """Not the identity provider's own lines (from its server thread), nor those of the test's own request to
    it as the person's browser (urllib3 naming the authorization URL, the browser's to see)."""
    browsers = record.name.startswith("urllib3") and "/oauth2/authorize?" in record.getMessage()
    return record.thread == threading.get_ident() and not browsers


# --- refused without a staff session --------------------------------------------------------------------------


@pytest.mark.parametrize("path", [PAGE, EXPORT, "/analytics", "/analytics/", "/analytics/no-such-page"])
def test_without_a_session_a_browser_is_sent_to_sign_in_and_anything_else_gets_401(staff_app, path):
    client = staff_app.test_client()
    browser = get(client, path)
    assert browser.status_code == 302
    assert browser.headers["Location"].startswith("/analytics/sign-in?next=")
    assert reveals_nothing(browser)
    script = get(client, path, headers=SCRIPT)
    assert script.status_code == 401
    assert script.get_json()["issue"][0]["code"] == "login"
    assert reveals_nothing(script)


def test_without_a_session_a_state_changing_request_gets_401(staff_app):
    client = staff_app.test_client()
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        answer = client.open(MARK_READ, method=method, base_url=BASE_URL, headers=BROWSER)
        assert answer.status_code == 401, method
        assert reveals_nothing(answer)


# --- CSRF ---------------------------------------------------------------------------------------------------


def test_a_state_changing_request_needs_the_sessions_csrf_token(staff_app, provider):
    client = staff_app.test_client()
    sign_in(client, provider, ANALYST)
    token = csrf_token_of(get(client, PAGE))
    assert post(client, MARK_READ).status_code == 403
    assert post(client, MARK_READ, data={"csrf_token": "not-the-token"}).status_code == 403
    assert post(client, MARK_READ, headers={"X-CSRF-Token": token + "x"}).status_code == 403
    refused = post(client, MARK_READ, data={"csrf_token": ""}, headers=BROWSER)
    assert "Reload the page" in refused.get_data(as_text=True)
    assert reveals_nothing(refused)
    assert post(client, MARK_READ, data={"csrf_token": token}).status_code == 200
    assert post(client, MARK_READ, headers={"X-CSRF-Token": token}).status_code == 200


def test_a_csrf_token_of_another_session_is_refused(staff_app, provider):
    first, second = staff_app.test_client(), staff_app.test_client()
    sign_in(first, provider, ANALYST)
    sign_in(second, provider, ANALYST)
    token_of_first = csrf_token_of(get(first, PAGE))
    assert post(second, MARK_READ, data={"csrf_token": token_of_first}).status_code == 403


# --- production without an identity provider -------------------------------------------------------------------


@pytest.fixture
def closed_app(make_app, settings) -> Flask:
    return make_app(production(settings))


ANALYTICS_URLS = [
    ("GET", PAGE),
    ("GET", EXPORT),
    ("GET", "/analytics"),
    ("GET", "/analytics/no-such-page"),
    ("GET", "/analytics/sign-in"),
    ("GET", "/analytics/callback?code=x&state=y"),
    ("POST", MARK_READ),
    ("POST", "/analytics/sign-out"),
    ("DELETE", MARK_READ),
]


@pytest.mark.parametrize(("method", "path"), ANALYTICS_URLS)
@pytest.mark.parametrize("accept", [BROWSER, SCRIPT], ids=["browser", "script"])
def test_in_production_without_an_identity_provider_every_analytics_url_answers_401(closed_app, method, path, accept):
    answer = closed_app.test_client().open(path, method=method, base_url=BASE_URL, headers=accept)
    assert answer.status_code == 401
    assert reveals_nothing(answer)
    assert "Staff sign-in is not configured" in answer.get_data(as_text=True) or "none is configured" in str(
        answer.get_json()
    )


def test_in_production_without_an_identity_provider_the_service_serves_hooks(closed_app, settings):
    client = closed_app.test_client()
    assert client.get("/cds-services", base_url=BASE_URL).status_code == 200
    service = "/cds-services/lbp-patient-view"
    token = token_for(EHR_KEY, service)
    answer = client.post(service, json=patient(45).with_lbp().patient_view(), headers=bearer(token), base_url=BASE_URL)
    assert answer.status_code == 200, answer.get_json()
    assert "cards" in answer.get_json()


# --- development (CDS_REQUIRE_JWT=false) without an identity provider ----------------------------------------------


def test_in_development_the_pages_are_open_on_loopback_with_csrf_still_checked(make_app, settings):
    client = make_app(settings).test_client()
    page = client.get(PAGE, headers=BROWSER)
    assert FIGURE in page.get_data(as_text=True)
    assert client.post(MARK_READ).status_code == 403
    assert client.post(MARK_READ, data={"csrf_token": csrf_token_of(page)}).status_code == 200


def test_in_development_the_pages_are_closed_to_other_computers(make_app, settings):
    client = make_app(settings).test_client()
    answer = client.get(PAGE, headers=BROWSER, environ_base={"REMOTE_ADDR": "192.0.2.10"})
    assert answer.status_code == 403
    assert reveals_nothing(answer)


# --- settings --------------------------------------------------------------------------------------------------


def test_a_half_configured_sign_in_stops_start_up_naming_what_is_missing(signing_in_settings):
    with pytest.raises(SettingsError, match="CDS_STAFF_OIDC_CLIENT_SECRET"):
        signing_in_settings.model_copy(update={"staff_oidc_client_secret": None}).check()
    with pytest.raises(SettingsError, match="CDS_STAFF_SESSION_SECRET"):
        signing_in_settings.model_copy(update={"staff_session_secret": None}).check()
    development = signing_in_settings.model_copy(update={"require_jwt": False, "staff_session_secret": None})
    development.check()  # the development session key serves there


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CDS_STAFF_SESSION_SECRET": "short"}, "CDS_STAFF_SESSION_SECRET: too short"),
        ({"CDS_STAFF_OIDC_ISSUER": "http://idp.example.org"}, "CDS_STAFF_OIDC_ISSUER"),
        ({"CDS_STAFF_OIDC_ISSUER": "idp.example.org"}, "CDS_STAFF_OIDC_ISSUER"),
        ({"CDS_STAFF_ROLE_VALUES": " , "}, "CDS_STAFF_ROLE_VALUES"),
        ({"CDS_STAFF_SESSION_MINUTES": "0"}, "CDS_STAFF_SESSION_MINUTES"),
    ],
)
def test_invalid_staff_settings_are_named(env, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_staff_settings_from_the_environment():
    settings = Settings.from_env(
        {
            "CDS_STAFF_OIDC_ISSUER": "https://login.plan.example/realms/staff/",
            "CDS_STAFF_OIDC_SCOPES": "groups",
            "CDS_STAFF_ROLE_CLAIM": "roles",
            "CDS_STAFF_ROLE_VALUES": "lbp-analytics, informatics",
        }
    )
    assert (
        settings.staff_oidc_discovery_url == "https://login.plan.example/realms/staff/.well-known/openid-configuration"
    )
    assert settings.staff_oidc_scopes == ("openid", "groups")
    assert settings.staff_role_values == ("lbp-analytics", "informatics")
    given = "https://login.plan.example/.well-known/openid-configuration"
    assert Settings.from_env({"CDS_STAFF_OIDC_ISSUER": given}).staff_oidc_discovery_url == given


# --- the operators' page (docs/operators/staff-sign-in.md) ---------------------------------------------------


@pytest.mark.processes
def test_the_pages_settings_example_configures_a_production_sign_in(settings):
    """The example's lines, run in a shell as an operator would set them, give a sign-in production accepts."""
    lines = snippet("staff-sign-in-settings").text
    shell = subprocess.run(
        ["bash", "-c", f"set -a\n{lines}\nenv -0"],
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    environment = dict(item.split("=", 1) for item in shell.stdout.split("\0") if item.startswith("CDS_"))
    example = Settings.from_env(environment)
    assert example.staff_oidc_issuer == "https://login.example.org/realms/plan"
    assert example.staff_role_claim == "groups" and example.staff_role_values == ("lbp-analytics",)
    assert example.staff_session_secret is not None
    assert len(example.staff_session_secret.get_secret_value()) >= 32
    staff = {name: getattr(example, name) for name in type(example).model_fields if name.startswith("staff_")}
    production(settings, **staff).check()  # no SettingsError: nothing is missing


def by_hand_recipe() -> tuple[list[User], dict[str, str], int]:
    """The page's "Trying it locally" lines: the people given to the provider, the settings given to
    `make run`, and the provider's port."""
    words = shlex.split(snippet("staff-sign-in-by-hand").text.replace("\\\n", " "))
    assert words[:3] == [".venv/bin/python", "-m", "oidc_provider_mock"]
    assert words[-2:] == ["make", "run"]
    people = []
    for at, word in enumerate(words):
        if word == "--user-claims":
            claims = json.loads(words[at + 1])
            people.append(User(sub=claims.pop("sub"), claims=claims))
    port = int(words[words.index("--port") + 1])
    environment = dict(word.split("=", 1) for word in words if re.match(r"^CDS_[A-Z_]+=", word))
    return people, environment, port


def test_the_pages_by_hand_recipe_signs_in_the_staff_member_and_refuses_the_other(make_app, settings):
    people, environment, port = by_hand_recipe()
    assert environment["CDS_STAFF_OIDC_ISSUER"] == f"http://localhost:{port}"
    recipe = Settings.from_env(environment)
    ann, carl = people
    assert ann.claims["groups"] == ["lbp-analytics"] and carl.claims["groups"] == ["clinicians"]
    with run_server_in_thread(user_claims=people) as server:
        provider = f"http://localhost:{server.server_port}"  # the recipe's issuer, on a free port
        app = make_app(  # `make run`: development settings (CDS_REQUIRE_JWT=false), with the recipe's
            settings.model_copy(
                update={
                    "staff_oidc_issuer": provider,
                    "staff_oidc_client_id": recipe.staff_oidc_client_id,
                    "staff_oidc_client_secret": recipe.staff_oidc_client_secret,
                }
            )
        )
        staff = app.test_client()
        signed_in = sign_in(staff, provider, ann, start="/analytics")
        assert signed_in.status_code == 302 and signed_in.headers["Location"] == "/analytics"
        assert FIGURE in get(staff, PAGE).get_data(as_text=True)
        refused = sign_in(app.test_client(), provider, carl, start="/analytics")
        assert refused.status_code == 403
        assert "does not have the plan staff role" in refused.get_data(as_text=True)
        assert reveals_nothing(refused)
