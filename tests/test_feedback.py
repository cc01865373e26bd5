"""Card feedback: validated, stored durably once, answered 200 only when committed (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from cds_service.app import create_app
from cds_service.storage.database import feedback, issued_cards
from cds_service.wiring import services_of
from tests.builders import medication_request, patient
from tests.clinical_date import CLOCK
from tests.waiting import wait_for

SERVICE = "/cds-services/lbp-patient-view"
FEEDBACK = SERVICE + "/feedback"
WHEN = "2026-03-04T05:06:07Z"


@pytest.fixture
def client(stored_app):
    return stored_app.test_client()


def issue_card(client, *, opioid: bool = False) -> dict[str, Any]:
    """Call the service the way an EHR does and return its first card."""
    record = patient(45).with_lbp()
    if opioid:
        record = record.with_medication(medication_request(status="active"))
    response = client.post(SERVICE, json=record.patient_view())
    assert response.status_code == 200
    services_of(client.application).issued_cards.flush()
    return response.get_json()["cards"][-1 if opioid else 0]


def accepted(card: dict[str, Any], when: str = WHEN) -> dict[str, Any]:
    suggestion = card["suggestions"][0]["uuid"]
    return {
        "card": card["uuid"],
        "outcome": "accepted",
        "acceptedSuggestions": [{"id": suggestion}],
        "outcomeTimestamp": when,
    }


def overridden(card_uuid: str, reason: dict[str, Any] | None = None, when: str = WHEN) -> dict[str, Any]:
    item = {"card": card_uuid, "outcome": "overridden", "outcomeTimestamp": when}
    if reason is not None:
        item["overrideReason"] = reason
    return item


def send(client, *items: dict[str, Any], path: str = FEEDBACK):
    return client.post(path, json={"feedback": list(items)})


def stored(app) -> list[dict[str, Any]]:
    with services_of(app).storage.engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(select(feedback).order_by(feedback.c.id))]


def test_issued_cards_are_recorded_with_topic_and_content_version(stored_app, client, content):
    before = datetime.now(UTC)
    card = issue_card(client)
    after = datetime.now(UTC)
    with services_of(stored_app).storage.engine.connect() as connection:
        row = connection.execute(select(issued_cards)).one()._mapping
    assert row["card_uuid"] == card["uuid"]
    assert (row["service_id"], row["topic"]) == ("lbp-patient-view", "physical-therapy-first-line")
    assert row["content_version"] == content.version
    assert before <= row["issued_at"] <= after


def test_accepted_suggestion_is_stored_with_the_card_topic(stored_app, client):
    card = issue_card(client)
    before = datetime.now(UTC)
    response = send(client, accepted(card))
    after = datetime.now(UTC)
    assert response.status_code == 200
    [row] = stored(stored_app)
    assert row["card_uuid"] == card["uuid"]
    assert row["service_id"] == "lbp-patient-view"
    assert row["topic"] == "physical-therapy-first-line"
    assert row["outcome"] == "accepted"
    assert row["accepted_suggestions"] == [card["suggestions"][0]["uuid"]]
    assert row["outcome_timestamp"] == datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    assert before <= row["received_at"] <= after
    assert row["issuer"] is None and row["override_code"] is None


def test_overridden_with_a_reason_and_comment_is_stored(stored_app, client):
    card = issue_card(client)
    offered = card["overrideReasons"][0]
    reason = {"reason": offered, "userComment": "Patient prefers to wait two weeks."}
    assert send(client, overridden(card["uuid"], reason)).status_code == 200
    [row] = stored(stored_app)
    assert row["outcome"] == "overridden"
    assert (row["override_code"], row["override_system"]) == (offered["code"], offered["system"])
    assert row["override_display"] == offered["display"]
    assert row["user_comment"] == "Patient prefers to wait two weeks."
    assert row["accepted_suggestions"] == []


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ({"reason": {"code": "other", "system": "urn:lbp-cds:override-reason"}}, ("other", None, None)),
        ({"code": "other", "system": "urn:lbp-cds:override-reason"}, ("other", None, None)),
        ({"code": "other", "system": "urn:lbp-cds:override-reason", "display": "Other"}, ("other", "Other", None)),
        ({"userComment": "not today"}, (None, None, "not today")),
        (None, (None, None, None)),
    ],
    ids=["2.0-without-display", "bare-coding", "bare-coding-with-display", "comment-only", "no-reason"],
)
def test_both_override_reason_shapes_are_stored(stored_app, client, reason, expected):
    card = issue_card(client)
    assert send(client, overridden(card["uuid"], reason)).status_code == 200
    [row] = stored(stored_app)
    assert (row["override_code"], row["override_display"], row["user_comment"]) == expected


def test_duplicates_are_stored_once(stored_app, client):
    card = issue_card(client)
    assert send(client, accepted(card)).status_code == 200
    assert send(client, accepted(card)).status_code == 200  # the EHR retried
    assert send(client, accepted(card, "2026-03-04T06:06:07+01:00")).status_code == 200  # same instant
    assert send(client, accepted(card), accepted(card)).status_code == 200
    assert len(stored(stored_app)) == 1
    assert send(client, accepted(card, "2026-03-04T05:07:00Z")).status_code == 200  # a later action
    assert send(client, overridden(card["uuid"])).status_code == 200  # another outcome
    assert len(stored(stored_app)) == 3


def test_several_cards_in_one_post(stored_app, client):
    first, second = issue_card(client), issue_card(client, opioid=True)
    assert second["source"]["topic"]["code"] == "opioid-sparing-alternatives"
    assert send(client, accepted(first), overridden(second["uuid"])).status_code == 200
    assert [row["topic"] for row in stored(stored_app)] == [
        "physical-therapy-first-line",
        "opioid-sparing-alternatives",
    ]


def test_feedback_for_an_unknown_card_is_stored_with_topic_unknown(stored_app, client):
    ghost = str(uuid.uuid4())
    assert send(client, overridden(ghost)).status_code == 200
    [row] = stored(stored_app)
    assert row["card_uuid"] == ghost and row["topic"] is None
    report = stored_app.test_cli_runner().invoke(args=["feedback-report", "--csv"]).output
    assert "lbp-patient-view,unknown,0,0,1," in report


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"feedback": []}, "feedback: expected at least 1 item"),
        ({}, "'feedback' is a required property"),
        ({"feedback": [{"card": "c1", "outcome": "accepted", "outcomeTimestamp": WHEN}]}, "feedback/0/card"),
        (
            {"feedback": [overridden("9368d37b-283f-44a0-93ea-547cebab93ed") | {"outcome": "ignored"}]},
            'feedback/0/outcome: expected one of "accepted", "overridden"',
        ),
        ({"feedback": [overridden("9368d37b-283f-44a0-93ea-547cebab93ed", when="yesterday")]}, "outcomeTimestamp"),
        (
            {"feedback": [overridden("9368d37b-283f-44a0-93ea-547cebab93ed", when="2026-02-30T00:00:00Z")]},
            "feedback/0/outcomeTimestamp: not a real date",
        ),
        (
            {
                "feedback": [
                    {"card": "9368d37b-283f-44a0-93ea-547cebab93ed", "outcome": "accepted", "outcomeTimestamp": WHEN}
                ]
            },
            "'acceptedSuggestions' is a required property",
        ),
        (
            {"feedback": [overridden("9368d37b-283f-44a0-93ea-547cebab93ed", {"reason": {"code": "x"}})]},
            "overrideReason",
        ),
        ([], "must be a JSON object"),
    ],
)
def test_malformed_feedback_is_400_with_a_clear_message(stored_app, client, body, expected):
    response = client.post(FEEDBACK, json=body)
    assert response.status_code == 400
    assert expected in response.get_json()["issue"][0]["diagnostics"]
    assert stored(stored_app) == []


def test_feedback_must_be_json_and_within_the_size_limit(settings, content, tmp_path):
    client = create_app(
        settings.model_copy(update=dict(max_body_bytes=2000)), content=content, clock=CLOCK
    ).test_client()
    assert client.post(FEEDBACK, data="feedback", content_type="text/plain").status_code == 415
    assert client.post(FEEDBACK, data="{", content_type="application/json").status_code == 400
    big = {"feedback": [overridden(str(uuid.uuid4()), {"userComment": "x" * 3000})]}
    assert client.post(FEEDBACK, json=big).status_code == 413


def test_feedback_to_an_unknown_service_is_404(client):
    response = send(client, overridden(str(uuid.uuid4())), path="/cds-services/lbp-nope/feedback")
    assert response.status_code == 404


def test_database_down_is_503_and_the_retried_feedback_is_stored(settings, content, outage):
    app = create_app(settings.model_copy(update=dict(database_url=outage.url)), content=content, clock=CLOCK)
    client = app.test_client()
    card = issue_card(client)
    outage.down()
    response = send(client, accepted(card))
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
    assert response.get_json()["issue"][0]["code"] == "transient"
    outage.up()
    assert stored(app) == []  # nothing was answered 2xx, nothing half-stored
    assert send(client, accepted(card)).status_code == 200  # the EHR retries
    [row] = stored(app)
    assert row["topic"] == "physical-therapy-first-line"
    services_of(app).close()


def test_hook_call_still_answers_cards_while_the_database_is_down(settings, content, outage, monkeypatch):
    app = create_app(settings.model_copy(update=dict(database_url=outage.url)), content=content, clock=CLOCK)
    storage = services_of(app).storage
    record = storage.record_hook_calls
    writing, written, release = threading.Event(), threading.Event(), threading.Event()

    def hanging(calls):
        """The write to the database that is down does not come back until the test is done."""
        writing.set()
        release.wait(timeout=60)
        try:
            return record(calls)
        finally:
            written.set()

    monkeypatch.setattr(storage, "record_hook_calls", hanging)
    outage.down()
    client = app.test_client()
    try:
        first = client.post(SERVICE, json=patient(45).with_lbp().patient_view())
        wait_for(writing.is_set, message="the issued-card writer tried the database")
        response = client.post(SERVICE, json=patient(45).with_lbp().patient_view())
        # Both were answered while the first call's cards were still being written: not in the way.
        assert not written.is_set(), "a database outage slowed the hook call"
    finally:
        release.set()
    for answered in (first, response):
        assert answered.get_json()["cards"][0]["source"]["topic"]["code"] == "physical-therapy-first-line"
    services_of(app).issued_cards.flush()
    outage.up()
    with services_of(app).storage.engine.connect() as connection:
        assert connection.execute(select(issued_cards)).all() == []  # not recorded, but not in the way
    services_of(app).close()
