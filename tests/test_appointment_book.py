"""appointment-book: the spine surgical practice books an adult's initial office visit for low back pain.

Prior Notification (warning, with the form) when none is on file; the MSC evaluation the program
expects first (info) when none is on record and the member is not exempt; silence for the same cases
as the referral rules (child, emergent, not LBP, not an initial visit, not a spine surgeon).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from cds_service.app import create_app
from cds_service.content.loader import load_content
from cds_service.storage.prior_notifications import PriorNotificationRecord, Scope
from cds_service.wiring import services_of
from tests.builders import (
    CPT,
    HAND_SURGEON,
    NEUROSURGEON,
    NUCC,
    SNOMED,
    SPINE_SURGEON,
    appointment,
    medication_request,
    ortho_referral,
    patient,
    practitioner_role,
    service_request,
)
from tests.clinical_date import CLOCK, TODAY
from tests.conftest import BASE_URL, Hooks, topics
from tests.content_copies import ContentCopy
from tests.ehr_forms import FORMS
from tests.pn import field_values, file_on_form, form_link

PN = "prior-notification-required"
MSC = "msc-evaluation-first"
MA_SOPT = "111"  # Medicare Advantage HMO (SOPT)
COMMERCIAL_SOPT = "5"


def adult_with_lbp(**kwargs):
    return patient(45, **kwargs).with_lbp().with_coverage(COMMERCIAL_SOPT, member_id="M123456")


def about(card) -> list[str]:
    return [r["reference"] for r in card["extension"]["davinci-crd.associated-resource"]]


# --- the baseline ---------------------------------------------------------------------------------------


def test_initial_spine_surgeon_visit_without_pn_gets_the_pn_warning_with_its_form_and_the_msc_card(hooks, client):
    cards = hooks.book(adult_with_lbp().appointment_book(appointment(aid="apt-1")))
    assert topics(cards) == [PN, MSC]
    warning, msc = cards
    assert warning["indicator"] == "warning"
    assert "No Prior Notification on file" in warning["summary"]
    assert "denied to provider liability" in warning["detail"]
    assert "2026-12-10 09:00 with Dr Ada Spine" in warning["detail"]
    assert about(warning) == about(msc) == ["Appointment/apt-1"]
    assert warning["source"]["extension"]["lbp-cds-crd-card-type"]["code"] == "claim"
    assert msc["indicator"] == "info" and "patient and their clinician" in msc["detail"]
    assert msc["source"]["extension"]["lbp-cds-crd-card-type"]["code"] == "therapy-alternatives-req"
    assert "suggestions" not in warning and "suggestions" not in msc  # CRD External Reference cards
    page = client.get(form_link(warning))
    assert page.status_code == 200
    prefilled = field_values(page.get_data(as_text=True))
    assert prefilled == {
        "member-name": "Pat Lumbar",
        "member-birth-date": patient(45).birth_date,
        "member-id": "M123456",
        "practice-name": "Lakeside Spine Surgery",
        "practice-npi": "1407071236",
        "surgeon-name": "Dr Ada Spine",
        "surgeon-npi": "9941339100",
        "surgeon-specialty": "207XS0117X",
        "visit-date": "2026-12-10",
        "diagnosis-code": "M54.50",
    }


def test_what_only_the_form_reads_is_pre_filled_only_when_shaped_as_fhir_says(hooks, client):
    body = adult_with_lbp().appointment_book(appointment(aid="apt-1"))
    body["prefetch"]["patient"]["name"] = [{"given": 1.5, "family": ["Lumbar"]}]  # neither is a FHIR string
    [warning, _msc] = hooks.book(body)
    prefilled = field_values(client.get(form_link(warning)).get_data(as_text=True))
    assert "member-name" not in prefilled and prefilled["member-id"] == "M123456"


def test_the_form_link_carries_no_patient_data(hooks):
    body = adult_with_lbp().appointment_book(appointment(aid="apt-1"))
    [warning, _msc] = hooks.book(body)
    link = form_link(warning)
    token = link.rsplit("/", 1)[1]
    for secret in ("p1", "apt-1", "Lumbar", "M123456", "1981", "M54"):
        assert secret not in token
    assert link.startswith("/prior-notification/form/")


@pytest.mark.parametrize(
    "visit",
    [
        appointment(specialty=NEUROSURGEON),
        appointment(specialty="394610002", specialty_system=SNOMED),  # SNOMED practice setting: neurosurgery
        appointment(specialty=None, service_type_text="Orthopaedic spine surgery consult"),
    ],
    ids=["neurosurgeon-role", "snomed-specialty", "service-type-text"],
)
def test_spine_surgeon_is_recognised_by_specialty_or_service_text(hooks, visit):
    assert topics(hooks.book(adult_with_lbp().appointment_book(visit))) == [PN, MSC]


def test_an_appointment_based_on_a_spine_referral_counts_without_a_specialty(hooks):
    referral = ortho_referral(rid="ref-1", status="active")
    record = adult_with_lbp().with_service_request(referral)
    visit = appointment(specialty=None, surgeon=None, based_on="ServiceRequest/ref-1")
    assert topics(hooks.book(record.appointment_book(visit))) == [PN, MSC]


def test_an_appointment_based_on_another_referral_is_silent(hooks):
    knee = service_request("306181000000106", rid="ref-2", status="active")  # not a spine-surgery referral
    record = adult_with_lbp().with_service_request(knee)
    visit = appointment(specialty=None, surgeon=None, based_on="ServiceRequest/ref-2")
    assert hooks.book(record.appointment_book(visit)) == []


# --- silences -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "visit",
    [
        appointment(specialty=HAND_SURGEON),
        appointment(specialty="208100000X"),  # PM&R: a Medical Spine Center visit, not a surgeon
        appointment(specialty=None, service_type_text="Sleep Medicine"),
        appointment(specialty=None, surgeon=None),
    ],
    ids=["hand-surgeon", "pm-and-r", "sleep-medicine", "nobody"],
)
def test_a_visit_not_with_a_spine_surgeon_is_silent(hooks, visit):
    answer = hooks.answer("lbp-appointment-book", adult_with_lbp().appointment_book(visit))
    assert answer == {"cards": []}


@pytest.mark.parametrize(
    "visit",
    [
        appointment(appointment_type="FOLLOWUP"),
        appointment(appointment_type_text="Post-op check"),
        appointment(appointment_type_text="Follow up visit"),
    ],
    ids=["v2-followup", "post-op-text", "follow-up-text"],
)
def test_a_follow_up_visit_is_silent(hooks, visit):
    assert hooks.answer("lbp-appointment-book", adult_with_lbp().appointment_book(visit)) == {"cards": []}


def test_followup_written_with_the_old_v2_url_and_an_established_patient_cpt_code_are_follow_ups(hooks):
    old_url = appointment()
    old_url["appointmentType"] = {"coding": [{"system": "http://hl7.org/fhir/v2/0276", "code": "FOLLOWUP"}]}
    established = appointment()
    established["serviceType"] = [{"coding": [{"system": CPT, "code": "99213"}]}]
    record = adult_with_lbp()
    assert hooks.book(record.appointment_book(old_url)) == []
    assert hooks.book(record.appointment_book(established)) == []


def test_a_routine_or_new_patient_visit_is_initial(hooks):
    routine = appointment(appointment_type="ROUTINE")
    new_patient = appointment()
    new_patient["serviceType"] = [{"coding": [{"system": CPT, "code": "99204"}]}, {"text": "Spine surgery"}]
    record = adult_with_lbp()
    assert topics(hooks.book(record.appointment_book(routine))) == [PN, MSC]
    assert topics(hooks.book(record.appointment_book(new_patient))) == [PN, MSC]


def test_a_child_gets_no_card(hooks):
    record = patient(14).with_lbp().with_coverage(COMMERCIAL_SOPT)
    assert hooks.book(record.appointment_book(appointment())) == []


def test_eighteen_today_is_in_scope(hooks):
    record = patient(18).with_lbp().with_coverage(COMMERCIAL_SOPT)
    assert topics(hooks.book(record.appointment_book(appointment()))) == [PN, MSC]


@pytest.mark.parametrize(
    ("record", "visit"),
    [
        (adult_with_lbp().with_condition("G83.4"), appointment()),  # active cauda equina syndrome
        (adult_with_lbp(), appointment(reason="G83.4")),  # booked for it
        (adult_with_lbp(), appointment(appointment_type="EMERGENCY")),
        (
            adult_with_lbp().with_service_request(ortho_referral(rid="ref-stat", status="active", priority="stat")),
            appointment(based_on="ServiceRequest/ref-stat"),
        ),
    ],
    ids=["red-flag-condition", "red-flag-reason", "emergency-appointment", "stat-referral"],
)
def test_an_emergent_visit_is_silent(hooks, record, visit):
    assert hooks.answer("lbp-appointment-book", record.appointment_book(visit)) == {"cards": []}


def test_a_visit_for_another_problem_is_silent(hooks):
    knee = appointment(reason="M25.561")  # pain in right knee
    assert hooks.book(adult_with_lbp().appointment_book(knee)) == []


def test_without_a_reason_the_patients_active_lbp_decides(hooks):
    no_reason = appointment(reason=None)
    assert topics(hooks.book(adult_with_lbp().appointment_book(no_reason))) == [PN, MSC]
    without_lbp = patient(45).with_coverage(COMMERCIAL_SOPT)
    assert hooks.book(without_lbp.appointment_book(no_reason)) == []


def test_without_its_own_reason_the_referrals_reason_decides(hooks):
    knee_referral = ortho_referral(rid="ref-knee", status="active", reason="M25.561")
    record = adult_with_lbp().with_service_request(knee_referral)
    visit = appointment(reason=None, based_on="ServiceRequest/ref-knee")
    assert hooks.book(record.appointment_book(visit)) == []


@pytest.mark.parametrize("status", ["cancelled", "noshow", "fulfilled", "entered-in-error"])
def test_an_appointment_no_longer_being_booked_is_silent(hooks, status):
    assert hooks.book(adult_with_lbp().appointment_book(appointment(status=status))) == []


def test_only_the_qualifying_appointment_of_several_gets_cards(hooks):
    body = adult_with_lbp().appointment_book(
        appointment(aid="apt-follow", appointment_type="FOLLOWUP"), appointment(aid="apt-new")
    )
    cards = hooks.book(body)
    assert topics(cards) == [PN, MSC]
    assert {ref for card in cards for ref in about(card)} == {"Appointment/apt-new"}


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"appointmentType": {"coding": [[]]}}, "context/appointments/entry/0/resource/appointmentType/coding/0"),
        ({"participant": [{"actor": "Practitioner/1"}]}, "context/appointments/entry/0/resource/participant/0/actor"),
        ({"extension": {"url": "x"}}, "context/appointments/entry/0/resource/extension"),
    ],
    ids=["coding", "actor", "extension"],
)
def test_an_appointment_not_shaped_as_fhir_says_is_refused_naming_the_path(client, change, path):
    body = adult_with_lbp().appointment_book({**appointment(), **change})
    response = client.post("/cds-services/lbp-appointment-book", json=body)
    assert response.status_code == 400
    message = response.get_json()["issue"][0]["diagnostics"]
    assert message.startswith("A proposed appointment is not shaped as FHIR R4 says") and path in message


def test_nothing_spine_related_is_answered_without_patient_data(client):
    body = patient(45).appointment_book(appointment(specialty=None, surgeon=None, service_type_text="Sleep Medicine"))
    body.pop("prefetch")  # and no fhirServer: nothing could be fetched
    response = client.post("/cds-services/lbp-appointment-book", json=body)
    assert response.status_code == 200
    assert response.get_json() == {"cards": []}


def test_a_spine_visit_without_patient_data_is_412_naming_the_keys(client):
    body = adult_with_lbp().appointment_book(appointment())
    body.pop("prefetch")
    response = client.post("/cds-services/lbp-appointment-book", json=body)
    assert response.status_code == 412
    assert "patient (Patient/{{context.patientId}})" in response.get_json()["issue"][0]["diagnostics"]


# --- the MSC card ----------------------------------------------------------------------------------------


def test_msc_done_means_no_msc_card_and_the_form_asks_for_its_notes(hooks):
    record = adult_with_lbp().with_encounter(service_type=("http://nucc.org/provider-taxonomy", "208100000X"), days=40)
    [warning] = hooks.book(record.appointment_book(appointment()))
    assert warning["source"]["topic"]["code"] == PN
    assert "the date of the Medical Spine Center evaluation on record and its notes" in warning["detail"]


def test_medicare_advantage_members_are_exempt_from_the_msc_step(hooks):
    record = patient(70).with_lbp().with_coverage(MA_SOPT)
    [warning] = hooks.book(record.appointment_book(appointment()))
    assert warning["source"]["topic"]["code"] == PN


def test_a_patient_outside_every_msc_region_gets_no_msc_card(hooks):
    far = patient(45, postal_code="99501").with_lbp().with_coverage(COMMERCIAL_SOPT)  # Anchorage
    assert topics(hooks.book(far.appointment_book(appointment()))) == [PN]
    unknown = patient(45, postal_code=None).with_lbp().with_coverage(COMMERCIAL_SOPT)
    assert topics(hooks.book(unknown.appointment_book(appointment()))) == [PN, MSC]  # unknown is not outside


def test_while_the_msc_requirement_is_suspended_no_msc_card(settings, tmp_path):
    copy = ContentCopy.of_guideline_data(tmp_path)
    copy.replace(
        "policy.yaml",
        "msc_requirement_suspensions: []",
        'msc_requirement_suspensions:\n  - from: 2020-03-23\n    notice: "Suspended until further notice."',
    )
    hooks = Hooks(create_app(settings, content=load_content(copy.root), clock=CLOCK).test_client())
    assert topics(hooks.book(adult_with_lbp().appointment_book(appointment()))) == [PN]


# --- Prior Notification on file --------------------------------------------------------------------------


def test_after_the_practice_files_the_form_booking_again_gives_no_pn_warning(hooks, client):
    body = adult_with_lbp().appointment_book(appointment(aid="apt-1"))
    [warning, _msc] = hooks.book(body)
    file_on_form(client, warning)
    assert topics(hooks.book(body)) == [MSC]  # the MSC card stays: it is another concern


def test_a_pn_filed_for_another_practice_does_not_count(hooks, client):
    [warning, _msc] = hooks.book(adult_with_lbp().appointment_book(appointment(aid="apt-1")))
    file_on_form(client, warning, **{"practice-npi": "1234567893", "surgeon-npi": "1234567893"})
    other_visit = appointment(aid="apt-2")  # same practice NPIs as the builder: the PN named others
    assert topics(hooks.book(adult_with_lbp().appointment_book(other_visit))) == [PN, MSC]


def test_a_pn_filed_for_this_practice_covers_its_other_booking(hooks, client):
    [warning, _msc] = hooks.book(adult_with_lbp().appointment_book(appointment(aid="apt-1")))
    file_on_form(client, warning)
    assert topics(hooks.book(adult_with_lbp().appointment_book(appointment(aid="apt-2")))) == [MSC]


def store_pn(
    app, *, scope: Scope | None = None, patient_id: str = "p1", days_ago: int = 0, practice_npi: str = "1407071236"
):
    """A Prior Notification on file, as if filed `days_ago` days ago."""
    scope = scope or Scope()
    when = datetime.now(UTC) - timedelta(days=days_ago)  # the instant; the program's day is what counts
    record = PriorNotificationRecord(
        id=f"pn-{days_ago}-{scope.issuer}",
        submission_key=f"key-{days_ago}-{scope.issuer}-{patient_id}",
        questionnaire=f"{BASE_URL}/fhir/Questionnaire/lbp-prior-notification",
        status="completed",
        scope=scope,
        patient_id=patient_id,
        appointment_id=None,
        form_context_id=None,
        submitted_via="api",
        submitted_at=when,
        filed_on=TODAY - timedelta(days=days_ago),
        response={"resourceType": "QuestionnaireResponse", "status": "completed"},
        fields={"practice_npi": practice_npi, "surgeon_npi": "9941339100"},
    )
    services_of(app).prior_notifications.record(record)


@pytest.mark.parametrize(("days", "warned"), [(89, False), (90, False), (91, True)])
def test_a_pn_covers_the_visit_for_90_days(app, hooks, days, warned):
    store_pn(app, days_ago=days)
    expected = [PN, MSC] if warned else [MSC]
    assert topics(hooks.book(adult_with_lbp().appointment_book(appointment()))) == expected


def test_a_pn_of_another_ehr_or_patient_does_not_count(app, hooks):
    store_pn(app, scope=Scope("https://other-ehr.example.org", None))
    store_pn(app, patient_id="p2")
    assert topics(hooks.book(adult_with_lbp().appointment_book(appointment()))) == [PN, MSC]


def test_a_visit_that_names_no_npi_counts_any_pn_of_the_patient(app, hooks):
    store_pn(app, practice_npi="1234567893")
    visit = appointment(surgeon_npi=None, practice_npi=None)
    assert topics(hooks.book(adult_with_lbp().appointment_book(visit))) == [MSC]


# --- the database down ------------------------------------------------------------------------------------


def test_with_the_database_down_the_pn_card_says_it_could_not_check_and_links_the_blank_form(settings, content, outage):
    app = create_app(settings.model_copy(update=dict(database_url=outage.url)), content=content, clock=CLOCK)
    hooks = Hooks(app.test_client())
    outage.down()
    cards = hooks.book(adult_with_lbp().appointment_book(appointment()))
    assert topics(cards) == [PN, MSC]
    assert cards[0]["indicator"] == "warning"
    if outage.kind == "postgresql":  # nothing can be read
        assert "could not be checked" in cards[0]["summary"]
    else:  # a locked SQLite file still reads (WAL), but the form's context cannot be written
        assert "No Prior Notification on file" in cards[0]["summary"]
    assert form_link(cards[0]) == "/prior-notification/form"  # no context could be stored: the blank form
    blank = hooks.client.get("/prior-notification/form").get_data(as_text=True)
    assert "This is the blank form" in blank and '<form method="post"' not in blank
    outage.up()
    services_of(app).close()


def test_after_a_failed_read_the_next_calls_do_not_wait_for_the_database(settings, content, postgres_outage):
    outage = postgres_outage
    app = create_app(settings.model_copy(update=dict(database_url=outage.url)), content=content, clock=CLOCK)
    hooks = Hooks(app.test_client())
    outage.down()
    body = adult_with_lbp().appointment_book(appointment())
    hooks.book(body)
    store = services_of(app).prior_notifications
    assert store._down_until > time.monotonic()  # backing off: answers "unavailable" at once
    assert "could not be checked" in hooks.book(body)[0]["summary"]
    outage.up()
    store._down_until = 0.0
    assert "No Prior Notification on file" in hooks.book(body)[0]["summary"]
    services_of(app).close()


def test_only_calls_the_pn_rule_is_about_read_the_pn_records(app, hooks, monkeypatch):
    store = services_of(app).prior_notifications
    reads = []
    original = store.on_file
    monkeypatch.setattr(store, "on_file", lambda *args: reads.append(args) or original(*args))
    hooks.book(adult_with_lbp().appointment_book(appointment(appointment_type="FOLLOWUP")))
    hooks.book(patient(14).with_lbp().with_coverage(COMMERCIAL_SOPT).appointment_book(appointment()))
    hooks.sign(adult_with_lbp().order_sign(medication_request(reason="M54.50")))  # an opioid, no referral
    assert reads == []
    hooks.book(adult_with_lbp().appointment_book(appointment()))
    hooks.sign(adult_with_lbp().order_sign(ortho_referral()))
    assert [args[1] for args in reads] == ["p1", "p1"]  # (scope, patient id, since)


# --- whom the visit is with, as EHRs send it, and spine care already under way -------------------------


def by_reference(visit, record, form, *resources):
    """The visit's surgeon as EHRs send it: prefetched (practitionerRoles), or only on the FHIR server."""
    first = resources[0]
    for resource in resources:
        record.with_referenced(resource, prefetched_as="practitionerRoles" if form == "prefetch" else None)
    visit["participant"].append(
        {"actor": {"reference": f"{first['resourceType']}/{first['id']}"}, "status": "tentative"}
    )
    return visit


@pytest.mark.processes
@pytest.mark.parametrize("form", FORMS)
def test_a_visit_with_a_neurosurgeon_known_by_reference_gets_the_cards(ehr, form):
    record = adult_with_lbp()
    visit = by_reference(appointment(surgeon=None), record, form, practitioner_role(NEUROSURGEON, rid="neuro-1"))
    assert topics(ehr.cards(form, record, lambda r: r.appointment_book(visit), hook="book")) == [PN, MSC]
    if form == "fallback":
        assert any("PractitionerRole?_id=neuro-1" in url for url in ehr.fetched())


@pytest.mark.processes
@pytest.mark.parametrize("form", FORMS)
def test_a_visit_with_a_hand_surgeon_known_by_reference_is_silent(ehr, form):
    record = adult_with_lbp()
    visit = by_reference(appointment(surgeon=None), record, form, practitioner_role(HAND_SURGEON, rid="hand-1"))
    assert ehr.cards(form, record, lambda r: r.appointment_book(visit), hook="book") == []


def test_a_visit_with_an_unknown_practitioner_and_no_fhir_server_is_refused_rather_than_guessed(client):
    visit = appointment(surgeon=None)
    visit["participant"].append({"actor": {"reference": "PractitionerRole/unknown"}, "status": "tentative"})
    response = client.post("/cds-services/lbp-appointment-book", json=adult_with_lbp().appointment_book(visit))
    assert response.status_code == 412
    assert "referencedPractitioners" in response.get_json()["issue"][0]["diagnostics"]


def test_a_visit_whose_own_specialty_decides_needs_no_participant_data(hooks):
    visit = appointment()  # specialty on its contained role, and on the Appointment itself
    visit["specialty"] = [{"coding": [{"system": "http://nucc.org/provider-taxonomy", "code": SPINE_SURGEON}]}]
    visit["participant"].append({"actor": {"reference": "PractitionerRole/unknown"}, "status": "tentative"})
    assert topics(hooks.book(adult_with_lbp().appointment_book(visit))) == [PN, MSC]


def test_a_patient_already_under_a_spine_surgeons_care_is_not_at_an_initial_visit(hooks):
    record = adult_with_lbp().with_encounter(service_type=(NUCC, NEUROSURGEON), days=90, reason="M54.16")
    assert hooks.book(record.appointment_book(appointment())) == []


def test_a_patient_after_lumbar_spine_surgery_is_not_at_an_initial_visit(hooks):
    record = adult_with_lbp().with_condition("M96.1", clinical_status=None)
    assert hooks.book(record.appointment_book(appointment())) == []
