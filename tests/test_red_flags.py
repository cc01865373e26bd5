"""Red flags that are history (ICD-10-CM 7th character: subsequent encounter, sequela) no longer silence the
program; red-flag findings without a diagnosis ask to rule out an emergency (red-flag-review card)."""

from __future__ import annotations

import pytest

from tests.builders import days_ago, medication_request, ortho_referral, patient
from tests.conftest import topics

MSC = "msc-evaluation-first"
PT = "physical-therapy-first-line"
OPIOID = "opioid-sparing-alternatives"
REVIEW = "red-flag-review"


# --- history is not an emergency ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        pytest.param("S32.010D", id="lumbar fracture, subsequent encounter, routine healing"),
        pytest.param("S32.010G", id="delayed healing"),
        pytest.param("S32.010K", id="nonunion"),
        pytest.param("S32.010P", id="malunion"),
        pytest.param("S32.010S", id="sequela"),
        pytest.param("S34.3XXS", id="cauda equina injury, sequela"),
    ],
)
def test_healed_or_followed_up_injury_does_not_silence_the_msc_card(hooks, code):
    record = patient(45).with_lbp().with_condition(code, onset=days_ago(20))
    assert topics(hooks.select(record.order_select(ortho_referral()))) == [MSC]


def test_old_vertebral_fracture_on_the_problem_list_leaves_pt_and_opioid_cards(hooks):
    record = patient(50).with_lbp().with_condition("S32.010D").with_medication(medication_request(status="active"))
    assert topics(hooks.view(record.patient_view())) == [PT, OPIOID]


def test_osteoporotic_vertebral_fracture_coded_for_follow_up_in_an_old_patient_is_history(hooks):
    record = patient(78).with_lbp().with_condition("M80.08XD", onset=days_ago(200))
    assert topics(hooks.select(record.order_select(ortho_referral()))) == [MSC]
    assert topics(hooks.select(record.order_select(medication_request()))) == [OPIOID]


def test_recent_osteoporotic_vertebral_fracture_still_silences_everything(hooks):
    record = patient(78).with_lbp().with_condition("M80.08XA", onset=days_ago(10))
    assert hooks.select(record.order_select(ortho_referral())) == []
    assert hooks.view(record.patient_view()) == []


def test_recent_initial_encounter_fracture_silences_the_card(hooks):
    record = patient(45).with_lbp().with_condition("S32.010A", onset=days_ago(14))
    assert hooks.select(record.order_select(ortho_referral())) == []


def test_initial_encounter_fracture_recorded_years_ago_is_history(hooks):
    record = patient(45).with_lbp().with_condition("S32.010A", clinical_status="active", recorded=days_ago(4 * 365))
    assert topics(hooks.select(record.order_select(ortho_referral()))) == [MSC]


def test_the_same_fracture_coded_again_as_a_new_problem_counts(hooks):
    record = (
        patient(70)
        .with_lbp()
        .with_condition("S32.010D", onset=days_ago(3 * 365))  # the old one, in follow-up
        .with_condition("S32.010A", onset=days_ago(5))  # a new fracture
    )
    assert hooks.select(record.order_select(ortho_referral())) == []


def test_undated_initial_encounter_fracture_is_read_as_current(hooks):
    record = patient(45).with_lbp().with_condition("M48.56XA")  # collapsed vertebra, lumbar, initial
    assert hooks.select(record.order_select(ortho_referral())) == []


def test_red_flag_without_an_encounter_character_counts_while_active_whatever_its_age(hooks):
    record = patient(45).with_lbp().with_condition("C79.51", onset=days_ago(5 * 365))  # bone metastasis
    assert hooks.select(record.order_select(ortho_referral())) == []


def with_reasons(*codes):
    referral = ortho_referral(reason=None)
    referral["reasonCode"] = [{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": c}]} for c in codes]
    return referral


def test_referral_for_lbp_and_a_fracture_in_follow_up_is_not_emergent(hooks):
    record = patient(45).with_lbp()
    assert topics(hooks.select(record.order_select(with_reasons("M54.50", "S32.010D")))) == [MSC]


def test_referral_for_lbp_and_a_new_fracture_is_emergent(hooks):
    record = patient(45).with_lbp()
    assert hooks.select(record.order_select(with_reasons("M54.50", "S32.010A"))) == []


# --- red-flag findings: rule out an emergency -----------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        pytest.param("R33.9", id="urinary retention"),
        pytest.param("R15.9", id="fecal incontinence"),
        pytest.param("R20.0", id="saddle anesthesia (anesthesia of skin)"),
        pytest.param("M21.371", id="foot drop"),
        pytest.param("R26.2", id="difficulty walking"),
    ],
)
def test_recent_finding_at_a_spine_referral_gives_the_red_flag_review_card_instead_of_msc(hooks, code):
    record = patient(45).with_lbp().with_condition(code, onset=days_ago(10))
    [card] = hooks.select(record.order_select(ortho_referral()))
    assert card["source"]["topic"]["code"] == REVIEW and card["indicator"] == "warning"
    assert "cauda equina syndrome" in card["detail"] and "ICSI" in card["detail"]
    assert "suggestions" not in card, "the card blocks nothing and changes no order"


def test_red_flag_review_card_at_signing(hooks):
    record = patient(45).with_lbp().with_condition("R33.9", onset=days_ago(10))
    assert topics(hooks.sign(record.order_sign(ortho_referral(), ortho_referral()))) == [REVIEW]


def test_red_flag_review_card_at_chart_open(hooks):
    record = patient(45).with_lbp().with_condition("M21.372", onset=days_ago(30))
    assert topics(hooks.view(record.patient_view())) == [REVIEW]


def test_referral_for_urinary_retention_in_a_patient_with_lbp_gets_the_review_card(hooks):
    record = patient(45).with_lbp()
    assert topics(hooks.select(record.order_select(ortho_referral(reason="R33.9")))) == [REVIEW]


def test_finding_noted_long_ago_gives_no_review_card(hooks):
    record = patient(45).with_lbp().with_condition("R33.9", onset=days_ago(200))
    assert topics(hooks.select(record.order_select(ortho_referral()))) == [MSC]
    assert topics(hooks.view(record.patient_view())) == [PT]


def test_finding_without_low_back_pain_gives_no_review_card(hooks):
    record = patient(45).with_condition("R33.9", onset=days_ago(5))
    assert hooks.view(record.patient_view()) == []
    assert hooks.select(record.order_select(ortho_referral(reason=None))) == []


def test_finding_beside_an_opioid_order_keeps_the_opioid_card_and_adds_no_review_card(hooks):
    record = patient(45).with_lbp().with_condition("R33.9", onset=days_ago(5))
    assert topics(hooks.select(record.order_select(medication_request()))) == [OPIOID]


def test_finding_at_signing_a_spine_referral_and_an_opioid_gives_review_and_opioid_cards(hooks):
    record = patient(45).with_lbp().with_condition("R33.9", onset=days_ago(5))
    assert topics(hooks.sign(record.order_sign(ortho_referral(), medication_request()))) == [REVIEW, OPIOID]


def test_finding_at_chart_open_replaces_the_pt_card_but_keeps_the_opioid_card(hooks):
    record = patient(45).with_lbp().with_condition("R33.9", onset=days_ago(5))
    record.with_medication(medication_request(status="active"))
    assert topics(hooks.view(record.patient_view())) == [REVIEW, OPIOID]


def test_finding_with_a_diagnosed_emergency_stays_silent(hooks):
    record = patient(45).with_lbp().with_condition("R33.9", onset=days_ago(5)).with_condition("G83.4")
    assert hooks.select(record.order_select(ortho_referral())) == []


def test_stat_referral_with_a_finding_needs_no_review_card(hooks):
    record = patient(45).with_lbp().with_condition("R33.9", onset=days_ago(5))
    assert hooks.select(record.order_select(ortho_referral(priority="stat"))) == []
