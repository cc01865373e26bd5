"""The Prior Notification form in a real browser (Debian's chromium, driven by Playwright), as a practice uses
it: open the card's link, complete the pre-filled form by its labels, submit, see the saved record; then
the next booking finds the PN on file; open the link again, correct the record.

Each defect issue 21 named in the form has its test:
- errors in words a scheduler understands: test_prior_notification.py,
  test_error_messages_say_the_expected_answer_in_words_never_a_regular_expression;
- each error summary link moves focus to its field: test_every_error_summary_link_moves_focus_to_its_field;
- every aria-describedby names an element, required controls say so:
  test_every_description_exists_and_the_attestation_says_it_is_required (and on the correction form:
  test_the_correction_form_describes_what_it_keeps_with_elements_that_exist);
- axe-core finds no violation on any page: the test_axe_finds_no_violation_* tests below;
- one date for one filing: test_prior_notification.py,
  test_the_record_page_states_the_filing_day_the_coverage_information_and_the_export_state;
- a used link opens the filed record, a correction amends it: test_pn_corrections.py, and
  test_the_practice_opens_a_used_link_and_corrects_the_filed_record below;
- the preview's PN link, address, 375 px and no script: test_preview.py and test_preview_browser.py.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import requests
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect, sync_playwright
from werkzeug.serving import make_server

from cds_service.app import create_app
from cds_service.wiring import services_of
from tests.builders import appointment
from tests.clinical_date import CLOCK
from tests.conftest import assert_conformant, private_settings
from tests.test_appointment_book import adult_with_lbp
from tests.test_preview_browser import ARTIFACTS_VARIABLE, CHROMIUM, CHROMIUM_ARGS, INDEX

pytestmark = pytest.mark.processes


@pytest.fixture(scope="module")
def server(content, tmp_path_factory) -> Iterator[str]:
    """The service on a free local port with its own database, as `make run` serves it (development settings)."""
    settings = private_settings(tmp_path_factory.mktemp("pn-browser"), require_jwt=False)
    app = create_app(settings, content=content, clock=CLOCK)
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    thread.join()
    services_of(app).close()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshot goes: LBP_TEST_ARTIFACTS if set (as for the preview test), else pytest's tmp."""
    named = os.environ.get(ARTIFACTS_VARIABLE)
    folder = Path(named) if named else tmp_path_factory.mktemp("artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def page() -> Iterator[Page]:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser.new_page(viewport={"width": 1100, "height": 1000})
        browser.close()


def book(server: str, patient_id: str = "p1") -> dict:
    body = replace(adult_with_lbp(), pid=patient_id).appointment_book(appointment(aid="apt-browser"))
    response = requests.post(f"{server}/cds-services/lbp-appointment-book", json=body, timeout=10)
    assert response.status_code == 200
    answer = response.json()
    assert_conformant(answer)
    return answer


def test_the_practice_completes_the_prefilled_form_and_sees_the_saved_record(page, server, artifacts):
    [warning, _msc] = book(server)["cards"]
    [link] = [link["url"] for link in warning["links"] if "/prior-notification/form/" in link["url"]]
    page.goto(link)
    expect(page.get_by_role("heading", level=1)).to_contain_text("Prior Notification")
    expect(page.get_by_label("Member ID (on the insurance card)")).to_have_value("M123456")
    expect(page.get_by_label("Practice NPI (organization, 10 digits)")).to_have_value("1407071236")
    expect(page.get_by_label("Planned date of the initial office visit")).to_have_value("2026-12-10")
    msc = page.get_by_role("group", name="Was a Medical Spine Center evaluation done")
    msc.get_by_label("No").check()
    page.get_by_role("group", name="Why there was no MSC evaluation").get_by_label(
        "The patient and their clinician chose to see the surgeon first"
    ).check()
    page.get_by_label("Name of the person submitting").fill("Sam Scheduler")
    page.get_by_role("button", name="Submit Prior Notification").click()
    # Forgot the attestation: the form says which answer, and keeps what was typed.
    expect(page.get_by_role("alert")).to_contain_text("Attestation: an answer is required")
    expect(page.get_by_label("Name of the person submitting")).to_have_value("Sam Scheduler")
    page.get_by_label("I attest that this information is accurate", exact=False).check()
    page.get_by_role("button", name="Submit Prior Notification").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Prior Notification filed")
    record_id = page.locator("#record-id").inner_text()
    expect(page.get_by_role("status")).to_contain_text(record_id)
    expect(page.locator("dl.answers")).to_contain_text("Sam Scheduler")
    page.screenshot(path=str(artifacts / "pn-form-saved.png"), full_page=True)

    stored = requests.get(f"{server}/fhir/QuestionnaireResponse/{record_id}", timeout=10)
    assert stored.status_code == 200 and stored.json()["subject"] == {"reference": "Patient/p1"}
    again = book(server)
    assert [c["source"]["topic"]["code"] for c in again["cards"]] == ["msc-evaluation-first"]


def form_link(server: str, patient_id: str) -> str:
    """The PN form link of a booking for a patient with nothing on file."""
    [warning, _msc] = book(server, patient_id)["cards"]
    [link] = [link["url"] for link in warning["links"] if "/prior-notification/form/" in link["url"]]
    return str(link)


def test_every_error_summary_link_moves_focus_to_its_field(page, server):
    page.goto(form_link(server, "p-focus"))
    page.get_by_role("button", name="Submit Prior Notification").click()
    expect(page.get_by_role("alert")).to_be_visible()
    fields = [
        str(i).removesuffix("-error") for i in page.locator(".field .error").evaluate_all("es => es.map(e => e.id)")
    ]
    assert {"msc-done", "attested"} <= set(fields)  # a yes/no question and the attestation
    assert_each_summary_link_focuses_its_field(page)
    page.get_by_role("group", name="Was a Medical Spine Center evaluation done").get_by_label("No").check()
    page.get_by_role("button", name="Submit Prior Notification").click()
    expect(page.get_by_role("alert")).to_contain_text("Why there was no MSC evaluation")  # a choice of several
    assert_each_summary_link_focuses_its_field(page)


def assert_each_summary_link_focuses_its_field(page: Page) -> None:
    links = page.get_by_role("alert").get_by_role("link")
    # The fields in error, in the summary's order: each field's message is "{linkId}-error".
    fields = [
        str(i).removesuffix("-error") for i in page.locator(".field .error").evaluate_all("es => es.map(e => e.id)")
    ]
    assert links.count() == len(fields)
    for index, field in enumerate(fields):
        links.nth(index).click()
        focused = page.evaluate("document.activeElement && document.activeElement.name")
        assert focused == field, f"the summary link for {field} left focus on {focused!r}"


def test_every_description_exists_and_the_attestation_says_it_is_required(page, server):
    page.goto(form_link(server, "p-described"))
    page.get_by_role("button", name="Submit Prior Notification").click()
    expect(page.get_by_role("alert")).to_be_visible()
    missing = page.evaluate(
        """[...document.querySelectorAll('[aria-describedby]')].flatMap(e =>
            e.getAttribute('aria-describedby').split(/\\s+/).filter(id => !document.getElementById(id))
            .map(id => e.id + ' -> ' + id))"""
    )
    assert missing == []
    attestation = page.get_by_role("checkbox", name="I attest that this information is accurate", exact=False)
    expect(attestation).to_have_accessible_description(re.compile("Required"))


def axe_violations(page: Page) -> list[str]:
    """axe-core's violations on the page as shown: rule id and the elements it names."""
    results = Axe().run(page)
    return [f"{v['id']}: {[n['target'] for n in v['nodes']]}" for v in results.response["violations"]]


def complete(page: Page, attester: str = "Sam Scheduler") -> None:
    """Answer what the booking could not pre-fill, and submit."""
    page.get_by_role("group", name="Was a Medical Spine Center evaluation done").get_by_label("No").check()
    page.get_by_role("group", name="Why there was no MSC evaluation").get_by_label("Emergent condition").check()
    page.get_by_label("Name of the person submitting").fill(attester)
    page.get_by_label("I attest that this information is accurate", exact=False).check()
    page.get_by_role("button", name=re.compile("Submit")).click()


def test_axe_finds_no_violation_on_the_form_pages(page, server):
    page.goto(f"{server}/prior-notification/form")
    assert axe_violations(page) == [], "the blank form"
    page.goto(form_link(server, "p-axe"))
    assert axe_violations(page) == [], "the pre-filled form"
    page.get_by_role("button", name="Submit Prior Notification").click()
    expect(page.get_by_role("alert")).to_be_visible()
    assert axe_violations(page) == [], "the form with errors"
    complete(page)
    expect(page.get_by_role("heading", level=1)).to_have_text("Prior Notification filed")
    assert axe_violations(page) == [], "the filed record"
    page.goto(f"{server}/prior-notification/form/not-a-link")
    assert axe_violations(page) == [], "an unknown link"


def test_the_practice_opens_a_used_link_and_corrects_the_filed_record(page, server):
    """Every page on the way is checked by axe: the used link, the correction form (blank of errors, with
    errors, refused as corrected meanwhile), the amended record and the version it replaced."""
    link = form_link(server, "p-amend")
    page.goto(link)
    complete(page)
    record_id = page.locator("#record-id").inner_text()
    page.goto(link)  # the link again, as from the EHR's card a second time
    expect(page.get_by_role("heading", level=1)).to_have_text("This link has already filed its Prior Notification")
    expect(page.get_by_role("status")).to_contain_text(f"(record {record_id}): view it")
    assert axe_violations(page) == [], "the used link"
    page.get_by_role("link", name="Correct this Prior Notification").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Correct the")
    expect(page.get_by_label("Name of the person submitting")).to_have_value("Sam Scheduler")
    assert axe_violations(page) == [], "the correction form"
    page.get_by_label("Member ID (on the insurance card)").fill("")
    page.get_by_role("button", name="Submit correction").click()
    expect(page.get_by_role("alert")).to_contain_text("Member ID")
    assert axe_violations(page) == [], "the correction form with errors"
    page.get_by_label("Member ID (on the insurance card)").fill("M123456")
    page.get_by_label("Name of the person submitting").fill("Sam Q. Scheduler")
    page.get_by_role("button", name="Submit correction").click()
    expect(page.get_by_role("status")).to_contain_text("this is version 2")
    expect(page.locator("dl.answers")).to_contain_text("Sam Q. Scheduler")
    assert axe_violations(page) == [], "the amended record"
    page.get_by_role("link", name="Version 1").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Prior Notification, version 1 (replaced)")
    expect(page.locator("dl.answers")).to_contain_text("Sam Scheduler")
    assert axe_violations(page) == [], "the replaced version"


def test_a_form_opened_twice_files_once_and_the_second_is_offered_as_a_correction(page, server):
    link = form_link(server, "p-twice")
    other = page.context.browser.new_page()  # the same link open in a second window
    page.goto(link)
    other.goto(link)
    complete(other)
    expect(other.get_by_role("heading", level=1)).to_have_text("Prior Notification filed")
    other.close()
    complete(page, attester="Alex Nurse")
    expect(page.get_by_role("alert")).to_contain_text("Not filed: this link has already filed a Prior Notification")
    expect(page.get_by_label("Name of the person submitting")).to_have_value("Alex Nurse")
    assert axe_violations(page) == [], "the refused second filing"
    page.get_by_role("button", name="Submit correction").click()
    expect(page.get_by_role("status")).to_contain_text("this is version 2")


def test_the_correction_form_describes_what_it_keeps_with_elements_that_exist(page, server):
    link = form_link(server, "p-keeps")
    page.goto(link)
    page.get_by_role("group", name="Was a Medical Spine Center evaluation done").get_by_label("Yes").check()
    page.get_by_label("Date of the MSC evaluation").fill("2026-10-01")
    page.get_by_label("MSC evaluation notes (PDF, JPEG or PNG)").set_input_files(
        files=[{"name": "msc-notes.pdf", "mimeType": "application/pdf", "buffer": b"%PDF-1.4 notes"}]
    )
    page.get_by_label("Name of the person submitting").fill("Sam Scheduler")
    page.get_by_label("I attest that this information is accurate", exact=False).check()
    page.get_by_role("button", name="Submit Prior Notification").click()
    page.get_by_role("link", name="Correct this Prior Notification").click()
    notes = page.get_by_label("MSC evaluation notes (PDF, JPEG or PNG)")
    expect(notes).to_have_accessible_description(re.compile("Filed: msc-notes.pdf. Kept unless"))
    missing = page.evaluate(
        """[...document.querySelectorAll('[aria-describedby]')].flatMap(e =>
            e.getAttribute('aria-describedby').split(/\\s+/).filter(id => !document.getElementById(id))
            .map(id => e.id + ' -> ' + id))"""
    )
    assert missing == []
    assert axe_violations(page) == [], "the correction form keeping an attachment"


def test_axe_finds_no_violation_on_the_handout_the_directory_and_the_preview(page, server):
    page.set_content('<!doctype html><html lang="en"><title>t</title><main><img src="x.png"></main></html>')
    assert any(v.startswith("image-alt") for v in axe_violations(page))  # axe runs, and would say so
    examples = [f"/preview?example={e['id']}" for e in INDEX["examples"]]
    preview_form = "/preview/prior-notification-form?example=appointment-book-spine-surgeon"
    for path in ("/msc/handout", "/msc/directory", "/msc/directory?region=metro", "/preview", *examples, preview_form):
        page.goto(f"{server}{path}")
        assert axe_violations(page) == [], path


def test_axe_finds_no_violation_at_375_px(page, server):
    """A phone-sized window (axe is itself a script: the pages without script are tested in test_preview_browser)."""
    context = page.context.browser.new_context(viewport={"width": 375, "height": 740})
    phone = context.new_page()
    try:
        for path in ("/preview?example=appointment-book-spine-surgeon", "/msc/handout", "/msc/directory"):
            phone.goto(f"{server}{path}")
            assert axe_violations(phone) == [], path
        phone.goto(form_link(server, "p-phone"))
        assert axe_violations(phone) == [], "the pre-filled form"
    finally:
        context.close()
