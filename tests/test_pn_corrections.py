"""A form link files one Prior Notification (issue 21): used again, it opens the filed record with a way to
correct it; a correction amends the record (status amended, every earlier version kept), and the booking,
the coverage information and the plan's export read the latest version. On SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import threading
from datetime import UTC, date, datetime
from html import unescape

import pytest
import requests
from alembic import command
from sqlalchemy import select
from werkzeug.serving import make_server

from cds_service.storage.database import Storage, alembic_config, prior_notification_versions, prior_notifications
from cds_service.wiring import services_of
from tests.builders import PRACTICE_NPI, SURGEON_NPI, appointment
from tests.clinical_date import CLOCK
from tests.conftest import Hooks
from tests.pn import completed_fields, file_on_form, form_link
from tests.test_appointment_book import adult_with_lbp

RESPONSES = "/fhir/QuestionnaireResponse"
WRONG_NPI = "1234567893"  # a valid NPI, but not the practice's nor the surgeon's


@pytest.fixture
def client(stored_app):
    return stored_app.test_client()


def rows(app, table=prior_notifications) -> list[dict]:
    with services_of(app).storage.engine.connect() as connection:
        return [dict(r._mapping) for r in connection.execute(select(table))]


def book(client, aid: str = "apt-1") -> dict:
    """The PN card of a booking (the first card: no PN on file for that visit)."""
    return Hooks(client).book(adult_with_lbp().appointment_book(appointment(aid=aid)))[0]


def text_of(html: str) -> str:
    """The text a reader sees."""
    return " ".join(unescape(re.sub(r"<[^>]+>", "", html)).split())


def correct(client, card: dict, record_id: str, **changes: str):
    """Open the correction form from the record, change answers, send it."""
    form = client.get(f"{form_link(card)}/records/{record_id}/correction")
    assert form.status_code == 200
    version = re.search(r'name="base-version" value="(\d+)"', form.get_data(as_text=True))
    assert version is not None
    fields = {**completed_fields(**changes), "base-version": version.group(1)}
    return client.post(f"{form_link(card)}/records/{record_id}/correction", data=fields)


def test_a_link_used_again_opens_the_filed_record_with_a_way_to_correct_it(stored_app, client):
    card = book(client)
    record_id = file_on_form(client, card)
    [row] = rows(stored_app)
    again = client.get(form_link(card))
    page = text_of(again.get_data(as_text=True))
    assert again.status_code == 200
    assert "This link has already filed its Prior Notification" in page
    assert f"Filed on {row['filed_on'].isoformat()} (record {record_id}): view it" in page
    html = again.get_data(as_text=True)
    assert f'href="{form_link(card)}/records/{record_id}"' in html
    assert f'href="{form_link(card)}/records/{record_id}/correction"' in html
    assert "<form" not in html  # nothing to file from here


def test_a_different_submission_from_a_used_link_is_not_filed_but_offered_as_a_correction(stored_app, client):
    card = book(client)
    record_id = file_on_form(client, card)
    second = client.post(form_link(card), data=completed_fields(**{"visit-date": "2026-12-17"}))
    page = text_of(second.get_data(as_text=True))
    assert second.status_code == 409
    assert "Not filed: this link has already filed a Prior Notification" in page and record_id in page
    assert 'value="2026-12-17"' in second.get_data(as_text=True)  # what was sent, kept to send as a correction
    assert "Submit correction" in page
    [row] = rows(stored_app)
    assert row["visit_date"].isoformat() == "2026-12-10" and row["version"] == 1


def test_the_same_submission_sent_again_is_the_filed_record(stored_app, client):
    card = book(client)
    assert file_on_form(client, card) == file_on_form(client, card)
    assert len(rows(stored_app)) == 1


def test_a_correction_amends_the_record_and_keeps_the_earlier_version(stored_app, client):
    card = book(client)
    record_id = file_on_form(client, card)
    opened = client.get(f"{form_link(card)}/records/{record_id}/correction").get_data(as_text=True)
    assert 'value="2026-12-10"' in opened and 'value="Sam Scheduler"' in opened  # the filed answers
    corrected = correct(client, card, record_id, **{"visit-date": "2026-12-17"})
    assert corrected.status_code == 303
    assert corrected.headers["Location"].endswith(f"{form_link(card)}/records/{record_id}")

    [row] = rows(stored_app)
    assert (row["id"], row["version"], row["status"]) == (record_id, 2, "amended")
    assert row["visit_date"].isoformat() == "2026-12-17" and row["amended_on"] == CLOCK.today()
    assert row["response"]["status"] == "amended" and row["response"]["meta"]["versionId"] == "2"
    [earlier] = rows(stored_app, prior_notification_versions)
    assert (earlier["record_id"], earlier["version"], earlier["status"]) == (record_id, 1, "completed")
    assert '"2026-12-10"' in json.dumps(earlier["response"])

    record_page = client.get(corrected.headers["Location"]).get_data(as_text=True)
    page = text_of(record_page)
    assert f"Corrected on {CLOCK.today().isoformat()} at" in page and "this is version 2" in page
    assert "2026-12-17" in page and "Earlier versions Each correction keeps the version it replaced" in page
    first = client.get(f"{form_link(card)}/records/{record_id}/versions/1")
    assert first.status_code == 200
    assert "Prior Notification, version 1 (replaced)" in text_of(first.get_data(as_text=True))
    assert "2026-12-10" in text_of(first.get_data(as_text=True))
    assert client.get(f"{form_link(card)}/records/{record_id}/versions/3").status_code == 404

    # The FHIR read gives the latest version; each version stays readable (vread).
    latest = client.get(f"{RESPONSES}/{record_id}").get_json()
    assert latest["status"] == "amended" and latest["meta"]["versionId"] == "2"
    v1 = client.get(f"{RESPONSES}/{record_id}/_history/1").get_json()
    assert (v1["status"], v1["meta"]["versionId"]) == ("completed", "1")
    assert client.get(f"{RESPONSES}/{record_id}/_history/2").get_json() == latest
    assert client.get(f"{RESPONSES}/{record_id}/_history/9").status_code == 404


def test_a_used_link_says_when_its_record_was_corrected(stored_app, client):
    card = book(client)
    record_id = file_on_form(client, card)
    assert correct(client, card, record_id, **{"attester-name": "Sam Q. Scheduler"}).status_code == 303
    page = text_of(client.get(form_link(card)).get_data(as_text=True))
    assert f"corrected on {CLOCK.today().isoformat()}" in page


def test_a_correction_sent_twice_makes_one_version(stored_app, client):
    card = book(client)
    record_id = file_on_form(client, card)
    fields = {**completed_fields(**{"visit-date": "2026-12-17"}), "base-version": "1"}
    url = f"{form_link(card)}/records/{record_id}/correction"
    assert client.post(url, data=fields).status_code == 303
    assert client.post(url, data=fields).status_code == 303  # the same answers: nothing to change
    assert [r["version"] for r in rows(stored_app)] == [2]
    assert len(rows(stored_app, prior_notification_versions)) == 1


def test_a_correction_started_from_a_replaced_version_is_not_applied_unseen(stored_app, client):
    card = book(client)
    record_id = file_on_form(client, card)
    url = f"{form_link(card)}/records/{record_id}/correction"
    first = client.post(url, data={**completed_fields(**{"visit-date": "2026-12-17"}), "base-version": "1"})
    assert first.status_code == 303
    late = client.post(url, data={**completed_fields(**{"visit-date": "2026-12-24"}), "base-version": "1"})
    assert late.status_code == 409
    page = text_of(late.get_data(as_text=True))
    assert "Not saved: this Prior Notification was corrected meanwhile" in page and "now version 2" in page
    assert 'name="base-version" value="2"' in late.get_data(as_text=True)  # sent again, it applies
    [row] = rows(stored_app)
    assert row["visit_date"].isoformat() == "2026-12-17" and row["version"] == 2


def test_an_invalid_correction_shows_its_problems_and_changes_nothing(stored_app, client):
    card = book(client)
    record_id = file_on_form(client, card)
    response = correct(client, card, record_id, **{"practice-npi": "12345"})
    assert response.status_code == 400
    assert "10 digits" in text_of(response.get_data(as_text=True))
    assert [r["version"] for r in rows(stored_app)] == [1]


def test_a_correction_keeps_the_filed_attachment_unless_another_is_chosen(stored_app, client):
    card = book(client)
    fields = completed_fields(**{"msc-done": "true", "msc-date": "2026-10-01", "msc-not-done-reason": ""})
    fields["msc-notes"] = (io.BytesIO(b"%PDF-1.4 MSC evaluation"), "msc-notes.pdf", "application/pdf")
    filed = client.post(form_link(card), data=fields, content_type="multipart/form-data")
    record_id = filed.headers["Location"].rsplit("/", 1)[1]
    opened = client.get(f"{form_link(card)}/records/{record_id}/correction").get_data(as_text=True)
    assert "Filed: msc-notes.pdf. Kept unless you choose another file." in opened
    changes = {"msc-done": "true", "msc-date": "2026-10-02", "msc-not-done-reason": ""}
    assert correct(client, card, record_id, **changes).status_code == 303
    [row] = rows(stored_app)
    assert row["msc_date"].isoformat() == "2026-10-02" and '"title": "msc-notes.pdf"' in json.dumps(row["response"])


def test_the_booking_and_the_coverage_information_read_the_latest_version(stored_app, client):
    hooks = Hooks(client)
    card = book(client, "apt-1")
    # Filed with the wrong NPIs: another visit with this practice is not covered by it.
    record_id = file_on_form(client, card, **{"practice-npi": WRONG_NPI, "surgeon-npi": WRONG_NPI})
    other_visit = adult_with_lbp().appointment_book(appointment(aid="apt-2"))
    before = hooks.answer("lbp-appointment-book", other_visit)
    assert before["cards"][0]["source"]["topic"]["code"] == "prior-notification-required"
    corrected = correct(client, card, record_id, **{"practice-npi": PRACTICE_NPI, "surgeon-npi": SURGEON_NPI})
    assert corrected.status_code == 303
    after = hooks.answer("lbp-appointment-book", other_visit)
    assert [c["source"]["topic"]["code"] for c in after["cards"]] == ["msc-evaluation-first"]
    [row] = rows(stored_app)
    assert f"filed {row['filed_on'].isoformat()}" in json.dumps(after["systemActions"])


def test_the_export_shows_the_amendment(stored_app, client):
    card = book(client)
    record_id = file_on_form(client, card)
    assert correct(client, card, record_id, **{"visit-date": "2026-12-17"}).status_code == 303
    result = stored_app.test_cli_runner().invoke(args=["pn-export"])
    assert result.exit_code == 0, result.output
    [exported] = list(csv.DictReader(io.StringIO(result.output)))
    assert (exported["id"], exported["status"], exported["version"]) == (record_id, "amended", "2")
    assert exported["visit_date"] == "2026-12-17" and exported["amended_on"] == CLOCK.today().isoformat()
    assert exported["filed_on"] == CLOCK.today().isoformat()  # first filed that day, corrected since


def test_concurrent_submissions_of_one_link_file_one_record(stored_app):
    card = book(stored_app.test_client())
    senders = 4
    start = threading.Barrier(senders)
    statuses: list[int] = []

    def send(index: int) -> None:
        client = stored_app.test_client()  # one per thread, as browsers are
        data = completed_fields(**{"attester-name": f"Scheduler {index}"})
        start.wait()
        statuses.append(client.post(form_link(card), data=data).status_code)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [303] + [409] * (senders - 1)
    assert len(rows(stored_app)) == 1


def test_no_log_holds_the_form_links_token(stored_app, client, caplog):
    caplog.set_level(logging.DEBUG)
    card = book(client)
    token = form_link(card).rsplit("/", 1)[1]
    record_id = file_on_form(client, card)
    client.get(form_link(card))
    client.post(form_link(card), data=completed_fields(**{"visit-date": "2026-12-17"}))
    correct(client, card, record_id, **{"visit-date": "2026-12-17"})
    client.get(f"{form_link(card)}/records/{record_id}/versions/1")
    services_of(stored_app).issued_cards.flush(timeout=10)  # the booking's hook call line, written by the writer
    assert caplog.records and token not in caplog.text


def test_the_upgrade_keeps_every_record_a_link_filed_before_and_links_the_earliest(database_url):
    """Before revision 0003 a link could file several records: all stay, the earliest keeps the link."""
    storage = Storage(database_url)
    config = alembic_config()
    with storage.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0002")
        for index, record_id in enumerate(("b-later", "a-first")):
            connection.execute(
                prior_notifications.insert(),
                {
                    "id": record_id,
                    "submission_key": record_id,
                    "questionnaire": "q",
                    "status": "completed",
                    "patient_id": "p1",
                    "form_context_id": "one-link",
                    "submitted_via": "web-form",
                    "submitted_at": datetime(2026, 11, 20 + (1 - index), tzinfo=UTC),
                    "filed_on": date(2026, 11, 20),
                    "response": {},
                },
            )
    storage.migrate()
    with storage.engine.connect() as connection:
        linked = dict(connection.execute(select(prior_notifications.c.id, prior_notifications.c.form_context_id)).all())
    storage.close()
    assert linked == {"a-first": "one-link", "b-later": None}


def test_the_development_servers_request_lines_mask_the_token(stored_app, caplog):
    """werkzeug's server (`flask run`, the browser tests) logs every request line: never with a link's token."""
    caplog.set_level(logging.INFO)
    httpd = make_server("127.0.0.1", 0, stored_app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        card = book(stored_app.test_client())
        token = form_link(card).rsplit("/", 1)[1]
        base = f"http://127.0.0.1:{httpd.server_port}"
        assert requests.get(f"{base}{form_link(card)}", timeout=10).status_code == 200
        assert requests.get(f"{base}{form_link(card)}/records/x", timeout=10).status_code == 404
    finally:
        httpd.shutdown()
        thread.join()
    lines = [r.getMessage() for r in caplog.records if r.name == "werkzeug"]
    assert any("GET /prior-notification/form/<token> HTTP/1.1" in line for line in lines), lines
    assert any("GET /prior-notification/form/<token>/records/x HTTP/1.1" in line for line in lines), lines
    assert token not in caplog.text


def test_concurrent_corrections_of_one_version_apply_one(stored_app):
    client = stored_app.test_client()
    card = book(client)
    record_id = file_on_form(client, card)
    url = f"{form_link(card)}/records/{record_id}/correction"
    senders = 4
    start = threading.Barrier(senders)
    statuses: list[int] = []

    def send(index: int) -> None:
        data = {**completed_fields(**{"attester-name": f"Corrector {index}"}), "base-version": "1"}
        own = stored_app.test_client()
        start.wait()
        statuses.append(own.post(url, data=data).status_code)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [303] + [409] * (senders - 1)
    [row] = rows(stored_app)
    assert row["version"] == 2 and len(rows(stored_app, prior_notification_versions)) == 1
