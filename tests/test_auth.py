"""JWT authentication of CDS clients: forged and broken tokens are refused with a 401 that tells nothing."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import MappingProxyType

import pytest
import responses
from sqlalchemy import select

from cds_service.app import create_app
from cds_service.errors import StorageUnavailable
from cds_service.settings import Settings, SettingsError, TrustedIssuer
from cds_service.storage.database import feedback
from cds_service.web.auth import WorkerReplayGuard
from cds_service.wiring import services_of
from tests.builders import patient
from tests.clinical_date import CLOCK
from tests.conftest import private_env
from tests.databases import migrated, redis_url
from tests.tokens import (
    FORM_KEY,
    ISSUER,
    JWKS_URL,
    OTHER_JWKS_URL,
    TENANT,
    bearer,
    hmac_with_public_key,
    jwks,
    make_key,
    token_for,
    unsigned,
)

SERVICE = "/cds-services/lbp-patient-view"
FEEDBACK = SERVICE + "/feedback"
GENERIC_401 = "Authentication failed: send a valid JWT as 'Authorization: Bearer'."


def trusting(settings: Settings, *jwks_urls: str, tenants: frozenset[str] | None = frozenset({TENANT})) -> Settings:
    issuer = TrustedIssuer(ISSUER, jwks_urls or (JWKS_URL,), tenants)
    return settings.model_copy(
        update=dict(require_jwt=True, trusted_issuers=MappingProxyType({ISSUER: issuer}), form_signing_key=FORM_KEY)
    )


@pytest.fixture
def key():
    return make_key("ES384")


@pytest.fixture
def ehr(key):
    """The EHR's JWKS endpoint, served by `responses`; any other URL fails loudly."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(JWKS_URL, json=jwks(key))
        yield mock


@pytest.fixture
def secure_settings(settings):
    return trusting(settings)


@pytest.fixture
def secure(secure_settings, content):
    app = create_app(secure_settings, content=content, clock=CLOCK)
    yield app.test_client()
    services_of(app).close()


def call(client, token: str | None, path: str = SERVICE, body=None):
    headers = bearer(token) if token is not None else {}
    return client.post(path, json=body or patient(45).with_lbp().patient_view(), headers=headers)


def assert_refused(response) -> None:
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    outcome = response.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "login"
    assert outcome["issue"][0]["diagnostics"] == GENERIC_401  # never which check failed


def jwks_fetches(mock, url: str = JWKS_URL) -> int:
    return sum(1 for c in mock.calls if c.request.url == url)


# --- accepted -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["ES384", "RS384"])
def test_valid_token_of_a_recommended_algorithm_is_accepted(secure_settings, content, alg):
    key = make_key(alg)
    with responses.RequestsMock() as mock:
        mock.get(JWKS_URL, json=jwks(key))
        client = create_app(secure_settings, content=content, clock=CLOCK).test_client()
        response = call(client, token_for(key, SERVICE))
    assert response.status_code == 200, response.get_json()
    assert "cards" in response.get_json()


def test_aud_may_be_an_array_holding_the_endpoint(secure, ehr, key):
    token = token_for(key, SERVICE, aud=["https://other.example.org/x", "https://cds.example.org" + SERVICE])
    assert call(secure, token).status_code == 200


def test_jwks_is_fetched_once_and_cached(secure, ehr, key):
    for _ in range(3):
        assert call(secure, token_for(key, SERVICE)).status_code == 200
    assert jwks_fetches(ehr) == 1


def test_issuer_without_tenant_list_accepts_any_tenant_or_none(settings, content, key, ehr):
    client = create_app(trusting(settings, tenants=None), content=content, clock=CLOCK).test_client()
    assert call(client, token_for(key, SERVICE, tenant="any-org")).status_code == 200
    assert call(client, token_for(key, SERVICE, tenant=None)).status_code == 200


def test_token_without_iat_is_accepted_within_the_lifetime(secure, ehr, key):
    assert call(secure, token_for(key, SERVICE, iat=None)).status_code == 200


def test_other_asymmetric_algorithms_only_when_configured(secure_settings, content):
    key = make_key("ES256")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(JWKS_URL, json=jwks(key))
        default = create_app(secure_settings, content=content, clock=CLOCK).test_client()
        assert_refused(call(default, token_for(key, SERVICE)))
        configured = secure_settings.model_copy(update=dict(jwt_algorithms=("ES256", "ES384")))
        assert (
            call(
                create_app(configured, content=content, clock=CLOCK).test_client(), token_for(key, SERVICE)
            ).status_code
            == 200
        )


# --- refused --------------------------------------------------------------------------------------------


def test_no_token_is_401(secure, ehr):
    assert_refused(call(secure, None))
    assert jwks_fetches(ehr) == 0


@pytest.mark.parametrize(
    "authorization",
    ["Bearer", "Bearer not-a-jwt", "Bearer a.b.c", "Basic dXNlcjpwYXNz", "eyJhbGciOiJFUzM4NCJ9.e30.sig"],
)
def test_malformed_authorization_is_401(secure, ehr, authorization):
    response = secure.post(
        SERVICE, json=patient(45).with_lbp().patient_view(), headers={"Authorization": authorization}
    )
    assert_refused(response)


def test_alg_none_is_401(secure, ehr, key):
    assert_refused(call(secure, unsigned(SERVICE, key.kid)))


def test_hs256_signed_with_the_public_key_is_401(secure, ehr, key):
    assert_refused(call(secure, hmac_with_public_key(key, SERVICE)))


def test_expired_token_is_401(secure, ehr, key):
    now = int(time.time())
    assert_refused(call(secure, token_for(key, SERVICE, iat=now - 400, exp=now - 60)))


def test_expiry_within_the_leeway_is_accepted(secure, ehr, key):
    now = int(time.time())
    assert call(secure, token_for(key, SERVICE, iat=now - 300, exp=now - 10)).status_code == 200


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_token_not_yet_valid_is_401(secure, ehr, key, claim):
    now = int(time.time())
    assert_refused(call(secure, token_for(key, SERVICE, **{claim: now + 120}, exp=now + 300)))


@pytest.mark.parametrize(
    "aud",
    [
        "https://cds.example.org/cds-services/lbp-referral-select",
        "https://cds.example.org/cds-services",
        "https://evil.example.org" + SERVICE,
        ["https://cds.example.org/cds-services/lbp-referral-select"],
    ],
)
def test_token_for_another_endpoint_is_401(secure, ehr, key, aud):
    assert_refused(call(secure, token_for(key, SERVICE, aud=aud)))


def test_unknown_issuer_is_401_without_fetching_anything(secure, ehr, key):
    assert_refused(call(secure, token_for(key, SERVICE, iss="https://stranger.example.net")))
    assert not ehr.calls


@pytest.mark.parametrize("missing", ["exp", "jti", "aud", "iss"])
def test_token_missing_a_required_claim_is_401(secure, ehr, key, missing):
    assert_refused(call(secure, token_for(key, SERVICE, **{missing: None})))


def test_foreign_jku_is_401_and_never_fetched(secure, ehr, key):
    foreign = "https://attacker.example.net/jwks.json"
    ehr.get(foreign, json=jwks(key))  # would even hold the right key: it must not matter
    assert_refused(call(secure, token_for(key, SERVICE, headers={"jku": foreign})))
    assert not [c for c in ehr.calls if c.request.url.startswith("https://attacker.example.net")]


def test_allow_listed_jku_is_honoured(settings, content):
    key = make_key("ES384")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(JWKS_URL, json=jwks())
        mock.get(OTHER_JWKS_URL, json=jwks(key))
        client = create_app(trusting(settings, JWKS_URL, OTHER_JWKS_URL), content=content, clock=CLOCK).test_client()
        assert call(client, token_for(key, SERVICE, headers={"jku": OTHER_JWKS_URL})).status_code == 200
        assert jwks_fetches(mock, JWKS_URL) == 0


def test_unknown_kid_refetches_once_then_a_rotated_key_is_accepted(secure, ehr, key):
    assert call(secure, token_for(key, SERVICE)).status_code == 200
    rotated = make_key("ES384")
    ehr.replace(responses.GET, JWKS_URL, json=jwks(key, rotated))  # the EHR publishes its new key
    assert call(secure, token_for(rotated, SERVICE)).status_code == 200
    assert jwks_fetches(ehr) == 2


def test_unknown_kid_refetch_is_rate_limited_then_401(secure, ehr, key):
    stranger = make_key("ES384")  # signed with a key the issuer never published
    for _ in range(3):
        assert_refused(call(secure, token_for(stranger, SERVICE)))
    assert jwks_fetches(ehr) == 2  # the first fetch, then one refetch for the unknown kid, no more


def test_key_published_for_another_algorithm_is_401(secure_settings, content):
    rsa = make_key("RS384")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(JWKS_URL, json=jwks(rsa))  # published for RS384
        both = secure_settings.model_copy(update=dict(jwt_algorithms=("RS384", "PS384")))
        client = create_app(both, content=content, clock=CLOCK).test_client()
        assert_refused(call(client, token_for(replace(rsa, alg="PS384"), SERVICE)))  # same key, other algorithm
        assert call(client, token_for(rsa, SERVICE)).status_code == 200


def test_tenant_not_listed_for_the_issuer_is_401(secure, ehr, key):
    assert_refused(call(secure, token_for(key, SERVICE, tenant="another-org")))
    assert_refused(call(secure, token_for(key, SERVICE, tenant=None)))


@pytest.mark.parametrize("use_iat", [True, False])
def test_lifetime_over_the_maximum_is_401(secure, ehr, key, use_iat):
    now = int(time.time())
    assert_refused(call(secure, token_for(key, SERVICE, iat=now if use_iat else None, exp=now + 3600 + 120)))


def test_jwks_unreachable_is_401(secure, key):
    with responses.RequestsMock() as mock:
        mock.get(JWKS_URL, status=500)
        assert_refused(call(secure, token_for(key, SERVICE)))


def test_rejection_reason_is_logged_but_never_the_token_nor_its_claims(secure, ehr, key, caplog):
    token = token_for(key, SERVICE, tenant="another-org")
    with caplog.at_level(logging.INFO, logger="lbp_cds"):
        assert_refused(call(secure, token))
    assert f"tenant: the tenant is not one listed for {ISSUER}" in caplog.text
    assert "another-org" not in caplog.text
    assert token not in caplog.text and token.split(".")[2] not in caplog.text


# --- replay ---------------------------------------------------------------------------------------------


def test_replayed_jti_is_401_across_two_instances_sharing_the_database(settings, content, key, ehr, database_url):
    shared = trusting(settings).model_copy(update=dict(database_url=migrated(database_url)))
    first, second = (create_app(shared, content=content, clock=CLOCK) for _ in range(2))
    token = token_for(key, SERVICE)
    assert call(first.test_client(), token).status_code == 200
    assert_refused(call(second.test_client(), token))
    assert_refused(call(first.test_client(), token))
    assert call(second.test_client(), token_for(key, SERVICE)).status_code == 200  # a fresh jti is fine
    for app in (first, second):
        services_of(app).close()


def test_replayed_jti_is_401_across_two_instances_sharing_redis(settings, content, key, ehr):
    shared = trusting(settings).model_copy(update=dict(redis_url=redis_url()))
    first, second = (create_app(shared, content=content, clock=CLOCK).test_client() for _ in range(2))
    token = token_for(key, SERVICE)
    assert call(first, token).status_code == 200
    assert_refused(call(second, token))


def test_a_refused_token_does_not_use_up_its_jti(secure, ehr, key):
    token_claims = {"jti": "once-only"}
    assert_refused(call(secure, token_for(key, SERVICE, tenant="another-org", **token_claims)))
    assert call(secure, token_for(key, SERVICE, **token_claims)).status_code == 200


def test_replay_store_down_is_503_not_401_when_told_to_refuse(settings, content, key, ehr, outage):
    refusing = trusting(settings).model_copy(update=dict(database_url=outage.url, jwt_replay_outage="refuse"))
    app = create_app(refusing, content=content, clock=CLOCK)
    outage.down()
    response = call(app.test_client(), token_for(key, SERVICE))
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    outage.up()
    assert call(app.test_client(), token_for(key, SERVICE)).status_code == 200
    services_of(app).close()


# --- which endpoints ------------------------------------------------------------------------------------


def test_feedback_needs_a_token_for_the_feedback_url(secure, ehr, key):
    body = {
        "feedback": [
            {
                "card": "9368d37b-283f-44a0-93ea-547cebab93ed",
                "outcome": "overridden",
                "outcomeTimestamp": "2026-01-02T03:04:05Z",
            }
        ]
    }
    assert_refused(call(secure, None, FEEDBACK, body))
    assert_refused(call(secure, token_for(key, SERVICE), FEEDBACK, body))  # aud of the service, not feedback
    assert call(secure, token_for(key, FEEDBACK), FEEDBACK, body).status_code == 200
    storage = services_of(secure.application).storage
    with storage.engine.connect() as connection:
        row = connection.execute(select(feedback)).one()
    assert (row.issuer, row.tenant) == (ISSUER, TENANT)  # who sent it is kept with the feedback


def test_discovery_and_pages_stay_open(secure):
    assert secure.get("/cds-services").status_code == 200
    assert secure.get("/msc/handout").status_code == 200


def test_unknown_service_is_404_before_any_token_check(secure):
    assert secure.post("/cds-services/lbp-nope", json={}).status_code == 404


# --- a real JWKS server ---------------------------------------------------------------------------------


class JwksHandler(BaseHTTPRequestHandler):
    document: bytes = b"{}"
    hits: int = 0

    def do_GET(self) -> None:
        type(self).hits += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.document)))
        self.end_headers()
        self.wfile.write(self.document)

    def log_message(self, *args) -> None:
        pass


def test_jwks_from_a_real_http_server(settings, content):
    key = make_key("RS384")
    handler = type("Handler", (JwksHandler,), {"document": json.dumps(jwks(key)).encode(), "hits": 0})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
        client = create_app(trusting(settings, url), content=content, clock=CLOCK).test_client()
        assert call(client, token_for(key, SERVICE)).status_code == 200
        assert call(client, token_for(key, SERVICE, headers={"jku": url})).status_code == 200
        assert_refused(call(client, token_for(make_key("RS384"), SERVICE)))
        assert handler.hits == 2  # first fetch, then one refetch for the unknown kid
    finally:
        server.shutdown()
        server.server_close()


# --- start-up -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "CDS_REQUIRE_JWT=true needs CDS_TRUSTED_ISSUERS and CDS_PUBLIC_BASE_URL"),
        ({"CDS_PUBLIC_BASE_URL": "https://cds.example.org"}, "needs CDS_TRUSTED_ISSUERS:"),
        ({"CDS_TRUSTED_ISSUERS": json.dumps({ISSUER: {"jwks_urls": [JWKS_URL]}})}, "needs CDS_PUBLIC_BASE_URL"),
    ],
)
def test_requiring_jwts_without_issuers_or_public_url_fails_at_start_up(env, expected, tmp_path, content):
    settings = Settings.from_env({**env, **private_env(tmp_path)})
    with pytest.raises(SettingsError, match=expected):
        create_app(settings, content=content, clock=CLOCK)


def test_not_requiring_jwts_logs_a_warning(settings, content, caplog):
    with caplog.at_level(logging.WARNING, logger="lbp_cds"):
        create_app(settings, content=content, clock=CLOCK)
    assert "CDS_REQUIRE_JWT=false" in caplog.text


# --- the replay store during an outage (CDS_JWT_REPLAY_OUTAGE) ---------------------------------------------------


def local_metric(client) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    families = text_string_to_metric_families(client.get("/metrics").get_data(as_text=True))
    return sum(s.value for f in families for s in f.samples if s.name == "lbp_jwt_replay_local_total")


def test_with_the_replay_store_down_calls_are_answered_and_a_replay_is_still_refused_by_the_worker(
    settings, content, key, ehr, outage, monkeypatch
):
    monkeypatch.setattr(WorkerReplayGuard, "RETRY_SECONDS", 0.0)  # ask the store again at once once it is back
    app = create_app(trusting(settings).model_copy(update=dict(database_url=outage.url)), content=content)
    client = app.test_client()
    seen_before = token_for(key, SERVICE)
    assert call(client, seen_before).status_code == 200
    before = local_metric(client)
    outage.down()
    try:
        token = token_for(key, SERVICE)
        assert call(client, token).status_code == 200
        assert_refused(call(client, token))  # the same worker never accepts a token twice
        assert_refused(call(client, seen_before))  # nor one it accepted before the outage
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.get_json()["hookCalls"] == "answered"
        assert "replays refused by each worker's own memory only" in ready.get_json()["checks"]["replay"]
        assert local_metric(client) == before + 1
    finally:
        outage.up()
    assert call(client, token_for(key, SERVICE)).status_code == 200
    assert client.get("/readyz").get_json()["checks"]["replay"] == "ok"
    assert_refused(call(client, token))  # still remembered once the store is back
    services_of(app).close()


def test_when_the_workers_memory_overflowed_an_outage_answers_503(settings, content, key, ehr, outage):
    tiny = trusting(settings).model_copy(update=dict(database_url=outage.url, jwt_replay_cache_size=1))
    app = create_app(tiny, content=content)
    client = app.test_client()
    assert call(client, token_for(key, SERVICE)).status_code == 200
    assert call(client, token_for(key, SERVICE)).status_code == 200  # no room: this jti is not remembered
    outage.down()
    try:
        response = call(client, token_for(key, SERVICE))
    finally:
        outage.up()
        services_of(app).close()
    assert response.status_code == 503  # it could no longer vouch for the token it forgot


def test_with_redis_unreachable_calls_are_answered_on_the_workers_memory(settings, content, key, ehr):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    unreachable = trusting(settings).model_copy(update=dict(redis_url=f"redis://127.0.0.1:{port}/0"))
    app = create_app(unreachable, content=content)
    client = app.test_client()
    token = token_for(key, SERVICE)
    assert call(client, token).status_code == 200
    assert_refused(call(client, token))
    assert "redis unreachable" in client.get("/readyz").get_json()["checks"]["replay"]
    services_of(app).close()


def test_during_an_outage_the_shared_store_is_asked_again_only_now_and_then():
    """An outage that drops packets costs one connect timeout per RETRY_SECONDS, not one per call."""

    class Down:
        asked = 0

        def first_use(self, token_id, expires_at):
            Down.asked += 1
            raise StorageUnavailable("down")

        def close(self):
            pass

    guard = WorkerReplayGuard(Down(), "database", capacity=100, outage="local")
    expiry = datetime.now(UTC) + timedelta(minutes=5)
    assert all(guard.first_use(f"{n:064d}", expiry) for n in range(10))
    assert not guard.first_use(f"{3:064d}", expiry)
    assert Down.asked == 1
