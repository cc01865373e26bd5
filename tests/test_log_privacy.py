"""No token, no patient data and no comment in any log line: hook calls, feedback, JWT failures and
database errors carry sentinels in every field, and no log line at any level holds one.

Log lines are captured as production writes them (the service's text and JSON formatters on the root
logger, at DEBUG), and from the production server (granian) at its production level (info) and at debug.
"""

from __future__ import annotations

import io
import json
import logging
import signal
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import MappingProxyType
from typing import Any

import jwt
import pytest
import requests
import responses
from flask import Flask
from sqlalchemy import text

from cds_service.app import create_app
from cds_service.observability.logs import JsonFormatter, TextFormatter
from cds_service.settings import TrustedIssuer, signing_keys
from cds_service.wiring import services_of
from tests.builders import ortho_referral, patient
from tests.databases import migrated
from tests.tokens import FORM_KEY, ISSUER, TENANT, bearer, jwks, make_key, sign, token_for

TOKEN = "sntl-token-Qz9Xw2Lk"
BIRTH_DATE = "1961-07-13"
NAME = "Zebulon Quackenbush"
COMMENT = "sntl-comment: patient refuses surgery"
POSTAL = "55999"
PATIENT_ID = "sntl-pid-8812"
SENTINELS = (TOKEN, BIRTH_DATE, NAME, "Quackenbush", COMMENT, POSTAL, PATIENT_ID)
FHIR = "https://ehr.example.org/fhir"
SELECT = "/cds-services/lbp-referral-select"
VIEW = "/cds-services/lbp-patient-view"


@contextmanager
def production_log_lines(app: Flask | None = None) -> Iterator[io.StringIO]:
    """Every log line, written by the service's text and JSON formatters, at DEBUG; with `app`, the lines of its
    answered hook calls too (its writer thread writes them with the calls' records: flushed at the end)."""
    out = io.StringIO()
    handlers = []
    for formatter in (TextFormatter(), JsonFormatter()):
        handler = logging.StreamHandler(out)
        handler.setFormatter(formatter)
        handler.setLevel(logging.DEBUG)
        handlers.append(handler)
    root = logging.getLogger()
    previous = root.level
    root.setLevel(logging.DEBUG)
    for handler in handlers:
        root.addHandler(handler)
    try:
        yield out
        if app is not None:
            services_of(app).issued_cards.flush(timeout=10)
    finally:
        for handler in handlers:
            root.removeHandler(handler)
        root.setLevel(previous)


def assert_no_sentinel(lines: str) -> None:
    leaked = [s for s in SENTINELS if s in lines]
    assert not leaked, [line for line in lines.splitlines() if any(s in line for s in leaked)][:5]


def sentinel_patient() -> Any:
    """A referral for a patient whose every field holds a sentinel."""
    builder = patient(45).with_lbp()
    body = builder.order_select(ortho_referral())
    record = body["prefetch"]["patient"]
    record.update(
        id=PATIENT_ID,
        birthDate=BIRTH_DATE,
        name=[{"family": "Quackenbush", "given": ["Zebulon"], "text": NAME}],
        address=[{"use": "home", "postalCode": POSTAL, "text": COMMENT}],
    )
    body["context"]["patientId"] = PATIENT_ID
    body["context"]["draftOrders"]["entry"][0]["resource"]["note"] = [{"text": COMMENT}]
    return body


def hook_requests() -> list[tuple[str, Any]]:
    """(path, body) of hook calls that carry sentinels where a careless log would print them."""
    good = sentinel_patient()
    calls: list[tuple[str, Any]] = [(SELECT, good)]
    as_string = sentinel_patient() | {"fhirServer": FHIR, "fhirAuthorization": f"Bearer {TOKEN}"}
    calls.append((SELECT, as_string))  # 400: fhirAuthorization must be an object
    fetching = sentinel_patient()
    del fetching["prefetch"]["conditions"]
    fetching |= {
        "fhirServer": FHIR,
        "fhirAuthorization": {
            "access_token": TOKEN,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/*.read",
            "subject": "lbp-cds",
            "patient": PATIENT_ID,
        },
    }
    calls.append((SELECT, fetching))  # fetched with the token; the FHIR server fails
    array_prefetch = sentinel_patient()
    array_prefetch["prefetch"] = [array_prefetch["prefetch"]["patient"]]
    calls.append((SELECT, array_prefetch))  # 400: prefetch must be an object
    malformed = sentinel_patient()
    malformed["prefetch"]["patient"]["address"] = f"{COMMENT} {POSTAL}"
    malformed["prefetch"]["patient"]["birthDate"] = {"value": BIRTH_DATE}
    calls.append((SELECT, malformed))  # the Patient set aside, 412
    wrong_type = sentinel_patient()
    wrong_type["context"]["draftOrders"]["entry"][0]["resource"]["reasonCode"] = COMMENT
    calls.append((SELECT, wrong_type))  # 400
    other_hook = sentinel_patient() | {"hook": TOKEN}
    calls.append((SELECT, other_hook))  # 400
    selection = sentinel_patient()
    selection["context"]["selections"] = [f"ServiceRequest/{PATIENT_ID}"]
    calls.append((SELECT, selection))  # 400: not in draftOrders
    unknown_key = sentinel_patient()
    unknown_key["prefetch"][TOKEN] = {"resourceType": "Patient", "birthDate": BIRTH_DATE}
    unknown_key["context"][TOKEN] = NAME
    calls.append((SELECT, unknown_key))
    calls.append((f"/cds-services/{TOKEN}", sentinel_patient()))  # 404
    return calls


def feedback_requests(card: dict[str, Any]) -> list[tuple[str, Any]]:
    path = SELECT + "/feedback"
    reason = card["overrideReasons"][0]
    entry = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-26T10:00:00Z"}
    return [
        (path, {"feedback": [entry | {"overrideReason": {"reason": reason, "userComment": COMMENT}}]}),  # 200
        (path, {"feedback": [entry | {"overrideReason": {"reason": {"code": TOKEN}, "userComment": COMMENT}}]}),
        (path, {"feedback": [entry | {"overrideReason": {"userComment": COMMENT, TOKEN: NAME}}]}),
        (path, {"feedback": [entry | {"outcomeTimestamp": f"{BIRTH_DATE}T25:00:00Z", "note": COMMENT}]}),
        (path, {"feedback": [entry | {"card": PATIENT_ID, "outcome": TOKEN}]}),
        (path, {"feedback": COMMENT}),
    ]


@pytest.fixture
def app(settings, content):
    allowing = settings.model_copy(update=dict(fhir_allowlist=(FHIR,)))
    app = create_app(allowing, content=content)
    yield app
    services_of(app).close()


def test_hook_calls_and_feedback_log_no_token_patient_data_or_comment(app):
    client = app.test_client()
    with production_log_lines(app) as lines, responses.RequestsMock(assert_all_requests_are_fired=False) as fhir:
        fhir.get(f"{FHIR}/Condition", status=503, body=f"upstream says {TOKEN} {NAME}")
        answers = [client.post(path, json=body) for path, body in hook_requests()]
        card = answers[0].get_json()["cards"][0]
        answers += [client.post(path, json=body) for path, body in feedback_requests(card)]
    statuses = [answer.status_code for answer in answers]
    assert statuses[0] == 200 and 400 in statuses and 412 in statuses and 404 in statuses
    assert statuses[len(hook_requests())] == 200  # the valid feedback was stored
    written = lines.getvalue()
    assert "hook call" in written and "feedback stored" in written and "answered 400" in written
    assert "fhir fetch" in written and "set aside" in written
    assert_no_sentinel(written)
    for answer in answers[1:]:
        assert TOKEN not in answer.get_data(as_text=True)  # no error answer echoes the token


# --- JWT failures -----------------------------------------------------------------------------------------


@pytest.fixture
def key():
    return make_key("ES384")


@pytest.fixture
def jwt_app(settings, content, key):
    issuer = TrustedIssuer(
        ISSUER,
        tenants=frozenset({TENANT}),
        pinned_keys=MappingProxyType(signing_keys(jwks(key), "test")),
    )
    secure = settings.model_copy(
        update=dict(require_jwt=True, trusted_issuers=MappingProxyType({ISSUER: issuer}), form_signing_key=FORM_KEY)
    )
    app = create_app(secure, content=content)
    yield app
    services_of(app).close()


def forged_alg(alg: str) -> str:
    """A token whose header names an algorithm no library signs with."""
    header = jwt.utils.base64url_encode(json.dumps({"alg": alg, "kid": alg, "typ": "JWT"}).encode())
    payload = jwt.utils.base64url_encode(json.dumps({"iss": ISSUER, "jti": alg}).encode())
    return b".".join([header, payload, jwt.utils.base64url_encode(b"sig")]).decode()


def test_jwt_failures_log_their_reason_but_no_token_or_claim(jwt_app, key):
    client = jwt_app.test_client()
    body = patient(45).with_lbp().patient_view()
    stranger = make_key("ES384", kid=TOKEN)
    aud = "https://cds.example.org" + VIEW
    tokens = [
        TOKEN,  # not a JWT at all
        f"{TOKEN}.{TOKEN}.{TOKEN}",
        token_for(stranger, VIEW, iss=f"https://{TOKEN}.example", jti=TOKEN, tenant=NAME),
        token_for(key, VIEW, jti=TOKEN, tenant=PATIENT_ID),  # tenant not listed
        token_for(key, VIEW, jti=TOKEN, aud=f"https://{TOKEN}.example/x"),
        token_for(key, VIEW, headers={"jku": f"https://{TOKEN}.example/jwks"}, jti=TOKEN),
        sign(key, {"iss": ISSUER, "aud": aud, "exp": 1, "jti": TOKEN, "sub": NAME}),  # expired
        forged_alg(TOKEN),
    ]
    replayed = token_for(key, VIEW, jti=TOKEN)
    with production_log_lines(client.application) as lines:
        refused = [client.post(VIEW, json=body, headers=bearer(token)) for token in tokens]
        first = client.post(VIEW, json=body, headers=bearer(replayed))
        again = client.post(VIEW, json=body, headers=bearer(replayed))
        no_scheme = client.post(VIEW, json=body, headers={"Authorization": TOKEN})
    assert {answer.status_code for answer in refused} == {401}
    assert (first.status_code, again.status_code, no_scheme.status_code) == (200, 401, 401)
    written = lines.getvalue()
    for reason in (
        "malformed",
        "issuer",
        "tenant",
        "audience",
        "foreign-jku",
        "expired",
        "algorithm",
        "replay",
        "missing",
    ):
        assert f"JWT rejected for {aud}: {reason}" in written, reason
    assert_no_sentinel(written)
    for token in [*tokens, replayed]:
        for part in token.split("."):
            assert part not in written


# --- database errors ----------------------------------------------------------------------------------------


def test_a_database_error_logs_where_and_what_kind_but_no_bound_value(settings, content, tmp_path):
    app = create_app(
        settings.model_copy(update=dict(database_url=migrated(f"sqlite:///{tmp_path}/b.sqlite3"))), content=content
    )
    storage = services_of(app).storage
    with storage.engine.begin() as connection:  # a bug's stand-in: the database refuses the statement
        connection.execute(text("CREATE TRIGGER refuse BEFORE INSERT ON feedback BEGIN SELECT RAISE(ABORT, 'no'); END"))
    client = app.test_client()
    entry = {
        "card": str(uuid.uuid4()),
        "outcome": "overridden",
        "overrideReason": {"userComment": COMMENT},
        "outcomeTimestamp": "2026-11-26T10:00:00Z",
    }
    try:
        with production_log_lines() as lines:
            response = client.post(SELECT + "/feedback", json={"feedback": [entry]})
    finally:
        services_of(app).close()
    assert response.status_code == 500
    written = lines.getvalue()
    assert "Traceback" in written and "sqlalchemy.exc.IntegrityError" in written
    assert "statement: INSERT INTO feedback" in written  # which statement failed
    assert_no_sentinel(written)
    assert entry["card"] not in written


def test_a_database_outage_during_feedback_logs_no_value(settings, content, outage):
    app = create_app(settings.model_copy(update=dict(database_url=outage.url)), content=content)
    client = app.test_client()
    entry = {
        "card": str(uuid.uuid4()),
        "outcome": "overridden",
        "overrideReason": {"userComment": COMMENT},
        "outcomeTimestamp": "2026-11-26T10:00:00Z",
    }
    outage.down()
    try:
        with production_log_lines() as lines:
            response = client.post(SELECT + "/feedback", json={"feedback": [entry]})
    finally:
        outage.up()
        services_of(app).close()
    assert response.status_code == 503
    assert "database unavailable" in lines.getvalue()
    assert_no_sentinel(lines.getvalue())


# --- the production server (granian), at info and at debug ---------------------------------------------------


@pytest.mark.processes
def test_the_server_at_its_production_log_level_logs_no_sentinel(tmp_path):
    from tests.test_startup import free_port, server, service_env, wait_for_service
    from tests.topology import migrate_database

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = service_env(tmp_path, port, CDS_LOG_FORMAT="text", CDS_FHIR_ALLOWLIST=FHIR)  # the server at info
    migrate_database(env)
    log = tmp_path / "server.log"
    with server(env, log) as process:
        wait_for_service(base, process, log)
        answers = [requests.post(base + path, json=body, timeout=10) for path, body in hook_requests()]
        card = answers[0].json()["cards"][0]
        answers += [requests.post(base + path, json=body, timeout=10) for path, body in feedback_requests(card)]
        answers.append(requests.post(base + SELECT, data=json.dumps(sentinel_patient()), timeout=10))  # 415
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    assert answers[0].status_code == 200 and answers[-1].status_code == 415
    written = Path(log).read_text()
    assert "hook call" in written and "service=lbp-referral-select" in written
    assert_no_sentinel(written)


@pytest.mark.processes
def test_the_server_at_debug_logs_no_form_link_token(tmp_path):
    """At debug the server logs more of its own work, never a request's path: a form link's token (a credential)
    appears nowhere (the server's access log stays off; the service's own lines mask it)."""
    from tests.test_startup import free_port, server, service_env, wait_for_service
    from tests.topology import migrate_database

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = service_env(tmp_path, port, CDS_LOG_FORMAT="text", CDS_LOG_LEVEL="debug")
    migrate_database(env)
    log = tmp_path / "server.log"
    with server(env, log) as process:
        wait_for_service(base, process, log)
        for path in (f"/prior-notification/form/{TOKEN}", f"/prior-notification/form/{TOKEN}/records/x"):
            assert requests.get(base + path, timeout=10).status_code == 404
        assert requests.head(base + f"/prior-notification/form/{TOKEN}", timeout=10).status_code == 404
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    written = Path(log).read_text()
    assert "Spawning worker" in written and TOKEN not in written
    assert_no_sentinel(written)


def test_the_text_log_format_shows_each_calls_fields(app):
    """`make run` logs as text: a call's line says its service, status, ms, topics, fetched and missing."""
    client = app.test_client()
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(TextFormatter())
    logger = logging.getLogger("lbp_cds")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        client.post(SELECT, json=patient(45).with_lbp().order_select(ortho_referral()))
        services_of(app).issued_cards.flush(timeout=10)  # the writer thread writes a call's line with its record
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    line = next(line for line in out.getvalue().splitlines() if "hook call" in line)
    for field in ("service=lbp-referral-select", "status=200", "topics=msc-evaluation-first", "fetched=-", "missing=-"):
        assert field in line, line
    assert " ms=" in line and "hookInstance=" in line


def test_a_jwt_failure_on_a_records_url_logs_the_route_not_the_id_in_the_path(jwt_app):
    client = jwt_app.test_client()
    with production_log_lines() as lines:
        refused = client.get(f"/fhir/QuestionnaireResponse/{PATIENT_ID}", headers=bearer(TOKEN))
    assert refused.status_code == 401
    written = lines.getvalue()
    assert "JWT rejected for https://cds.example.org/fhir/QuestionnaireResponse/<record_id>: malformed" in written
    assert_no_sentinel(written)
