"""The Prior Notification form and its records: the Questionnaire (content and endpoint), the web form from
the card's link, the JSON submission, the read endpoints and the export, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path
from types import MappingProxyType

import pytest
import responses
from fhir.resources.R4B.questionnaire import Questionnaire
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse
from itsdangerous import TimestampSigner
from sqlalchemy import func, select

from cds_service.app import create_app
from cds_service.content.loader import check_content
from cds_service.settings import DEVELOPMENT_FORM_KEY, Settings, SettingsError, TrustedIssuer
from cds_service.storage.database import pn_form_contexts, prior_notifications
from cds_service.storage.prior_notifications import export_csv
from cds_service.wiring import services_of
from tests.builders import appointment
from tests.clinical_date import CLOCK
from tests.conftest import BASE_URL, Hooks
from tests.content_copies import ContentCopy
from tests.databases import migrated
from tests.pn import QUESTIONNAIRE, completed_fields, file_on_form, form_link, response_json
from tests.test_appointment_book import adult_with_lbp
from tests.tokens import FORM_KEY, ISSUER, JWKS_URL, TENANT, bearer, jwks, make_key, token_for

FORM = Path(__file__).resolve().parent.parent / "guideline_data" / "forms" / "prior-notification.questionnaire.json"
RESPONSES = "/fhir/QuestionnaireResponse"


@pytest.fixture
def client(stored_app):
    """On SQLite and PostgreSQL: for what the records' storage decides."""
    return stored_app.test_client()


@pytest.fixture
def sqlite_client(app):
    """On SQLite only: for what does not depend on the database."""
    return app.test_client()


def rows(app) -> list[dict]:
    with services_of(app).storage.engine.connect() as connection:
        return [dict(r._mapping) for r in connection.execute(select(prior_notifications))]


def book(client) -> dict:
    """The PN card of a fresh booking."""
    return Hooks(client).book(adult_with_lbp().appointment_book(appointment(aid="apt-1")))[0]


# --- the Questionnaire ---------------------------------------------------------------------------------


def test_the_form_is_a_valid_fhir_questionnaire():
    Questionnaire.model_validate(json.loads(FORM.read_text()))  # R4B: fhir.resources has no R4 4.0.1 models


def test_the_questionnaire_is_served_as_fhir_with_its_canonical_url(sqlite_client):
    response = sqlite_client.get("/fhir/Questionnaire/lbp-prior-notification")
    assert response.status_code == 200
    assert response.mimetype == "application/fhir+json"
    served = response.get_json()
    Questionnaire.model_validate(served)
    assert served["url"] == QUESTIONNAIRE
    assert served["version"] == "2026.1" and served["status"] == "active" and served["subjectType"] == ["Patient"]
    links = {i["linkId"] for group in served["item"] for i in group["item"]}
    assert {"member-id", "practice-npi", "surgeon-npi", "visit-date", "diagnosis-code", "msc-done", "attested"} <= links


def test_an_unknown_questionnaire_is_404(sqlite_client):
    response = sqlite_client.get("/fhir/Questionnaire/nope")
    assert response.status_code == 404
    assert response.get_json()["resourceType"] == "OperationOutcome"


def item(form: dict, link_id: str) -> dict:
    return next(i for group in form["item"] for i in group["item"] if i["linkId"] == link_id)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda f: item(f, "member-id").update(linkId="member-name"), 'the linkId "member-name" is used twice'),
        (lambda f: item(f, "practice-npi").update(linkId="practice-npi-x"), 'the item "practice-npi" is missing'),
        (
            lambda f: item(f, "msc-date")["enableWhen"][0].update(question="attester-name"),
            'is enabled by "attester-name", which is not an item before it',
        ),
        (
            lambda f: item(f, "member-birth-date").update(type="string"),
            'the item "member-birth-date" must be of type date',
        ),
        (lambda f: item(f, "msc-done").update(type="yes-no"), "the form supports the item types"),
        (
            lambda f: item(f, "practice-npi")["extension"].pop(),
            'the item "practice-npi" has a regex but no entryFormat',
        ),
    ],
    ids=["duplicate-linkid", "missing-item", "enable-when-order", "wrong-type", "unknown-type", "regex-unsaid"],
)
def test_form_edits_the_service_cannot_use_are_refused_in_plain_words(tmp_path, edit, message):
    copy = ContentCopy.of_guideline_data(tmp_path)
    path = copy.root / "forms" / "prior-notification.questionnaire.json"
    form = json.loads(path.read_text())
    edit(form)
    path.write_text(json.dumps(form, indent=1))
    content, problems = check_content(copy.root)
    assert content is None
    assert any(message in str(p) for p in problems), [str(p) for p in problems]


# --- the web form --------------------------------------------------------------------------------------


def test_the_form_from_the_card_is_submitted_and_its_record_is_shown_and_stored(stored_app, client):
    card = book(client)
    response = client.post(form_link(card), data=completed_fields())
    assert response.status_code == 303
    saved = client.get(response.headers["Location"])
    page = saved.get_data(as_text=True)
    assert saved.status_code == 200 and "Prior Notification filed" in page
    [row] = rows(stored_app)
    assert row["id"] in page
    assert (row["patient_id"], row["appointment_id"], row["submitted_via"]) == ("p1", "apt-1", "web-form")
    assert (row["practice_npi"], row["surgeon_npi"], row["member_id"]) == ("1407071236", "9941339100", "M123456")
    assert row["visit_date"].isoformat() == "2026-12-10" and row["msc_done"] is False
    assert row["msc_not_done_reason"] == "patient-choice" and row["attester_name"] == "Sam Scheduler"
    assert (datetime.now(UTC) - row["submitted_at"]).total_seconds() < 60
    QuestionnaireResponse.model_validate(row["response"])
    assert row["response"]["questionnaire"] == f"{QUESTIONNAIRE}|2026.1"
    assert row["response"]["subject"] == {"reference": "Patient/p1"}


def test_the_record_page_states_the_filing_day_the_coverage_information_and_the_export_state(stored_app, client):
    card = book(client)
    record_id = file_on_form(client, card)
    [row] = rows(stored_app)
    day = row["filed_on"].isoformat()  # the program's day (CDS_PROGRAM_TIMEZONE), never the UTC one
    html = client.get(f"{form_link(card)}/records/{record_id}").get_data(as_text=True)
    page = " ".join(unescape(re.sub(r"<[^>]+>", "", html)).split())  # the text a reader sees
    assert f"filed on {day} at" in page and "(America/Chicago time)" in page and "UTC" not in page
    again = Hooks(client).answer("lbp-appointment-book", adult_with_lbp().appointment_book(appointment(aid="apt-1")))
    assert f"filed {day}" in json.dumps(again)  # the coverage information
    export = io.StringIO()
    export_csv(services_of(stored_app).storage, export, since=row["filed_on"], until=row["filed_on"])
    [exported] = list(csv.DictReader(io.StringIO(export.getvalue())))
    assert exported["filed_on"] == day


def test_the_form_pages_run_no_script_and_are_not_cached(sqlite_client):
    page = sqlite_client.get(form_link(book(sqlite_client)))
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src" not in policy and "form-action 'self'" in policy
    assert page.headers["Cache-Control"] == "no-store"
    html = page.get_data(as_text=True)
    assert "<script" not in html and "onclick" not in html


def test_the_form_is_accessible_every_field_has_a_label_and_groups_a_legend(sqlite_client):
    html = sqlite_client.get(form_link(book(sqlite_client))).get_data(as_text=True)
    assert '<html lang="en">' in html
    for field_id in ("member-id", "practice-npi", "visit-date", "diagnosis-code", "attester-name", "attested"):
        assert f'<label for="{field_id}">' in html
    assert html.count("<legend>") >= 7  # five groups, the yes/no and the choice questions


def test_an_invalid_submission_shows_each_problem_beside_its_item_and_stores_nothing(stored_app, client):
    card = book(client)
    fields = completed_fields(**{"practice-npi": "12345", "attester-name": "", "attested": ""})
    response = client.post(form_link(card), data=fields)
    assert response.status_code == 400
    html = unescape(response.get_data(as_text=True))
    assert "Please correct 3 answers" in html
    assert "Practice NPI (organization, 10 digits): write 10 digits" in html
    assert "Name of the person submitting: an answer is required" in html
    assert 'aria-invalid="true"' in html and 'value="12345"' in html  # what was typed is kept
    assert rows(stored_app) == []


def test_error_messages_say_the_expected_answer_in_words_never_a_regular_expression(sqlite_client):
    card = book(sqlite_client)
    fields = completed_fields(**{"practice-npi": "12345", "diagnosis-code": "back", "visit-date": "12/10/2026"})
    html = unescape(sqlite_client.post(form_link(card), data=fields).get_data(as_text=True))
    assert "Practice NPI (organization, 10 digits): write 10 digits" in html
    assert "Diagnosis (ICD-10-CM code, e.g. M54.50): write a code such as M54.50" in html
    assert "Planned date of the initial office visit: write a date such as 2026-12-31" in html
    assert "[0-9]" not in html and "^" not in html and "YYYY" not in html


def test_an_msc_date_typed_before_answering_no_is_not_an_answer(stored_app, client):
    file_on_form(client, book(client), **{"msc-date": "2026-10-01"})
    [row] = rows(stored_app)
    assert row["msc_date"] is None
    assert "msc-date" not in json.dumps(row["response"])


def test_msc_done_needs_its_date(sqlite_client):
    card = book(sqlite_client)
    response = sqlite_client.post(
        form_link(card), data=completed_fields(**{"msc-done": "true", "msc-not-done-reason": ""})
    )
    assert response.status_code == 400
    assert "Date of the MSC evaluation: an answer is required" in unescape(response.get_data(as_text=True))


def test_the_msc_notes_can_be_attached(stored_app, client):
    card = book(client)
    fields = completed_fields(**{"msc-done": "true", "msc-not-done-reason": "", "msc-date": "2026-10-01"})
    fields["msc-notes"] = (io.BytesIO(b"%PDF-1.4 MSC evaluation"), "msc-notes.pdf", "application/pdf")
    response = client.post(form_link(card), data=fields, content_type="multipart/form-data")
    assert response.status_code == 303
    [row] = rows(stored_app)
    assert '"title": "msc-notes.pdf"' in json.dumps(row["response"])


def test_submitting_the_same_form_twice_stores_one_record(stored_app, client):
    card = book(client)
    first, second = file_on_form(client, card), file_on_form(client, card)
    assert first == second
    assert len(rows(stored_app)) == 1


def test_the_form_link_key_is_required_when_jwts_are_and_must_be_long(settings, content):
    issuers = MappingProxyType({ISSUER: TrustedIssuer(ISSUER, (JWKS_URL,))})
    production = settings.model_copy(update=dict(require_jwt=True, trusted_issuers=issuers, form_signing_key=None))
    with pytest.raises(SettingsError, match="CDS_REQUIRE_JWT=true needs CDS_FORM_SIGNING_KEY"):
        create_app(production, content=content, clock=CLOCK)
    with pytest.raises(SettingsError, match="CDS_FORM_SIGNING_KEY: too short"):
        Settings.from_env({"CDS_FORM_SIGNING_KEY": "short"})
    # Development (no JWTs): the fixed development key signs, so `make run` needs no secret.
    assert settings.form_signing_key is None and settings.signing_key == DEVELOPMENT_FORM_KEY


def test_a_tampered_link_is_404_and_an_expired_one_410(sqlite_client, monkeypatch):
    link = form_link(book(sqlite_client))
    assert sqlite_client.get(link[:-3] + "xyz").status_code == 404
    signed_at = int(datetime.now(UTC).timestamp()) - 31 * 86400  # a link made 31 days ago (links last 30)
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: signed_at)
    old_link = form_link(book(sqlite_client))
    monkeypatch.undo()
    expired = sqlite_client.get(old_link)
    assert expired.status_code == 410 and "expired" in expired.get_data(as_text=True)
    assert sqlite_client.get(link).status_code == 200


def test_the_saved_record_is_shown_only_through_its_own_link(sqlite_client):
    first, second = book(sqlite_client), book(sqlite_client)
    record_id = file_on_form(sqlite_client, first)
    assert sqlite_client.get(f"{form_link(first)}/records/{record_id}").status_code == 200
    assert sqlite_client.get(f"{form_link(second)}/records/{record_id}").status_code == 404


def test_the_blank_form_is_printable_and_cannot_be_submitted(sqlite_client):
    page = sqlite_client.get("/prior-notification/form")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "This is the blank form" in html and "<form" not in html
    assert "@media print" in sqlite_client.get("/static/pn-form.css").get_data(as_text=True)


def test_the_database_down_answers_503_and_the_resubmitted_form_is_stored(settings, content, outage):
    app = create_app(settings.model_copy(update=dict(database_url=outage.url)), content=content, clock=CLOCK)
    client = app.test_client()
    card = book(client)
    outage.down()
    response = client.post(form_link(card), data=completed_fields())
    assert response.status_code == 503 and int(response.headers["Retry-After"]) > 0
    assert "NOT filed" in response.get_data(as_text=True)
    outage.up()
    assert rows(app) == []
    file_on_form(client, card)
    assert len(rows(app)) == 1
    services_of(app).close()


def test_form_contexts_expire_with_their_links(stored_app, client):
    book(client)
    with services_of(stored_app).storage.engine.connect() as connection:
        created, expires = connection.execute(
            select(pn_form_contexts.c.created_at, pn_form_contexts.c.expires_at)
        ).one()
    assert expires - created == timedelta(days=30)


# --- JSON submission -----------------------------------------------------------------------------------


def test_a_json_submission_is_stored_and_answered_201_then_200_when_resent(stored_app, client):
    response = client.post(RESPONSES, json=response_json())
    assert response.status_code == 201, response.get_json()
    stored = response.get_json()
    assert response.headers["Location"] == f"{BASE_URL}{RESPONSES}/{stored['id']}"
    QuestionnaireResponse.model_validate(stored)
    again = client.post(RESPONSES, data=json.dumps(response_json()), content_type="application/fhir+json")
    assert again.status_code == 200 and again.get_json()["id"] == stored["id"]
    [row] = rows(stored_app)
    assert (row["submitted_via"], row["msc_done"], row["msc_date"].isoformat()) == ("api", True, "2026-10-01")
    assert row["appointment_id"] is None


def with_answer(group: str, link_id: str, answer: dict) -> dict:
    body = response_json()
    next(g for g in body["item"] if g["linkId"] == group)["item"].append({"linkId": link_id, "answer": [answer]})
    return body


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (response_json(**{"practice-npi": "12345"}), "item 'practice-npi' (Practice NPI (organization, 10 digits))"),
        (
            response_json(**{"attester-name": None}),
            "item 'attester-name' (Name of the person submitting): an answer is required",
        ),
        (response_json(**{"msc-date": None}), "item 'msc-date' (Date of the MSC evaluation): an answer is required"),
        (
            response_json(**{"visit-date": "10/12/2026"}),
            "item 'visit-date' (Planned date of the initial office visit): must be a date written YYYY-MM-DD",
        ),
        (
            response_json(**{"surgeon-specialty": {"system": "x", "code": "y"}}),
            "item 'surgeon-specialty' (Surgeon's specialty): must be one of its options",
        ),
        (response_json(**{"attested": {"system": "urn:lbp-cds:prior-notification", "code": "no"}}), "item 'attested'"),
        (
            {**response_json(), "questionnaire": "http://example.org/Questionnaire/other"},
            "questionnaire must be the canonical URL",
        ),
        ({**response_json(), "status": "in-progress"}, "status must be completed"),
        ({**response_json(), "subject": {"reference": "Group/1"}}, "subject must reference the patient"),
        ({**response_json(), "item": [{"linkId": "nope"}]}, "item[0]: its linkId is not an item here"),
        ({**response_json(), "status": {"not": "a code"}}, "status must be completed"),
        (
            with_answer("msc", "msc-notes", {"valueAttachment": {"contentType": ["application/pdf"], "data": "eA=="}}),
            "item 'msc-notes' (MSC evaluation notes (PDF, JPEG or PNG)): contentType must be",
        ),
        ({"resourceType": "Patient"}, "must be a FHIR QuestionnaireResponse"),
    ],
    ids=[
        "npi",
        "missing",
        "conditional",
        "date",
        "option",
        "attestation",
        "questionnaire",
        "status",
        "subject",
        "unknown",
        "status-object",
        "attachment-type-list",
        "not-qr",
    ],
)
def test_an_invalid_json_submission_is_400_naming_the_item(stored_app, client, body, message):
    response = client.post(RESPONSES, json=body)
    assert response.status_code == 400
    assert message in response.get_json()["issue"][0]["diagnostics"]
    assert rows(stored_app) == []


def test_a_refusal_names_the_item_but_never_echoes_the_value_sent(sqlite_client):
    secret = "Wilhelmina-Q-Public-1953"
    body = response_json(**{"practice-npi": secret, "visit-date": secret})
    body["item"].append({"linkId": secret})
    message = sqlite_client.post(RESPONSES, json=body).get_json()["issue"][0]["diagnostics"]
    assert "practice-npi" in message and "visit-date" in message and "its linkId is not an item here" in message
    assert secret not in message
    for query in (f"_count={secret}", f"_lastUpdated={secret}", "_lastUpdated=ge2026-02-31"):
        refused = sqlite_client.get(f"{RESPONSES}?{query}")
        assert refused.status_code == 400 and secret not in refused.get_data(as_text=True)


def test_a_json_submission_must_be_json(sqlite_client):
    assert sqlite_client.post(RESPONSES, data="x", content_type="text/plain").status_code == 415
    assert sqlite_client.post(RESPONSES, data="{", content_type="application/fhir+json").status_code == 400


def test_the_database_down_answers_503_and_the_retried_json_is_stored(settings, content, outage):
    app = create_app(settings.model_copy(update=dict(database_url=outage.url)), content=content, clock=CLOCK)
    client = app.test_client()
    outage.down()
    response = client.post(RESPONSES, json=response_json())
    assert response.status_code == 503 and int(response.headers["Retry-After"]) > 0
    assert response.get_json()["issue"][0]["code"] == "transient"
    outage.up()
    assert rows(app) == []  # nothing acknowledged, nothing half-stored
    assert client.post(RESPONSES, json=response_json()).status_code == 201
    assert len(rows(app)) == 1
    services_of(app).close()


def test_a_json_submission_makes_the_next_booking_find_the_pn(sqlite_client):
    hooks = Hooks(sqlite_client)
    body = adult_with_lbp().appointment_book(appointment())
    assert hooks.book(body)[0]["source"]["topic"]["code"] == "prior-notification-required"
    assert sqlite_client.post(RESPONSES, json=response_json()).status_code == 201
    assert [c["source"]["topic"]["code"] for c in hooks.book(body)] == ["msc-evaluation-first"]


# --- who may submit and read (JWTs) --------------------------------------------------------------------

OTHER_EHR = "https://other-ehr.example.net"
PLAN_STAFF = "https://staff.plan.example.org"
OTHER_JWKS = "https://other-ehr.example.net/jwks"
STAFF_JWKS = "https://staff.plan.example.org/jwks"


@pytest.fixture
def keys():
    return {ISSUER: make_key(), OTHER_EHR: make_key(), PLAN_STAFF: make_key()}


@pytest.fixture
def secure(settings, content, database_url, keys):
    issuers = {
        ISSUER: TrustedIssuer(ISSUER, (JWKS_URL,), frozenset({TENANT})),
        OTHER_EHR: TrustedIssuer(OTHER_EHR, (OTHER_JWKS,)),
        PLAN_STAFF: TrustedIssuer(PLAN_STAFF, (STAFF_JWKS,)),
    }
    production = dict(
        require_jwt=True,
        trusted_issuers=MappingProxyType(issuers),
        form_signing_key=FORM_KEY,
        pn_reader_issuers=(PLAN_STAFF,),
        database_url=migrated(database_url),
    )
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        for issuer, url in ((ISSUER, JWKS_URL), (OTHER_EHR, OTHER_JWKS), (PLAN_STAFF, STAFF_JWKS)):
            mock.get(url, json=jwks(keys[issuer]))
        app = create_app(settings.model_copy(update=production), content=content, clock=CLOCK)
        yield app.test_client()
        services_of(app).close()


def as_(keys, issuer: str, path: str) -> dict[str, str]:
    tenant = TENANT if issuer == ISSUER else None
    return bearer(token_for(keys[issuer], path.split("?")[0], iss=issuer, tenant=tenant))


def test_a_json_submission_needs_the_ehrs_jwt(secure, keys):
    assert secure.post(RESPONSES, json=response_json()).status_code == 401
    response = secure.post(RESPONSES, json=response_json(), headers=as_(keys, ISSUER, RESPONSES))
    assert response.status_code == 201


def test_an_ehr_reads_only_what_it_filed_and_the_plans_staff_read_everything(secure, keys):
    mine = secure.post(RESPONSES, json=response_json(), headers=as_(keys, ISSUER, RESPONSES)).get_json()["id"]
    theirs = secure.post(RESPONSES, json=response_json(), headers=as_(keys, OTHER_EHR, RESPONSES)).get_json()["id"]
    assert mine != theirs  # the same answers from two EHRs are two notifications

    def read(issuer: str, path: str):
        return secure.get(path, headers=as_(keys, issuer, path))

    assert read(ISSUER, f"{RESPONSES}/{mine}").status_code == 200
    assert read(ISSUER, f"{RESPONSES}/{theirs}").status_code == 404
    assert read(PLAN_STAFF, f"{RESPONSES}/{theirs}").status_code == 200
    assert secure.get(f"{RESPONSES}/{mine}").status_code == 401
    # Each version of a record (FHIR vread) is read as the record is.
    assert read(ISSUER, f"{RESPONSES}/{mine}/_history/1").get_json()["meta"]["versionId"] == "1"
    assert read(ISSUER, f"{RESPONSES}/{theirs}/_history/1").status_code == 404
    assert read(PLAN_STAFF, f"{RESPONSES}/{theirs}/_history/1").status_code == 200
    assert secure.get(f"{RESPONSES}/{mine}/_history/1").status_code == 401
    own = read(ISSUER, f"{RESPONSES}?patient=p1").get_json()
    assert own["resourceType"] == "Bundle" and own["type"] == "searchset"
    assert [e["resource"]["id"] for e in own["entry"]] == [mine]
    everything = read(PLAN_STAFF, f"{RESPONSES}?patient=p1").get_json()
    assert {e["resource"]["id"] for e in everything["entry"]} == {mine, theirs}
    assert everything["entry"][0]["fullUrl"].startswith(f"{BASE_URL}{RESPONSES}/")


def test_the_records_search_takes_dates_and_a_count(sqlite_client):
    for visit in ("2026-12-10", "2026-12-11", "2026-12-12"):
        assert sqlite_client.post(RESPONSES, json=response_json(**{"visit-date": visit})).status_code == 201
    today = datetime.now(UTC).date().isoformat()
    assert sqlite_client.get(f"{RESPONSES}?_lastUpdated=ge{today}").get_json()["total"] == 3
    assert sqlite_client.get(f"{RESPONSES}?_lastUpdated=le2020-01-01").get_json()["total"] == 0
    first = sqlite_client.get(f"{RESPONSES}?_count=2").get_json()
    assert first["total"] == 3 and len(first["entry"]) == 2  # total: every match; the page: _count of them
    [following] = [link["url"] for link in first["link"] if link["relation"] == "next"]
    last = sqlite_client.get(following.removeprefix(BASE_URL)).get_json()
    assert len(last["entry"]) == 1 and not [link for link in last["link"] if link["relation"] == "next"]
    assert sqlite_client.get(f"{RESPONSES}?patient=p2").get_json()["total"] == 0
    for bad in ("_count=0", "_lastUpdated=2026", "status=completed", "_offset=-1", "_offset=1e3"):
        assert sqlite_client.get(f"{RESPONSES}?{bad}").status_code == 400, bad


# --- the export ----------------------------------------------------------------------------------------


def test_pn_export_writes_every_record_as_csv_oldest_first(stored_app, client):
    file_on_form(client, book(client), **{"attester-name": '=HYPERLINK("http://x")'})
    assert client.post(RESPONSES, json=response_json(**{"member-id": "M999"})).status_code == 201
    result = stored_app.test_cli_runner().invoke(args=["pn-export"])
    assert result.exit_code == 0, result.output
    table = list(csv.DictReader(io.StringIO(result.output)))
    assert [r["submitted_via"] for r in table] == ["web-form", "api"]
    assert [r["member_id"] for r in table] == ["M123456", "M999"]
    first = table[0]
    assert (first["patient_id"], first["appointment_id"], first["practice_npi"], first["msc_done"]) == (
        "p1",
        "apt-1",
        "1407071236",
        "false",
    )
    assert first["attester_name"].startswith("'=HYPERLINK")  # a spreadsheet shows it, never runs it
    assert first["submitted_at"].endswith("Z")


def test_pn_export_takes_a_date_range_and_an_output_file(stored_app, client, tmp_path):
    assert client.post(RESPONSES, json=response_json()).status_code == 201
    runner = stored_app.test_cli_runner()
    today = CLOCK.today()  # the filing day, in the program's time zone
    out = tmp_path / "pn.csv"
    result = runner.invoke(args=["pn-export", "--since", today.isoformat(), "--output", str(out)])
    assert result.exit_code == 0 and "1 Prior Notification(s) written" in result.output
    assert len(out.read_text().splitlines()) == 2
    before = runner.invoke(args=["pn-export", "--until", (today - timedelta(days=1)).isoformat()])
    assert before.output.splitlines() == [before.output.splitlines()[0]]  # the header alone
    assert runner.invoke(args=["pn-export", "--since", "2026-02-01", "--until", "2026-01-01"]).exit_code == 2


def test_pn_export_with_the_database_down_says_so(settings, content, outage):
    app = create_app(settings.model_copy(update=dict(database_url=outage.url)), content=content, clock=CLOCK)
    outage.down()
    result = app.test_cli_runner().invoke(args=["pn-export"])
    outage.up()
    services_of(app).close()
    if outage.kind == "sqlite":
        assert result.exit_code == 0  # a locked SQLite file still reads
    else:
        assert result.exit_code == 1 and "cannot be read right now" in result.output


def test_the_stored_table_counts_one_row_per_notification(stored_app, client):
    assert client.post(RESPONSES, json=response_json()).status_code == 201
    with services_of(stored_app).storage.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(prior_notifications)).scalar() == 1


# --- input the records' storage cannot hold (found on review: each was a 500) ---------------------------


def test_a_submission_nested_too_deeply_is_400_and_nothing_is_stored(stored_app, client):
    body = response_json()
    body["extension"] = json.loads("[" * 600 + "]" * 600)
    response = client.post(RESPONSES, json=body)
    assert response.status_code == 400
    assert "nested more than 64 levels" in response.get_json()["issue"][0]["diagnostics"]
    assert rows(stored_app) == []


def test_a_nul_character_in_an_answer_is_refused_naming_the_item(stored_app, client):
    refused = client.post(RESPONSES, json=response_json(**{"member-name": "Pat\x00Doe"}))
    assert refused.status_code == 400
    assert "member-name" in refused.get_json()["issue"][0]["diagnostics"]
    typed = client.post(form_link(book(client)), data=completed_fields(**{"attester-name": "Ann\x00"}))
    assert typed.status_code == 400
    assert "must not hold a NUL character" in unescape(typed.get_data(as_text=True))
    assert rows(stored_app) == []


def test_a_search_or_read_naming_no_possible_record_is_refused_without_asking_the_database(stored_app, client):
    assert client.post(RESPONSES, json=response_json()).status_code == 201
    for patient in ("%00", "a" * 65, "p1%2Fx"):
        refused = client.get(f"{RESPONSES}?patient={patient}")
        assert refused.status_code == 400 and "patient:" in refused.get_json()["issue"][0]["diagnostics"]
    for record_id in ("%00", "not-a-record", "00000000-0000-0000-0000-00000000000G"):
        assert client.get(f"{RESPONSES}/{record_id}").status_code == 404
    assert client.get(f"{RESPONSES}?_count=%C2%B2").status_code == 400  # "²" is a digit to str.isdigit


def test_the_last_day_of_the_calendar_is_a_date_range_end_like_any_other(stored_app, client):
    assert client.post(RESPONSES, json=response_json()).status_code == 201
    assert client.get(f"{RESPONSES}?_lastUpdated=le9999-12-31").get_json()["total"] == 1
    assert client.get(f"{RESPONSES}?_lastUpdated=ge9999-12-31").get_json()["total"] == 0
    exported = stored_app.test_cli_runner().invoke(args=["pn-export", "--until", "9999-12-31"])
    assert exported.exit_code == 0 and len(exported.output.splitlines()) == 2
    reported = stored_app.test_cli_runner().invoke(args=["feedback-report", "--until", "9999-12-31"])
    assert reported.exit_code == 0, reported.output


def test_an_appointment_book_call_whose_patient_id_is_no_fhir_id_is_400(sqlite_client):
    request = adult_with_lbp().appointment_book(appointment(aid="apt-1"))
    request["context"]["patientId"] = "p" * 65
    refused = sqlite_client.post("/cds-services/lbp-appointment-book", json=request)
    assert refused.status_code == 400
    assert "context/patientId" in refused.get_json()["issue"][0]["diagnostics"]
