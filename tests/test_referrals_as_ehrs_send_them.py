"""Recognising a spine referral and its reason as EHRs send them: generic referral codes, performers named by
reference, locally coded specialties, reasons given by contained Conditions, PT referrals with 'orthopedic' in
their name. Each case where data is resolved by reference runs in prefetch form and in fallback form (the data
on the real test FHIR server)."""

from __future__ import annotations

import pytest

from tests.builders import (
    ORDER_KEYS,
    SNOMED,
    contained_reason,
    ortho_referral,
    patient,
    practitioner,
    practitioner_role,
    service_request,
    with_fhir_server,
)
from tests.ehr_forms import FORMS, TOKEN

MSC = "msc-evaluation-first"
GENERIC = "3457005"  # SNOMED CT Patient referral: says nothing about the specialty
LOCAL = "urn:oid:1.2.840.114350.1.13.0.1.7.10.798268.30"  # an EHR's own specialty codes


def topics(cards):
    return [c["source"]["topic"]["code"] for c in cards]


def generic_referral(**kwargs):
    return service_request(GENERIC, reason="M54.50", **kwargs)


def to_performer(referral, record, form, *resources):
    """The referral's performer as EHRs send it: contained in the order (prefetch form, nothing to fetch),
    or by reference to the resource on the FHIR server (fallback form). The first resource is the performer."""
    first = resources[0]
    if form == "prefetch":
        referral["contained"] = [dict(r) for r in resources]
        referral["performer"] = [{"reference": f"#{first['id']}"}]
    else:
        for resource in resources:
            record.with_referenced(resource)
        referral["performer"] = [{"reference": f"{first['resourceType']}/{first['id']}"}]
    return referral


# --- a generic referral code carries no specialty -------------------------------------------------------


@pytest.mark.processes
@pytest.mark.parametrize("form", FORMS)
def test_generic_referral_to_a_spine_surgeon_practitioner_role_gets_the_msc_card(ehr, form):
    record = patient(45).with_lbp()
    referral = to_performer(generic_referral(), record, form, practitioner_role("207XS0117X", rid="spine-1"))
    assert topics(ehr.cards(form, record, lambda r: r.order_select(referral))) == [MSC]
    if form == "fallback":
        assert any("PractitionerRole?_id=spine-1" in url for url in ehr.fetched())


@pytest.mark.processes
@pytest.mark.parametrize("form", FORMS)
def test_generic_referral_to_a_practitioner_whose_role_is_neurosurgery_gets_the_msc_card(ehr, form):
    record = patient(45).with_lbp()
    role = practitioner_role("207T00000X", practitioner="dr-neuro")
    if form == "prefetch":  # a contained Practitioner has no roles: the EHR contains the role itself
        referral = to_performer(generic_referral(), record, form, role)
    else:
        referral = to_performer(generic_referral(), record, form, practitioner("dr-neuro"), role)
    assert topics(ehr.cards(form, record, lambda r: r.order_select(referral))) == [MSC]


@pytest.mark.processes
@pytest.mark.parametrize("form", FORMS)
def test_generic_referral_to_an_orthopedic_hand_surgeon_gets_no_card(ehr, form):
    record = patient(45).with_lbp()
    referral = to_performer(generic_referral(), record, form, practitioner_role("207XS0106X", rid="hand-1"))
    assert ehr.cards(form, record, lambda r: r.order_select(referral)) == []


@pytest.mark.processes
@pytest.mark.parametrize("form", FORMS)
def test_generic_referral_to_a_physical_therapist_gets_no_card(ehr, form):
    record = patient(45).with_lbp()
    referral = to_performer(
        generic_referral(text="Referral"), record, form, practitioner_role("225100000X", rid="pt-1")
    )
    assert ehr.cards(form, record, lambda r: r.order_select(referral)) == []


def test_generic_referral_with_a_locally_coded_neurosurgery_performer_type_gets_the_msc_card(hooks):
    referral = generic_referral(performer="NSURG", performer_system=LOCAL, performer_display="Neurosurgery")
    assert topics(hooks.select(patient(45).with_lbp().order_select(referral))) == [MSC]


def test_generic_referral_code_does_not_switch_off_the_words_of_the_order(hooks):
    referral = generic_referral(text="Referral to Orthopedic Spine Surgery")
    assert topics(hooks.select(patient(45).with_lbp().order_select(referral))) == [MSC]


def test_generic_referral_with_a_locally_coded_cardiology_performer_gets_no_card(hooks):
    referral = generic_referral(performer="CARD", performer_system=LOCAL, performer_display="Cardiology")
    assert hooks.select(patient(45).with_lbp().order_select(referral)) == []


def test_generic_referral_alone_says_nothing_and_gets_no_card(hooks):
    assert hooks.select(patient(45).with_lbp().order_select(generic_referral())) == []


def test_specialty_code_decides_over_the_words(hooks):
    """A NUCC performer type says the specialty: 'ortho' in the order's text does not make it spine surgery."""
    referral = generic_referral(performer="207RC0000X", text="Ortho follow-up")  # cardiovascular disease
    assert hooks.select(patient(45).with_lbp().order_select(referral)) == []


# --- a physical therapy referral is never spine-surgical ------------------------------------------------


@pytest.mark.parametrize(
    "referral",
    [
        pytest.param(
            service_request("REF-PT-ORTHO", system=LOCAL, text="AMB REFERRAL TO PHYSICAL THERAPY - ORTHOPEDIC"),
            id="local name with orthopedic",
        ),
        pytest.param(service_request(GENERIC, text="Physiotherapy, orthopaedic spine"), id="physiotherapy words"),
        pytest.param(service_request(None, performer="2251X0800X", text="Ortho referral"), id="orthopedic PT"),
        pytest.param(service_request("444831000124102", text="PT for orthopedic back pain"), id="SNOMED PT code"),
    ],
)
def test_physical_therapy_referral_is_never_a_spine_surgical_referral(hooks, referral):
    assert hooks.select(patient(45).with_lbp().order_select(referral)) == []


def test_orthopedic_referral_that_is_not_physical_therapy_still_counts(hooks):
    referral = service_request("REF-ORTHO", system=LOCAL, text="AMB REFERRAL TO ORTHOPEDIC SURGERY")
    assert topics(hooks.select(patient(45).with_lbp().order_select(referral))) == [MSC]


# --- the reason, as a Condition contained in the order --------------------------------------------------


def test_contained_lumbar_radiculopathy_reason_gets_the_card(hooks):
    referral = contained_reason(ortho_referral(), "M54.16")
    assert topics(hooks.select(patient(45).order_select(referral))) == [MSC]


def test_contained_knee_osteoarthritis_reason_gets_no_card_even_with_lbp_on_the_list(hooks):
    referral = contained_reason(ortho_referral(), "M17.11")
    assert hooks.select(patient(45).with_lbp().order_select(referral)) == []


def test_contained_snomed_low_back_pain_reason_gets_the_card(hooks):
    referral = contained_reason(ortho_referral(), "279039007", system=SNOMED)
    assert topics(hooks.select(patient(45).order_select(referral))) == [MSC]


def knee_condition(cid: str) -> dict:
    return {
        "resourceType": "Condition",
        "id": cid,
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M17.11"}]},
    }


@pytest.mark.processes
@pytest.mark.parametrize("form", FORMS)
def test_referenced_knee_osteoarthritis_reason_gets_no_card(ehr, form):
    record = patient(45).with_lbp().with_referenced(knee_condition("knee-1"), prefetched_as="conditions")
    referral = ortho_referral(reason=None, reason_reference="Condition/knee-1")
    assert ehr.cards(form, record, lambda r: r.order_select(referral)) == []


@pytest.mark.processes
def test_reason_condition_missing_from_the_prefetch_is_fetched_by_reference(ehr):
    """The EHR prefetched its problem list only; the order's reason is an encounter diagnosis on the server."""
    record = patient(45).with_lbp().with_referenced(knee_condition("knee-2"))
    ehr.server.load(record.resources())
    referral = ortho_referral(reason=None, reason_reference="Condition/knee-2")
    body = with_fhir_server(record.order_select(referral), ehr.server.base_url, TOKEN, keep=ORDER_KEYS)
    assert ehr.hooks.select(body) == []
    assert [url.split("/fhir/R4/")[1] for url in ehr.fetched()] == ["Condition?_id=knee-2"]
