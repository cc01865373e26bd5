"""patient-view (lbp-patient-view): physical therapy first-line and opioid-sparing care."""

from __future__ import annotations

from tests.builders import CPT, NUCC, SUBOXONE, days_ago, medication_request, patient, service_request
from tests.conftest import topics

PT = "physical-therapy-first-line"
OPIOID = "opioid-sparing-alternatives"


def adult_with_lbp():
    return patient(52).with_lbp()


def test_active_lbp_without_recent_pt_gets_the_pt_card(hooks):
    [card] = hooks.view(adult_with_lbp().patient_view())
    assert card["source"]["topic"]["code"] == PT
    assert card["indicator"] == "info"
    detail = card["detail"]
    assert "every US state" in detail and "Minnesota and Wisconsin allow it with provisions (APTA 2024)" in detail
    assert "Fritz 2012" in detail and "Childs 2015" in detail
    assert "60% lower" in detail and "than delayed (but adherent) PT" in detail
    assert "cognitive behavioral therapy" in detail and "weight management" in detail
    pt, cbt = card["suggestions"]
    assert cbt["actions"][0]["resource"]["code"]["coding"][0]["code"] == "228557008"
    assert pt["isRecommended"] is True
    assert pt["actions"][0]["resource"]["code"]["coding"][0]["code"] == "444831000124102"
    assert pt["actions"][0]["resource"]["reasonReference"] == [{"reference": "Condition/lbp"}]
    assert all(a["type"] == "create" for s in card["suggestions"] for a in s["actions"])


def test_pt_evaluation_in_the_last_90_days_silences_it(hooks):
    record = adult_with_lbp().with_encounter(type_code=(CPT, "97162"), days=45)
    assert hooks.view(record.patient_view()) == []


def test_pt_evaluation_long_ago_does_not(hooks):
    record = adult_with_lbp().with_encounter(type_code=(CPT, "97161"), days=120)
    assert topics(hooks.view(record.patient_view())) == [PT]


def test_visit_with_a_physical_therapist_silences_it(hooks):
    record = adult_with_lbp().with_encounter(service_type=(NUCC, "225100000X"), days=10)
    assert hooks.view(record.patient_view()) == []


def test_active_pt_referral_silences_it(hooks):
    referral = service_request("444831000124102", status="active", authored=days_ago(20))
    assert hooks.view(adult_with_lbp().with_service_request(referral).patient_view()) == []


def test_old_completed_pt_referral_does_not(hooks):
    referral = service_request("444831000124102", status="completed", authored=days_ago(200))
    assert topics(hooks.view(adult_with_lbp().with_service_request(referral).patient_view())) == [PT]


def test_resolved_lbp_gets_no_card(hooks):
    record = patient(52).with_condition("M54.50", clinical_status="resolved")
    assert hooks.view(record.patient_view()) == []


def test_refuted_lbp_gets_no_card(hooks):
    record = patient(52).with_lbp()
    record.conditions[0]["verificationStatus"] = {
        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "refuted"}]
    }
    assert hooks.view(record.patient_view()) == []


def test_patient_without_back_pain_gets_no_card(hooks):
    assert hooks.view(patient(52).with_condition("J45.909").patient_view()) == []


def test_child_with_back_pain_gets_no_card(hooks):
    assert hooks.view(patient(15).with_lbp().patient_view()) == []


def test_cauda_equina_silences_first_line_advice(hooks):
    assert hooks.view(adult_with_lbp().with_condition("G83.4").patient_view()) == []


def test_active_opioid_adds_the_opioid_sparing_card(hooks):
    record = adult_with_lbp().with_medication(medication_request(status="active"))
    assert topics(hooks.view(record.patient_view())) == [PT, OPIOID]


def test_stopped_opioid_does_not(hooks):
    record = adult_with_lbp().with_medication(medication_request(status="stopped"))
    assert topics(hooks.view(record.patient_view())) == [PT]


def test_buprenorphine_naloxone_for_oud_does_not(hooks):
    record = adult_with_lbp().with_medication(medication_request(SUBOXONE, status="active"))
    assert topics(hooks.view(record.patient_view())) == [PT]


def test_pt_evaluation_procedure_in_the_last_90_days_silences_it(hooks):
    record = adult_with_lbp().with_procedure((CPT, "97163"), days=30)
    assert hooks.view(record.patient_view()) == []


def test_pt_evaluation_procedure_long_ago_does_not(hooks):
    record = adult_with_lbp().with_procedure((CPT, "97163"), days=200)
    assert topics(hooks.view(record.patient_view())) == [PT]
