"""order-sign (lbp-referral-sign) and the opioid-sparing card at order-select and order-sign."""

from __future__ import annotations

import pytest

from tests.builders import SUBOXONE, medication_request, ortho_referral, patient, service_request
from tests.conftest import topics

MSC = "msc-evaluation-first"
OPIOID = "opioid-sparing-alternatives"


def adult_with_lbp():
    return patient(45).with_lbp()


def test_order_sign_judges_every_draft_order_in_one_msc_card(hooks):
    first, second = ortho_referral(), service_request("308482002")
    [card] = hooks.sign(adult_with_lbp().order_sign(first, second))
    assert topics([card]) == [MSC]
    swap = card["suggestions"][0]["actions"]
    assert [a.get("resourceId") for a in swap if a["type"] == "delete"] == [
        f"ServiceRequest/{first['id']}",
        f"ServiceRequest/{second['id']}",
    ]
    assert [a["type"] for a in swap].count("create") == 1, "one MSC referral for both spine referrals"


def test_order_sign_applies_the_same_exemptions(hooks):
    record = adult_with_lbp().with_coverage("111")
    assert topics(hooks.sign(record.order_sign(ortho_referral()))) == ["prior-notification-required"]
    assert hooks.sign(patient(16).with_lbp().order_sign(ortho_referral())) == []
    assert hooks.sign(adult_with_lbp().with_condition("G83.4").order_sign(ortho_referral())) == []


def test_order_sign_without_relevant_orders_is_silent(hooks):
    assert hooks.sign(adult_with_lbp().order_sign(service_request("444831000124102"))) == []


def test_opioid_selected_for_lbp_offers_pt_and_cbt(hooks):
    [card] = hooks.select(adult_with_lbp().order_select(medication_request()))
    assert card["source"]["topic"]["code"] == OPIOID
    assert card["indicator"] == "info"
    assert "CDC" in card["detail"] and "2022" in card["detail"]
    labels = [s["label"] for s in card["suggestions"]]
    assert labels == ["Add a physical therapy referral", "Add a cognitive behavioral therapy referral"]
    cbt = card["suggestions"][1]["actions"][0]["resource"]
    assert cbt["code"]["coding"][0]["code"] == "228557008"
    assert cbt["reasonReference"] == [{"reference": "Condition/lbp"}]


def test_opioid_and_spine_referral_at_signing_get_both_cards(hooks):
    cards = hooks.sign(adult_with_lbp().order_sign(ortho_referral(), medication_request()))
    assert topics(cards) == [MSC, OPIOID]


def test_medication_for_opioid_use_disorder_gets_no_opioid_card(hooks):
    assert hooks.select(adult_with_lbp().order_select(medication_request(SUBOXONE))) == []


def test_non_opioid_medication_gets_no_card(hooks):
    ibuprofen = medication_request("197806")  # ibuprofen 600 MG Oral Tablet
    assert hooks.select(adult_with_lbp().order_select(ibuprofen)) == []


def test_opioid_for_another_problem_gets_no_card(hooks):
    assert hooks.select(adult_with_lbp().order_select(medication_request(reason="N20.0"))) == []


def test_opioid_for_a_patient_without_lbp_gets_no_card(hooks):
    assert hooks.select(patient(45).order_select(medication_request())) == []


def test_opioid_with_an_lbp_reason_counts_without_a_problem_list(hooks):
    assert topics(hooks.select(patient(45).order_select(medication_request(reason="M54.50")))) == [OPIOID]


@pytest.mark.parametrize(
    "code",
    [
        pytest.param("D57.00", id="sickle cell disease"),
        pytest.param("C34.90", id="active lung cancer"),
    ],
)
def test_cdc_exclusion_conditions_silence_the_opioid_card(hooks, code):
    record = adult_with_lbp().with_condition(code)
    assert hooks.select(record.order_select(medication_request())) == []


def test_hospice_care_silences_the_opioid_card(hooks):
    record = adult_with_lbp().with_encounter(type_code=("http://snomed.info/sct", "385765002"), days=20)
    assert hooks.select(record.order_select(medication_request())) == []


def test_hospice_long_ago_does_not_silence_the_opioid_card(hooks):
    record = adult_with_lbp().with_encounter(type_code=("http://snomed.info/sct", "385765002"), days=800)
    assert topics(hooks.select(record.order_select(medication_request()))) == [OPIOID]


def test_child_prescribed_an_opioid_gets_no_card(hooks):
    assert hooks.select(patient(12).with_lbp().order_select(medication_request())) == []


def test_contained_medication_is_recognised(hooks):
    order = medication_request()
    del order["medicationCodeableConcept"]
    order["contained"] = [{"resourceType": "Medication", "id": "m", "code": {"coding": [
        {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1049621"}]}}]  # fmt: skip
    order["medicationReference"] = {"reference": "#m"}
    assert topics(hooks.select(adult_with_lbp().order_select(order))) == [OPIOID]


def test_hospice_procedure_silences_the_opioid_card(hooks):
    record = adult_with_lbp().with_procedure(("http://snomed.info/sct", "385765002"), days=10)
    assert hooks.select(record.order_select(medication_request())) == []
