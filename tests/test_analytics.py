"""Issue 19's analytics: what is recorded of each hook call (no PHI), the dashboard pages on demo data, CSV
suppression, marking comments read, demo-data and retention commands."""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import shlex
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from cds_service.app import create_app
from cds_service.observability.logs import json_formatter
from cds_service.pipeline.analytics import judgement_of
from cds_service.pipeline.clock import FixedClock
from cds_service.storage.database import call_days, card_days, clinician_days, feedback, issued_cards
from cds_service.web import hook_path
from cds_service.wiring import services_of
from hooks.decisions import (
    AT_BOOKING,
    MSC_EVALUATION_FIRST,
    PRIOR_NOTIFICATION_REQUIRED,
    Decision,
)
from hooks.model import Appointment
from hooks.policy import Suspension
from tests.builders import CPT, medication_request, patient
from tests.clinical_date import CLOCK, EXAMPLES, EXAMPLES_AS_OF, TODAY
from tests.conftest import private_settings
from tests.databases import migrated, postgres_schema
from tests.docs_snippets import Snippet, snippet
from tests.test_staff_sign_in import production

PATIENT_VIEW = "/cds-services/lbp-patient-view"
CLINICIAN_KEY = "k" * 40
NOT_APPLICABLE = {
    "code": "cds-not-applicable",
    "system": "http://terminology.hl7.org/CodeSystem/non-adherence-reason-codes",
}
PAGES = ("", "/outcomes", "/overrides", "/timing", "/versions")


# --------------------------------------------------------------------------
# Recording
# --------------------------------------------------------------------------


@pytest.fixture
def recording_app(settings, content, database_url):
    values = dict(
        database_url=migrated(database_url), clinician_key=SecretStr(CLINICIAN_KEY), clinician_key_id="2026-12"
    )
    app = create_app(settings.model_copy(update=values), content=content, clock=CLOCK)
    yield app
    services_of(app).close()


def issue(client, body: dict) -> list[dict]:
    cards = client.post(PATIENT_VIEW, json=body).get_json()["cards"]
    services_of(client.application).issued_cards.flush()
    return cards


def rows(app, table) -> list[dict]:
    with services_of(app).storage.engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(select(table))]


def test_a_record_that_cannot_be_made_costs_a_line_not_the_answer(recording_app, monkeypatch, caplog):
    value = "-".join(("patient", "4711"))  # not in the source line a traceback shows

    def broken(*_args: object) -> None:
        raise KeyError(value)

    monkeypatch.setattr(hook_path, "hook_call_record", broken)
    client = recording_app.test_client()
    with caplog.at_level(logging.ERROR, logger="lbp_cds"):
        response = client.post(PATIENT_VIEW, json=patient(45).with_lbp().patient_view())
    services_of(recording_app).issued_cards.flush()
    assert response.status_code == 200 and response.get_json()["cards"]
    assert "hook call not recorded (analytics record could not be made)" in caplog.text
    lines = [json_formatter().format(record) for record in caplog.records]  # as production writes them
    assert lines and not any(value in line for line in lines)  # the exception's message is never logged
    assert rows(recording_app, issued_cards) == []


def test_each_card_records_hook_judgement_suggestion_kinds_and_a_pseudonym_without_phi(recording_app):
    client = recording_app.test_client()
    record = patient(45).with_lbp()
    body = record.patient_view()
    [card] = issue(client, body)
    [stored] = rows(recording_app, issued_cards)
    assert (stored["hook"], stored["topic"], stored["judgement"]) == (
        "patient-view",
        "physical-therapy-first-line",
        "pt-first-line",
    )
    labels = {s["uuid"]: s["label"] for s in card["suggestions"]}
    kinds = {labels[uuid]: kind for uuid, kind in stored["suggestion_kinds"].items()}
    assert kinds["Add a physical therapy referral"] == "pt-referral"
    assert set(kinds.values()) <= {"pt-referral", "cbt-referral"} and len(kinds) == len(labels)
    assert stored["clinician_key_id"] == "2026-12"
    assert re.fullmatch(r"[0-9a-f]{32}", stored["clinician_key"])
    assert "dr-1" not in stored["clinician_key"]
    # Nothing of the patient is stored with the card.
    assert body["context"]["patientId"] not in str(stored)
    # The same clinician is the same pseudonym; a call that issues no card is still a call of the day.
    issue(client, body)
    issue(client, patient(45).patient_view())  # no LBP: no card
    keys = {row["clinician_key"] for row in rows(recording_app, issued_cards)}
    assert keys == {stored["clinician_key"]}
    [calls] = rows(recording_app, call_days)
    assert (calls["service_id"], calls["hook"], calls["calls"]) == ("lbp-patient-view", "patient-view", 3)
    assert [r["cards"] for r in rows(recording_app, card_days)] == [2]
    assert [r["cards"] for r in rows(recording_app, clinician_days)] == [2]
    # Feedback records the kind of the suggestion taken and when its card was issued.
    accepted = {"card": card["uuid"], "outcome": "accepted", "outcomeTimestamp": "2026-05-01T09:00:00Z"}
    accepted["acceptedSuggestions"] = [{"id": card["suggestions"][0]["uuid"]}]
    assert client.post(PATIENT_VIEW + "/feedback", json={"feedback": [accepted]}).status_code == 200
    [entry] = rows(recording_app, feedback)
    assert entry["accepted_kind"] == "pt-referral"
    assert entry["card_issued_at"] == stored["issued_at"]


def test_without_a_clinician_key_no_pseudonym_is_recorded(app):
    client = app.test_client()
    record = patient(45).with_lbp().with_medication(medication_request(status="active"))
    issue(client, record.with_procedure((CPT, "97161"), days=30).patient_view())
    stored = rows(app, issued_cards)
    assert stored and {row["clinician_key"] for row in stored} == {None}
    assert {row["judgement"] for row in stored} == {"opioid-sparing"}
    assert {kind for row in stored for kind in row["suggestion_kinds"].values()} == {"pt-referral", "cbt-referral"}


def test_the_judgements_name_what_the_rules_decided():
    msc = Decision(MSC_EVALUATION_FIRST)
    assert judgement_of(msc, (msc,)) == "msc-applies"
    suspended = Decision(MSC_EVALUATION_FIRST, suspension=Suspension(TODAY, None, "policy"))
    assert judgement_of(suspended, (suspended,)) == "suspended"
    for basis, label in (("medicare-advantage", "exempt-medicare-advantage"), ("no-msc-access", "outside-regions")):
        decision = Decision(PRIOR_NOTIFICATION_REQUIRED, basis=basis)
        assert judgement_of(decision, (decision,)) == label
    visit = Appointment(id="a1")
    at_booking = Decision(MSC_EVALUATION_FIRST, appointment=visit, variant=AT_BOOKING)
    pn_card = Decision(PRIOR_NOTIFICATION_REQUIRED, appointment=visit, variant=AT_BOOKING)
    assert judgement_of(at_booking, (pn_card, at_booking)) == "pn-missing"
    assert judgement_of(at_booking, (at_booking,)) == "pn-on-file"


# --------------------------------------------------------------------------
# The dashboard on demo data (SQLite and PostgreSQL)
# --------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def demo_app(request, tmp_path_factory, content):
    """A development app whose database `flask demo-data` filled (a year ending on the tests' today)."""
    tmp_path = tmp_path_factory.mktemp("analytics")
    if request.param == "sqlite":
        yield from demo(tmp_path, content, f"sqlite:///{tmp_path}/demo.sqlite3")
    else:
        with postgres_schema() as url:
            yield from demo(tmp_path, content, url)


def demo(tmp_path, content, url):
    settings = private_settings(tmp_path, database_url=migrated(url), require_jwt=False)
    app = create_app(settings, content=content, clock=CLOCK)
    result = app.test_cli_runner().invoke(args=documented_command(snippet("analytics-demo-data")))
    assert result.exit_code == 0, result.output
    assert "Demo data written: a year of" in result.output
    yield app
    services_of(app).close()


def documented_command(recipe: Snippet) -> list[str]:
    """The `lbp-cds` command of one of the analytics page's recipes, as the Flask CLI's arguments."""
    words = shlex.split(recipe.text, comments=True)
    assert words[0] == "lbp-cds", words
    return words[1:]


YEAR = f"from={TODAY - timedelta(days=364)}&to={TODAY}"


@pytest.mark.parametrize("page", PAGES)
def test_every_page_answers_in_development(demo_app, page):
    response = demo_app.test_client().get(f"/analytics{page}?{YEAR}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "<svg" in html and 'role="img"' in html
    assert "<script" not in html and " style=" not in html  # the strict CSP: nothing inline


def test_the_topic_that_stopped_firing_is_an_alarm_saying_since_when(demo_app):
    html = demo_app.test_client().get(f"/analytics?{YEAR}").get_data(as_text=True)
    stopped_since = TODAY - timedelta(days=364) + timedelta(days=300)
    row = re.search(r"<tr>(?:(?!</tr>).)*stopped firing(?:(?!</tr>).)*</tr>", html, re.S)
    assert row, "no stopped-firing alarm shown"
    assert "lbp-referral-sign · opioid-sparing-alternatives" in row.group(0)
    assert f"no card since {stopped_since}" in row.group(0)
    assert re.search(r"expected \d+\.\d", row.group(0))
    # and the chart's description says it too
    assert f"opioid-sparing-alternatives: stopped firing: no card since {stopped_since}" in html


def test_an_ehr_that_sends_no_feedback_shows_zero_coverage(demo_app):
    response = demo_app.test_client().get(f"/analytics/outcomes.csv?{YEAR}&table=coverage")
    by_ehr = {row["EHR (issuer | tenant)"]: row for row in csv.DictReader(io.StringIO(response.get_data(as_text=True)))}
    assert by_ehr["https://river-family.demo.invalid"]["With any feedback"] == "0"
    assert float(by_ehr["https://north-health.demo.invalid | north-clinics"]["Coverage"]) > 0.5


def test_csv_exports_suppress_counts_from_1_to_10_the_page_shows_them(demo_app):
    client = demo_app.test_client()
    one_day = f"from={TODAY}&to={TODAY}&topic=red-flag-review"
    exported = client.get(f"/analytics/outcomes.csv?{one_day}&table=outcomes")
    assert exported.status_code == 200 and exported.mimetype == "text/csv"
    [row] = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))
    with services_of(demo_app).storage.engine.connect() as connection:
        issued = connection.scalar(
            select(func.sum(card_days.c.cards)).where(card_days.c.day == TODAY, card_days.c.topic == "red-flag-review")
        )
    assert 1 <= issued <= 10  # the seeded red-flag card is rare: a small cell
    assert row["Issued"] == "<11"
    assert row["Accepted share"] == "<11" and row["95 % interval"] == "<11"
    page = client.get(f"/analytics/outcomes?{one_day}").get_data(as_text=True)
    assert f'<td class="num">{issued}</td>' in page
    assert 'class="small"' in page  # n < 20: greyed


def test_filters_are_checked(demo_app):
    client = demo_app.test_client()
    assert client.get("/analytics?from=yesterday").status_code == 400
    assert client.get(f"/analytics?from={TODAY}&to={TODAY - timedelta(days=1)}").status_code == 400
    assert client.get("/analytics?service=no-such-service").status_code == 400
    assert client.get("/analytics/no-such-page").status_code == 404
    assert client.get("/analytics/outcomes.csv?table=no-such-table").status_code == 404
    ehr = "https://lakes-medical.demo.invalid | lakes"
    html = client.get("/analytics/outcomes", query_string={"ehr": ehr}).get_data(as_text=True)
    assert "north-health" not in html.split("<section", 1)[1]


def test_comments_are_marked_read_by_a_post_with_the_csrf_token(demo_app):
    client = demo_app.test_client()
    page = client.get(f"/analytics/overrides?{YEAR}").get_data(as_text=True)
    unread = int(re.search(r"(\d+) unread in this period", page).group(1))
    first = re.search(r'name="comment" value="(\d+)"', page).group(1)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    without_token = client.post("/analytics/comments/read", data={"comment": first})
    assert without_token.status_code in (400, 403)
    answer = client.post(f"/analytics/comments/read?{YEAR}", data={"comment": first, "csrf_token": token})
    assert answer.status_code == 303 and "/analytics/overrides?" in answer.headers["Location"]
    page = client.get(f"/analytics/overrides?{YEAR}").get_data(as_text=True)
    assert f"{unread - 1} unread in this period" in page
    assert f'name="comment" value="{first}"' not in page
    everything = client.get(f"/analytics/overrides?{YEAR}&comments=all").get_data(as_text=True)
    assert "read</td>" in everything


# --------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------


def test_demo_data_refuses_a_database_with_real_cards(app):
    issue(app.test_client(), patient(45).with_lbp().patient_view())  # a development call: no JWT, a real card
    result = app.test_cli_runner().invoke(args=["demo-data"])
    assert result.exit_code != 0
    assert "already holds issued cards from real EHRs" in result.output
    assert len(rows(app, issued_cards)) == 1


def test_retention_deletes_what_is_older_than_the_setting(tmp_path, content):
    settings = private_settings(tmp_path, require_jwt=False, analytics_retention_days=30)
    app = create_app(settings, content=content, clock=CLOCK)
    client = app.test_client()
    issue(client, patient(45).with_lbp().patient_view())
    storage = services_of(app).storage
    old = datetime.now(UTC) - timedelta(days=31)
    with storage.engine.begin() as connection:
        connection.execute(issued_cards.update().values(issued_at=old))
        connection.execute(call_days.update().values(day=old.date()))
    result = app.test_cli_runner().invoke(args=documented_command(snippet("analytics-retention")))
    assert result.exit_code == 0, result.output
    assert "Kept the last 30 days; deleted 1 issued cards" in result.output
    assert rows(app, issued_cards) == [] and rows(app, call_days) == []
    assert len(rows(app, card_days)) == 1  # today's count is within the 30 days


def test_in_production_without_sign_in_every_analytics_url_reveals_nothing(demo_app, content):
    demo_settings = services_of(demo_app).settings
    app = create_app(production(demo_settings, public_base_url="https://cds.example.org"), content=content, clock=CLOCK)
    client = app.test_client()
    urls = [f"/analytics{page}?{YEAR}" for page in PAGES] + [f"/analytics/outcomes.csv?{YEAR}&table=coverage"]
    for url in urls:
        for accept in ("text/html", "*/*"):
            response = client.get(url, headers={"Accept": accept})
            assert response.status_code in (302, 401), url
            assert "demo.invalid" not in response.get_data(as_text=True)
            assert "lbp-referral-sign" not in response.get_data(as_text=True)
    assert client.post("/analytics/comments/read", data={"comment": "1"}).status_code in (302, 401, 403)
    services_of(app).close()


def test_the_stopped_topic_is_a_prometheus_metric(demo_app):
    text = demo_app.test_client().get("/metrics").get_data(as_text=True)
    stopped = 'lbp_analytics_topic_stopped{service="lbp-referral-sign",topic="opioid-sparing-alternatives"} 1.0'
    assert stopped in text
    assert 'lbp_analytics_topic_stopped{service="lbp-patient-view",topic="physical-therapy-first-line"} 0.0' in text
    assert "lbp_analytics_alarms_evaluated_timestamp_seconds" in text


def test_a_card_is_counted_once_whatever_the_feedback_entries_about_it(recording_app):
    client = recording_app.test_client()
    [card] = issue(client, patient(45).with_lbp().patient_view())
    overridden = {"card": card["uuid"], "outcome": "overridden", "overrideReason": {"reason": NOT_APPLICABLE}}
    entries = [
        {**overridden, "outcomeTimestamp": "2026-05-01T09:00:00Z"},
        {**overridden, "outcomeTimestamp": "2026-05-01T09:05:00Z"},  # sent again, later: the same override
        {
            "card": card["uuid"],
            "outcome": "accepted",
            "outcomeTimestamp": "2026-05-01T09:10:00Z",
            "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}],
        },
    ]
    assert client.post(PATIENT_VIEW + "/feedback", json={"feedback": entries}).status_code == 200
    flags = sorted((r["outcome"], r["first_of_card"], r["first_of_outcome"]) for r in rows(recording_app, feedback))
    assert flags == [("accepted", False, True), ("overridden", False, False), ("overridden", True, True)]
    today = datetime.now(UTC).date()
    html = recording_app.test_client().get(f"/analytics/outcomes?from={today}&to={today}").get_data(as_text=True)
    row = re.search(r"<tr[^>]*><td>lbp-patient-view</td><td>physical-therapy-first-line</td>(.*?)</tr>", html, re.S)
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", row.group(1))
    # issued 1, accepted 1, share, interval, overridden 1, share, interval, no feedback 0
    assert [cells[0], cells[1], cells[4], cells[7]] == ["1", "1", "1", "0"]


def test_the_one_click_swap_to_the_msc_is_recorded_as_msc_swap(settings, content):
    values = dict(clinician_key=SecretStr(CLINICIAN_KEY))
    app = create_app(settings.model_copy(update=values), content=content, clock=FixedClock(EXAMPLES_AS_OF))
    client = app.test_client()
    body = json.loads((EXAMPLES / "baseline-lbp-referral.json").read_text(encoding="utf-8"))
    [card] = client.post("/cds-services/lbp-referral-select", json=body).get_json()["cards"]
    services_of(app).issued_cards.flush()
    [stored] = rows(app, issued_cards)
    assert (stored["hook"], stored["judgement"]) == ("order-select", "msc-applies")
    swap = next(s for s in card["suggestions"] if {a["type"] for a in s["actions"]} == {"delete", "create"})
    assert stored["suggestion_kinds"][swap["uuid"]] == "msc-swap"
    accepted = {"card": card["uuid"], "outcome": "accepted", "outcomeTimestamp": "2026-05-01T09:00:00Z"}
    accepted["acceptedSuggestions"] = [{"id": swap["uuid"]}]
    assert client.post("/cds-services/lbp-referral-select/feedback", json={"feedback": [accepted]}).status_code == 200
    assert [r["accepted_kind"] for r in rows(app, feedback)] == ["msc-swap"]
    services_of(app).close()
