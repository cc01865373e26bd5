"""Issue 20, security round 2: each failure a tester found is a named test (the durability proof is in
tests/test_durability.py, the log sentinels of form links in tests/test_log_privacy.py)."""

from __future__ import annotations

import base64
import csv
import io
import json
import tracemalloc
import uuid
from pathlib import Path
from types import MappingProxyType
from typing import Any

import jwt
import pytest
import responses
from sqlalchemy import func, select

from cds_service.app import create_app
from cds_service.pipeline import validation
from cds_service.settings import ServerSettings, TrustedIssuer
from cds_service.storage.database import prior_notifications
from cds_service.storage.report import inert
from cds_service.wiring import services_of
from tests.builders import appointment, ortho_referral, patient
from tests.clinical_date import CLOCK
from tests.conftest import BASE_URL, Hooks
from tests.databases import migrated
from tests.metrics_reading import metric
from tests.pn import completed_fields, form_link, response_json
from tests.test_appointment_book import adult_with_lbp
from tests.test_hardening import baseline
from tests.test_startup import free_port
from tests.tokens import FORM_KEY, ISSUER, JWKS_URL, TENANT, bearer, claims, jwks, make_key, sign

ROOT = Path(__file__).resolve().parent.parent
RESPONSES = "/fhir/QuestionnaireResponse"
SEPARATORS = (",", ";", "\t", "|", " ")
FORMULA_STARTS = ("=", "+", "-", "@")


def stored_count(app) -> int:
    with services_of(app).storage.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(prior_notifications)).scalar_one())


def pn_card(client) -> dict[str, Any]:
    return Hooks(client).book(adult_with_lbp().appointment_book(appointment(aid="apt-1")))[0]


# --- HEAD never files a Prior Notification ------------------------------------------------------------------


def test_a_head_with_a_form_body_to_the_form_url_stores_nothing_and_answers_as_get(stored_app):
    client = stored_app.test_client()
    link = form_link(pn_card(client))
    head = client.head(link, data=completed_fields())
    assert head.status_code == 200 and head.get_data() == b""
    assert head.headers["Content-Type"] == client.get(link).headers["Content-Type"]
    assert stored_count(stored_app) == 0


# --- CSV cells inert whatever the list separator ----------------------------------------------------------


def cells_read_with(text: str, separator: str) -> list[str]:
    return [cell for row in csv.reader(io.StringIO(text), delimiter=separator) for cell in row]


def assert_inert_with_every_separator(text: str) -> None:
    for separator in SEPARATORS:
        for cell in cells_read_with(text, separator):
            assert not cell.strip().startswith(FORMULA_STARTS), (repr(separator), cell)


@pytest.mark.parametrize("value", ["Lee;=1+1;", "Lee\t=1+1", "Lee|+1", "Lee, @SUM(A1)", "Lee -1+1", "a\n=1+1"])
def test_a_formula_after_any_list_separator_is_exported_inert(value):
    assert_inert_with_every_separator(inert(value))


def test_the_pn_export_is_inert_whatever_separator_the_spreadsheet_uses(stored_app):
    client = stored_app.test_client()
    body = response_json(**{"member-name": "Lee;=1+1;", "attester-name": "Ann|@SUM(A1)"})
    assert client.post(RESPONSES, json=body).status_code == 201
    result = stored_app.test_cli_runner().invoke(args=["pn-export"])
    assert result.exit_code == 0, result.output
    assert_inert_with_every_separator(result.output)
    [row] = csv.DictReader(io.StringIO(result.output))
    assert row["member_name"] == "Lee;'=1+1;"  # the text is all there, shown rather than run


def test_the_feedback_report_is_inert_whatever_separator_the_spreadsheet_uses(stored_app):
    from tests.test_report import feedback, issue, report

    client = stored_app.test_client()
    reason = {"code": "x1", "system": "urn:ehr:reasons", "display": "Lee;=1+1;"}
    feedback(client, issue(client), "overridden", "2026-05-01T09:00:00Z", {"reason": reason})
    assert_inert_with_every_separator(report(stored_app, "--csv"))


# --- JWT claims of the wrong type ---------------------------------------------------------------------------

NUMBERS_WRONG: tuple[Any, ...] = ("1799999999", "soon", "", True, None, [1], {"n": 1}, 1e300, -1e300, 2**70)
STRINGS_WRONG: tuple[Any, ...] = (1, 1.5, True, None, ["x"], {"n": 1})
WRONG_TYPES = {
    "exp": NUMBERS_WRONG,
    "iat": NUMBERS_WRONG,
    "nbf": NUMBERS_WRONG,
    "jti": (*STRINGS_WRONG, ""),
    "tenant": STRINGS_WRONG,
    "iss": STRINGS_WRONG,
    "aud": (*STRINGS_WRONG, [1], [["x"]], []),
}


def signed_as_is(key, payload: dict[str, Any]) -> str:
    """Signed without PyJWT's own checks of the claims (it refuses to sign an `iss` that is no string)."""
    body = json.dumps(payload).encode()
    return jwt.api_jws.encode(body, key.private_key, algorithm=key.alg, headers={"kid": key.kid, "typ": "JWT"})


@pytest.fixture
def trusted(settings, content):
    key = make_key("ES384")
    issuer = TrustedIssuer(ISSUER, (JWKS_URL,), frozenset({TENANT}))
    secure = settings.model_copy(
        update=dict(require_jwt=True, trusted_issuers=MappingProxyType({ISSUER: issuer}), form_signing_key=FORM_KEY)
    )
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(JWKS_URL, json=jwks(key))
        app = create_app(secure, content=content, clock=CLOCK)
        yield app.test_client(), key
        services_of(app).close()


@pytest.mark.parametrize("claim", sorted(WRONG_TYPES))
def test_a_trusted_token_with_a_claim_of_the_wrong_type_is_401_and_counted(trusted, claim):
    client, key = trusted
    path = "/cds-services/lbp-patient-view"
    for wrong in WRONG_TYPES[claim]:
        payload = {**claims(path), claim: wrong}  # None is sent as JSON null
        before = metric(client, "lbp_jwt_rejections_total")
        response = client.post(
            path, json=patient(45).with_lbp().patient_view(), headers=bearer(signed_as_is(key, payload))
        )
        assert response.status_code == 401, (claim, wrong, response.status_code)
        assert metric(client, "lbp_jwt_rejections_total") == before + 1, (claim, wrong)


def test_a_trusted_token_whose_exp_is_a_numeric_string_is_401(trusted):
    client, key = trusted
    path = "/cds-services/lbp-patient-view"
    payload = claims(path)
    payload["exp"] = str(payload["exp"])
    response = client.post(path, json=patient(45).with_lbp().patient_view(), headers=bearer(sign(key, payload)))
    assert response.status_code == 401


# --- values with a trailing newline, and one verdict per request --------------------------------------------


def hook_bodies() -> dict[str, tuple[str, dict[str, Any]]]:
    record = patient(45).with_lbp()
    return {
        "order-select": ("/cds-services/lbp-referral-select", record.order_select(ortho_referral())),
        "patient-view": ("/cds-services/lbp-patient-view", record.patient_view()),
        "appointment-book": (
            "/cds-services/lbp-appointment-book",
            adult_with_lbp().appointment_book(appointment(aid="apt-1")),
        ),
    }


@pytest.mark.parametrize("hook", ["order-select", "patient-view", "appointment-book"])
@pytest.mark.parametrize(
    ("member", "value"),
    [
        ("patientId", "x\n"),
        ("patientId", "a b"),
        ("patientId", "x" * 65),
        ("hookInstance", str(uuid.uuid4()) + "\n"),
        ("userId", "PractitionerRole/x\n"),
    ],
)
def test_a_value_that_is_not_what_its_member_names_is_400(client, hook, member, value):
    path, body = hook_bodies()[hook]
    (body if member == "hookInstance" else body["context"])[member] = value
    response = client.post(path, json=body)
    assert response.status_code == 400, (hook, member, response.get_data(as_text=True))
    outcome = response.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert value.strip() not in outcome["issue"][0]["diagnostics"] or len(value.strip()) < 2


def test_when_the_two_validators_disagree_the_request_is_refused(client, monkeypatch):
    class SaysInvalid:
        def is_valid(self, _instance: Any) -> bool:
            return False

    monkeypatch.setattr(validation, "fast_validator", lambda _name: SaysInvalid())
    response = client.post("/cds-services/lbp-referral-select", json=baseline())
    assert response.status_code == 400
    assert response.get_json()["resourceType"] == "OperationOutcome"


def test_a_records_search_for_a_patient_id_with_a_trailing_newline_is_400(client):
    assert client.get(f"{RESPONSES}?patient=p1%0A").status_code == 400


def test_an_npi_with_a_trailing_newline_is_refused(client):
    body = response_json(**{"practice-npi": "1407071236\n"})
    assert client.post(RESPONSES, json=body).status_code == 400


# --- development defaults -------------------------------------------------------------------------------


def test_development_binds_loopback_unless_told_otherwise(monkeypatch):
    monkeypatch.delenv("CDS_BIND", raising=False)
    monkeypatch.setenv("CDS_REQUIRE_JWT", "false")
    assert ServerSettings.from_env().bind == "127.0.0.1:8080"


def test_the_container_and_the_production_recipe_bind_explicitly_behind_nginx():
    containerfile = (ROOT / "Containerfile").read_text()
    assert "CDS_BIND=0.0.0.0:8080" in containerfile
    recipe = (ROOT / "docs" / "operators" / "index.md").read_text()
    assert "CDS_BIND=127.0.0.1:8080" in recipe and "nginx must be in front" in recipe
    assert 'CDS_BIND: "0.0.0.0:8080"' in (ROOT / "deploy/kubernetes/settings.yaml").read_text()


# --- /readyz and Redis --------------------------------------------------------------------------------------


def test_readyz_says_the_replay_store_is_down_while_redis_is_down_before_any_hook_call(settings, content):
    issuer = TrustedIssuer(ISSUER, (JWKS_URL,), frozenset({TENANT}))
    secure = settings.model_copy(
        update=dict(
            require_jwt=True,
            trusted_issuers=MappingProxyType({ISSUER: issuer}),
            form_signing_key=FORM_KEY,
            redis_url=f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
        )
    )
    app = create_app(secure, content=content, clock=CLOCK)
    try:
        response = app.test_client().get("/readyz")
        assert response.status_code == 503
        assert response.get_json()["checks"]["replay"].startswith("redis unreachable")
        assert response.get_json()["hookCalls"] == "answered"
    finally:
        services_of(app).close()


# --- the records search: bounded by bytes -----------------------------------------------------------------

PDF_BYTES = 3_600_000


def large_pdf_response(index: int) -> dict[str, Any]:
    pdf = b"%PDF-1.4\n" + bytes([index % 251]) * (PDF_BYTES - 9)
    attachment = {"contentType": "application/pdf", "data": base64.b64encode(pdf).decode(), "title": "notes.pdf"}
    body = response_json(**{"member-id": f"M{index:06d}"})
    msc = next(group for group in body["item"] if group["linkId"] == "msc")
    msc["item"].append({"linkId": "msc-notes", "answer": [{"valueAttachment": attachment}]})
    return body


def test_the_records_search_is_bounded_by_bytes_with_attachments_by_link(settings, content, tmp_path):
    """40 records with 3.6 MB PDFs, then _count=1000: a bounded answer, its memory measured."""
    app = create_app(
        settings.model_copy(update=dict(database_url=migrated(f"sqlite:///{tmp_path / 'big.sqlite3'}"))),
        content=content,
        clock=CLOCK,
    )
    try:
        client = app.test_client()
        for index in range(40):
            response = client.post(RESPONSES, json=large_pdf_response(index))
            assert response.status_code == 201, response.get_data(as_text=True)[:300]
        tracemalloc.start()
        answer = client.get(f"{RESPONSES}?_count=1000")
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert answer.status_code == 200
        size = len(answer.get_data())
        limit = services_of(app).settings.pn_search_max_bytes
        print(f"search answer {size:,} bytes; peak traced memory {peak / 2**20:.1f} MiB")
        assert size <= limit
        assert peak < 64 * 2**20  # before: 192 MB answered, the worker growing by over 500 MB
        bundle = answer.get_json()
        ids: list[str] = []
        while True:
            for entry in bundle["entry"]:
                ids.append(entry["resource"]["id"])
                notes = [a for i in attachments(entry["resource"]) for a in [i]]
                assert notes and all("data" not in a and a["url"].startswith(BASE_URL) for a in notes)
            following = [link["url"] for link in bundle.get("link", []) if link["relation"] == "next"]
            if not following:
                break
            bundle = client.get(following[0].removeprefix(BASE_URL)).get_json()
        assert len(ids) == len(set(ids)) == 40  # every record found, once, page after page
        full = client.get(f"{RESPONSES}/{ids[0]}").get_json()
        assert any("data" in a for a in attachments(full))  # the record itself holds its attachment
    finally:
        services_of(app).close()


def attachments(resource: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    def visit(items: list[dict[str, Any]]) -> None:
        for item in items:
            found.extend(a["valueAttachment"] for a in item.get("answer", []) if "valueAttachment" in a)
            visit(item.get("item", []))

    visit(resource.get("item", []))
    return found


def test_the_pn_export_streams_its_rows(settings, content, tmp_path):
    """20,000 records exported: rows are written as they are read, so memory does not grow with the register."""
    app = create_app(
        settings.model_copy(update=dict(database_url=migrated(f"sqlite:///{tmp_path / 'many.sqlite3'}"))),
        content=content,
        clock=CLOCK,
    )
    try:
        assert app.test_client().post(RESPONSES, json=response_json()).status_code == 201
        engine = services_of(app).storage.engine
        with engine.begin() as connection:
            row = dict(connection.execute(select(prior_notifications)).one()._mapping)
            copies = [{**row, "id": str(uuid.uuid4()), "submission_key": f"k{n}"} for n in range(20_000)]
            connection.execute(prior_notifications.insert(), copies)
        del copies
        output = tmp_path / "export.csv"
        tracemalloc.start()
        result = app.test_cli_runner().invoke(args=["pn-export", "--output", str(output)])
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert result.exit_code == 0, result.output
        written = output.stat().st_size
        print(f"export {written:,} bytes; peak traced memory {peak / 2**20:.1f} MiB")
        assert len(output.read_text().splitlines()) == 20_002
        assert peak < written / 2  # before: every row held at once (several times the file)
    finally:
        services_of(app).close()


def test_the_form_pages_send_no_referer_carrying_the_link(stored_app):
    client = stored_app.test_client()
    assert client.get(form_link(pn_card(client))).headers["Referrer-Policy"] == "no-referrer"
