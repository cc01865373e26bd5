"""`flask --app wsgi feedback-report`: per service and topic, issued, accepted, overridden, rate, reasons."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest

from cds_service.app import create_app
from cds_service.storage.database import IssuedCard, issued_cards
from cds_service.wiring import services_of
from tests.builders import CPT, medication_request, patient
from tests.clinical_date import CLOCK
from tests.databases import migrated

SERVICE = "/cds-services/lbp-patient-view"
NOT_APPLICABLE = {
    "code": "cds-not-applicable",
    "system": "http://terminology.hl7.org/CodeSystem/non-adherence-reason-codes",
}


@pytest.fixture
def app(settings, content, database_url):
    app = create_app(
        settings.model_copy(update=dict(database_url=migrated(database_url))), content=content, clock=CLOCK
    )
    yield app
    services_of(app).close()


def issue(client, opioid: bool = False) -> dict:
    record = patient(45).with_lbp()
    if opioid:  # with PT last month: the opioid card comes alone, with its PT and CBT suggestions
        record = record.with_medication(medication_request(status="active")).with_procedure((CPT, "97161"), days=30)
    cards = client.post(SERVICE, json=record.patient_view()).get_json()["cards"]
    services_of(client.application).issued_cards.flush()
    return cards[-1 if opioid else 0]


def feedback(client, card: dict, outcome: str, when: str, reason: dict | None = None) -> None:
    item = {"card": card["uuid"], "outcome": outcome, "outcomeTimestamp": when}
    if outcome == "accepted":
        item["acceptedSuggestions"] = [{"id": card["suggestions"][0]["uuid"]}]
    if reason:
        item["overrideReason"] = reason
    assert client.post(SERVICE + "/feedback", json={"feedback": [item]}).status_code == 200


def report(app, *args: str) -> str:
    result = app.test_cli_runner().invoke(args=["feedback-report", *args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def history(app):
    """Five PT cards and one opioid card issued; feedback over two days."""
    client = app.test_client()
    pt = [issue(client) for _ in range(5)]
    opioid = issue(client, opioid=True)
    feedback(client, pt[0], "accepted", "2026-05-01T09:00:00Z")
    feedback(client, pt[1], "overridden", "2026-05-01T10:00:00Z", {"reason": NOT_APPLICABLE})  # no display
    feedback(client, pt[2], "overridden", "2026-05-02T10:00:00Z", {"reason": NOT_APPLICABLE, "userComment": "x"})
    feedback(
        client, pt[3], "overridden", "2026-05-02T11:00:00Z", {"code": "other", "system": "urn:lbp-cds:override-reason"}
    )
    feedback(client, opioid, "accepted", "2026-05-02T12:00:00Z")
    return app


def test_csv_report_per_service_and_topic(history):
    rows = list(csv.DictReader(io.StringIO(report(history, "--csv"))))
    by_topic = {row["topic"]: row for row in rows}
    pt = by_topic["physical-therapy-first-line"]
    assert (pt["service"], pt["issued"], pt["accepted"], pt["overridden"]) == ("lbp-patient-view", "5", "1", "3")
    assert pt["acceptance_rate"] == "0.2500"
    # the reason sent without a display is shown with the display the card offered
    assert pt["top_override_reasons"] == "Does not apply to this patient (2); Other reason (1)"
    opioid = by_topic["opioid-sparing-alternatives"]
    assert (opioid["issued"], opioid["accepted"], opioid["overridden"], opioid["acceptance_rate"]) == (
        "1",
        "1",
        "0",
        "1.0000",
    )


def test_text_report_is_a_table(history):
    lines = report(history).splitlines()
    assert lines[0].split()[:3] == ["service", "topic", "issued"]
    assert set(lines[1]) <= {"-", " "}
    pt = next(line for line in lines if "physical-therapy-first-line" in line)
    assert pt.split()[:7] == ["lbp-patient-view", "physical-therapy-first-line", "5", "1", "3", "25%", "Does"]


def test_date_range_selects_feedback_by_outcome_timestamp(history):
    rows = list(csv.DictReader(io.StringIO(report(history, "--csv", "--since", "2026-05-02", "--until", "2026-05-02"))))
    feedback_rows = {row["topic"]: (row["accepted"], row["overridden"]) for row in rows}
    assert feedback_rows == {"physical-therapy-first-line": ("0", "2"), "opioid-sparing-alternatives": ("1", "0")}
    # The cards were issued today, not in May 2026: those with feedback in the period count as issued,
    # so a row with feedback never says 0 issued.
    assert {row["topic"]: row["issued"] for row in rows} == {
        "physical-therapy-first-line": "2",
        "opioid-sparing-alternatives": "1",
    }


def test_empty_period(history):
    assert report(history, "--until", "2000-01-01") == "No cards issued and no feedback in this period.\n"


def test_since_after_until_is_refused(history):
    result = history.test_cli_runner().invoke(
        args=["feedback-report", "--since", "2026-05-02", "--until", "2026-05-01"]
    )
    assert result.exit_code == 2
    assert "--since is after --until" in result.output


def test_feedback_that_arrived_before_its_issue_record_gets_its_topic(app):
    """Feedback sent to one replica about a card another replica has not recorded yet."""
    client = app.test_client()
    card = issue(client)
    storage = services_of(app).storage
    with storage.engine.begin() as connection:  # as if the issue record had not been written yet
        connection.execute(issued_cards.delete())
    feedback(client, card, "accepted", "2026-05-01T09:00:00Z")
    storage.record_issued_cards(
        [IssuedCard(card["uuid"], "lbp-patient-view", "physical-therapy-first-line", "v1", datetime.now(UTC))]
    )
    [row] = csv.DictReader(io.StringIO(report(app, "--csv")))
    assert (row["topic"], row["issued"], row["accepted"]) == ("physical-therapy-first-line", "1", "1")


def test_an_override_reason_an_ehr_wrote_as_a_formula_is_exported_inert(app):
    client = app.test_client()
    formula = {"code": "x1", "system": "urn:ehr:reasons", "display": '=HYPERLINK("http://x","click")'}
    feedback(client, issue(client), "overridden", "2026-05-01T09:00:00Z", {"reason": formula})
    [row] = csv.DictReader(io.StringIO(report(app, "--csv")))
    assert row["top_override_reasons"] == """'=HYPERLINK("http://x","click") (1)"""
