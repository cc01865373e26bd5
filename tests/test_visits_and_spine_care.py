"""Who a visit was with (the participant's PractitionerRole specialty), and the initial spine-surgeon visit
only: a patient already under a spine surgeon's care, or after lumbar spine surgery, gets no MSC card. Cases
resolved by reference run in prefetch form (practitionerRoles / practitioners keys) and in fallback form
(fetched from the real test FHIR server)."""

from __future__ import annotations

import pytest

from tests.builders import (
    CPT,
    NUCC,
    ORDER_KEYS,
    SNOMED,
    medication_request,
    ortho_referral,
    patient,
    practitioner,
    practitioner_role,
    with_fhir_server,
)
from tests.conftest import topics
from tests.ehr_forms import FORMS, TOKEN

MSC = "msc-evaluation-first"
PN = "prior-notification-required"
PT = "physical-therapy-first-line"
OPIOID = "opioid-sparing-alternatives"


def visit_with_role(record, specialty, *, system=NUCC, rid, days=60, reason="M54.50"):
    """A finished visit whose type says nothing, with a participant PractitionerRole of that specialty."""
    record.with_referenced(practitioner_role(specialty, system=system, rid=rid), prefetched_as="practitionerRoles")
    return record.with_encounter(days=days, reason=reason, participant=f"PractitionerRole/{rid}")


def visit_with_practitioner(record, specialty, *, system=NUCC, pid, days=60, reason="M54.50"):
    """The same, with a participant Practitioner whose PractitionerRole carries the specialty."""
    record.with_referenced(practitioner(pid), prefetched_as="practitioners")
    record.with_referenced(practitioner_role(specialty, system=system, practitioner=pid), prefetched_as="practitioners")
    return record.with_encounter(days=days, reason=reason, participant=f"Practitioner/{pid}")


def select(record):
    return record.order_select(ortho_referral())


# --- who the visit was with ---------------------------------------------------------------------------


@pytest.mark.processes
@pytest.mark.parametrize("form", FORMS)
def test_visit_with_a_pmr_practitioner_role_counts_as_the_msc_evaluation(ehr, form):
    record = visit_with_role(patient(45).with_lbp(), "208100000X", rid="pmr-1")
    [card] = ehr.cards(form, record, select)
    assert card["source"]["topic"]["code"] == PN and "MSC evaluation notes" in card["detail"]


@pytest.mark.processes
@pytest.mark.parametrize("form", FORMS)
def test_visit_with_a_practitioner_whose_role_is_snomed_rehabilitation_counts_as_the_msc_evaluation(ehr, form):
    record = visit_with_practitioner(patient(45).with_lbp(), "394602003", system=SNOMED, pid="dr-rehab")
    assert topics(ehr.cards(form, record, select)) == [PN]
    if form == "fallback":
        fetched = " ".join(ehr.fetched())
        assert (
            "Practitioner?_id=dr-rehab" in fetched and "PractitionerRole?practitioner=Practitioner/dr-rehab" in fetched
        )


@pytest.mark.processes
@pytest.mark.parametrize("form", FORMS)
def test_visit_with_a_family_physician_is_not_an_msc_evaluation(ehr, form):
    record = visit_with_role(patient(45).with_lbp(), "207Q00000X", rid="fm-1")
    assert topics(ehr.cards(form, record, select)) == [MSC]


@pytest.mark.processes
@pytest.mark.parametrize("form", FORMS)
def test_visit_with_a_physical_therapist_silences_the_pt_card(ehr, form):
    record = visit_with_practitioner(patient(52).with_lbp(), "225100000X", pid="dr-pt", days=20, reason=None)
    assert ehr.cards(form, record, lambda r: r.patient_view(), hook="view") == []


@pytest.mark.processes
@pytest.mark.parametrize("form", FORMS)
def test_visit_with_a_chiropractor_does_not_silence_the_pt_card(ehr, form):
    record = visit_with_role(patient(52).with_lbp(), "111N00000X", rid="chiro-1", days=20, reason=None)
    assert topics(ehr.cards(form, record, lambda r: r.patient_view(), hook="view")) == [PT]


# --- when the visit's practitioner cannot be had --------------------------------------------------------


def test_unknown_visit_practitioner_without_a_fhir_server_is_refused_rather_than_guessed(hooks):
    record = patient(45).with_lbp().with_encounter(days=30, reason="M54.50", participant="PractitionerRole/gone")
    body = select(record)
    response = hooks.client.post("/cds-services/lbp-referral-select", json=body)
    assert response.status_code == 412
    assert "referencedPractitioners" in response.get_json()["issue"][0]["diagnostics"]


@pytest.mark.processes
def test_failed_practitioner_fetch_refuses_the_msc_card(ehr):
    record = visit_with_role(patient(45).with_lbp(), "208100000X", rid="pmr-2")
    ehr.server.load(record.resources())
    ehr.server.fail("PractitionerRole", 503)
    body = with_fhir_server(select(record), ehr.server.base_url, TOKEN, keep=ORDER_KEYS)
    response = ehr.hooks.client.post("/cds-services/lbp-referral-select", json=body)
    assert response.status_code == 412
    diagnostics = response.get_json()["issue"][0]["diagnostics"]
    assert "referencedPractitioners" in diagnostics and "PractitionerRole/pmr-2" in diagnostics and "503" in diagnostics


@pytest.mark.processes
def test_failed_practitioner_fetch_still_gives_the_opioid_card(ehr):
    record = visit_with_role(patient(45).with_lbp(), "208100000X", rid="pmr-3")
    ehr.server.load(record.resources())
    ehr.server.fail("PractitionerRole", 503)
    body = with_fhir_server(record.order_select(medication_request()), ehr.server.base_url, TOKEN, keep=ORDER_KEYS)
    assert topics(ehr.hooks.select(body)) == [OPIOID]


@pytest.mark.processes
def test_dangling_practitioner_reference_on_the_server_is_no_data_not_missing_data(ehr):
    record = patient(45).with_lbp().with_encounter(days=30, reason="M54.50", participant="PractitionerRole/never")
    ehr.server.load(record.resources())
    body = with_fhir_server(select(record), ehr.server.base_url, TOKEN, keep=ORDER_KEYS)
    assert topics(ehr.hooks.select(body)) == [MSC]


@pytest.mark.processes
def test_reference_round_spends_only_what_is_left_of_the_budget(ehr):
    record = visit_with_role(patient(45).with_lbp(), "208100000X", rid="pmr-4")
    ehr.server.load(record.resources())
    ehr.server.delay("Encounter", 2000)  # the first round uses most of the 3 s budget
    ehr.server.delay("PractitionerRole", 1500)
    body = with_fhir_server(select(record), ehr.server.base_url, TOKEN, keep=("patient", "conditions"))
    response = ehr.hooks.client.post("/cds-services/lbp-referral-select", json=body)
    assert response.status_code == 412
    assert "referencedPractitioners" in response.get_json()["issue"][0]["diagnostics"]


# --- the initial spine-surgeon visit only ---------------------------------------------------------------


@pytest.mark.processes
@pytest.mark.parametrize("form", FORMS)
def test_patient_under_a_spine_surgeons_care_gets_prior_notification_not_the_msc_card(ehr, form):
    record = visit_with_role(patient(45).with_lbp(), "207XS0117X", rid="spine-9", days=100)
    [card] = ehr.cards(form, record, select)
    assert card["source"]["topic"]["code"] == PN
    assert "seen a spine surgeon for low back pain within the past year" in card["detail"]


@pytest.mark.processes
@pytest.mark.parametrize("form", FORMS)
def test_referral_back_to_the_same_spine_surgeon_gets_no_card(ehr, form):
    record = visit_with_role(patient(45).with_lbp(), "207XS0117X", rid="spine-8", days=100)
    referral = ortho_referral(performer_reference="PractitionerRole/spine-8")
    assert ehr.cards(form, record, lambda r: r.order_select(referral)) == []


def test_spine_surgeon_visit_more_than_a_year_ago_is_not_ongoing_care(hooks):
    record = visit_with_role(patient(45).with_lbp(), "207XS0117X", rid="spine-7", days=400)
    assert topics(hooks.select(select(record))) == [MSC]


def test_orthopedic_surgeon_visit_for_the_knee_is_not_spine_care(hooks):
    record = visit_with_role(patient(45).with_lbp(), "207X00000X", rid="ortho-1", days=60, reason="M17.11")
    assert topics(hooks.select(select(record))) == [MSC]


def test_visit_typed_as_neurosurgery_for_lbp_is_spine_care(hooks):
    record = patient(45).with_lbp().with_encounter(service_type=(NUCC, "207T00000X"), days=90, reason="M54.16")
    assert topics(hooks.select(select(record))) == [PN]


@pytest.mark.parametrize(
    "code",
    [
        pytest.param("M96.1", id="postlaminectomy syndrome"),
        pytest.param("M43.27", id="lumbosacral fusion"),
        pytest.param("Z98.1", id="arthrodesis status"),
        pytest.param("M96.0", id="pseudarthrosis after fusion"),
    ],
)
def test_patient_after_lumbar_spine_surgery_gets_prior_notification_not_the_msc_card(hooks, code):
    [card] = hooks.select(select(patient(60).with_lbp().with_condition(code, clinical_status=None)))
    assert card["source"]["topic"]["code"] == PN and "has had lumbar spine surgery" in card["detail"]


def test_resolved_postlaminectomy_status_is_still_a_past_surgery(hooks):
    record = patient(60).with_lbp().with_condition("M96.1", clinical_status="resolved")
    assert topics(hooks.select(select(record))) == [PN]


def test_lumbar_laminotomy_procedure_means_after_lumbar_surgery(hooks):
    record = patient(60).with_lbp().with_procedure((CPT, "63030"), days=900)
    assert topics(hooks.select(select(record))) == [PN]


@pytest.mark.parametrize(
    "record",
    [
        pytest.param(patient(60).with_lbp().with_condition("M43.22"), id="cervical fusion"),
        pytest.param(patient(60).with_lbp().with_procedure((CPT, "27447"), days=900), id="knee arthroplasty"),
        pytest.param(patient(60).with_lbp().with_procedure((CPT, "63030"), status="not-done"), id="not done"),
    ],
)
def test_other_surgery_leaves_the_initial_visit_gated(hooks, record):
    assert topics(hooks.select(select(record))) == [MSC]


def test_lumbar_surgery_history_outranks_medicare_advantage_with_its_own_basis(hooks):
    record = patient(70).with_lbp().with_coverage("111").with_condition("M96.1")
    [card] = hooks.select(select(record))
    assert "has had lumbar spine surgery" in card["detail"]


@pytest.mark.processes
def test_a_refusal_for_a_failed_practitioner_fetch_logs_the_key_but_not_the_resource_ids(ehr, caplog):
    record = visit_with_role(patient(45).with_lbp(), "208100000X", rid="sntl-role-4417")
    ehr.server.load(record.resources())
    ehr.server.fail("PractitionerRole", 503)
    body = with_fhir_server(select(record), ehr.server.base_url, TOKEN, keep=ORDER_KEYS)
    with caplog.at_level("DEBUG", logger="lbp_cds"):
        response = ehr.hooks.client.post("/cds-services/lbp-referral-select", json=body)
    assert response.status_code == 412 and "sntl-role-4417" in response.get_json()["issue"][0]["diagnostics"]
    # The service's own lines (urllib3's DEBUG lines name URLs, but the service never logs below INFO).
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name == "lbp_cds")
    assert "prefetch-unavailable: referencedPractitioners" in logged
    assert "sntl-role-4417" not in logged
