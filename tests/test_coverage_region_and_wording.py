"""Which coverage decides the Medicare Advantage exemption; where the MSC step applies; wording a clinician
would sign; one suggestion per response; the suspension notice once. Coverage cases also run in fallback form
(Coverage searched on the real test FHIR server)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from cds_service.app import create_app
from hooks.policy import Suspension
from tests.builders import clinical_today, days_ago, medication_request, ortho_referral, patient, service_request
from tests.clinical_date import CLOCK
from tests.conftest import Hooks, topics
from tests.ehr_forms import FORMS

MSC = "msc-evaluation-first"
PN = "prior-notification-required"
PT = "physical-therapy-first-line"
OPIOID = "opioid-sparing-alternatives"
COMMERCIAL = "5"
MEDICARE_ADVANTAGE_HMO = "111"


def with_policy(content, settings, **changes):
    policy = replace(content.knowledge.policy, **changes)
    return Hooks(
        create_app(
            settings, content=replace(content, knowledge=replace(content.knowledge, policy=policy)), clock=CLOCK
        ).test_client()
    )


def select(record):
    return record.order_select(ortho_referral())


# --- the primary coverage decides ----------------------------------------------------------------------


@pytest.mark.processes
@pytest.mark.parametrize("form", FORMS)
def test_medicare_advantage_secondary_to_commercial_coverage_does_not_exempt(ehr, form):
    record = patient(67).with_lbp().with_coverage(COMMERCIAL, order=1).with_coverage(MEDICARE_ADVANTAGE_HMO, order=2)
    assert topics(ehr.cards(form, record, select)) == [MSC]


@pytest.mark.processes
@pytest.mark.parametrize("form", FORMS)
def test_primary_medicare_advantage_with_a_secondary_commercial_coverage_exempts(ehr, form):
    record = patient(67).with_lbp().with_coverage(COMMERCIAL, order=2).with_coverage(MEDICARE_ADVANTAGE_HMO, order=1)
    assert topics(ehr.cards(form, record, select)) == [PN]


def test_without_coverage_order_the_plans_own_coverage_decides(content, settings):
    record = patient(67).with_lbp().with_coverage(COMMERCIAL, payor="OTHER-PLAN")
    record.with_coverage(MEDICARE_ADVANTAGE_HMO, payor="HP-MA")
    assert topics(Hooks(create_app(settings, content=content, clock=CLOCK).test_client()).select(select(record))) == [
        MSC
    ]
    configured = with_policy(content, settings, plan_payer_ids=frozenset({"HP-MA"}))
    assert topics(configured.select(select(record))) == [PN]


def test_without_any_way_to_tell_the_primary_a_possibly_secondary_medicare_advantage_does_not_exempt(hooks):
    record = patient(67).with_lbp().with_coverage(COMMERCIAL).with_coverage(MEDICARE_ADVANTAGE_HMO)
    assert topics(hooks.select(select(record))) == [MSC]


def test_two_medicare_advantage_coverages_exempt_whichever_is_primary(hooks):
    record = patient(67).with_lbp().with_coverage(MEDICARE_ADVANTAGE_HMO).with_coverage("112")
    assert topics(hooks.select(select(record))) == [PN]


def test_a_cancelled_primary_leaves_the_coverage_in_force_to_decide(hooks):
    record = patient(67).with_lbp().with_coverage(COMMERCIAL, order=1, status="cancelled")
    record.with_coverage(MEDICARE_ADVANTAGE_HMO, order=2)
    assert topics(hooks.select(select(record))) == [PN]


# --- where MSC access exists ---------------------------------------------------------------------------


def test_member_living_outside_every_msc_region_gets_prior_notification_not_the_msc_card(hooks):
    [card] = hooks.select(select(patient(45, postal_code="90210").with_lbp()))
    assert card["source"]["topic"]["code"] == PN
    assert "outside the plan's Medical Spine Center regions" in card["detail"]


@pytest.mark.parametrize("postal_code", ["55101", "54016", "55802-1234"])
def test_member_living_in_an_msc_region_gets_the_msc_card(hooks, postal_code):
    assert topics(hooks.select(select(patient(45, postal_code=postal_code).with_lbp()))) == [MSC]


def test_regions_come_from_the_directory_data(content):
    assert content.knowledge.msc_postal_prefixes == frozenset(content.directory.region_by_prefix)


# --- wording --------------------------------------------------------------------------------------------


def test_msc_and_prior_notification_cards_say_denial_is_to_provider_liability(hooks):
    [msc] = hooks.select(select(patient(45).with_lbp()))
    [pn] = hooks.select(select(patient(45).with_lbp().with_coverage(MEDICARE_ADVANTAGE_HMO)))
    for card in (msc, pn):
        assert "denied to provider liability: the surgical practice's, not the patient's" in card["detail"]


def test_prior_notification_after_msc_evaluation_reminds_to_include_the_msc_notes(hooks):
    record = patient(45).with_lbp().with_encounter(service_type=("http://nucc.org/provider-taxonomy", "208100000X"))
    [card] = hooks.select(select(record))
    assert "includes the MSC evaluation notes with its Prior Notification" in card["detail"]
    [ma] = hooks.select(select(patient(45).with_lbp().with_coverage(MEDICARE_ADVANTAGE_HMO)))
    assert "MSC evaluation notes" not in ma["detail"]


def test_opioid_card_states_acp_2017_and_only_the_cdc_recommendations_for_a_new_prescription(hooks):
    [card] = hooks.select(patient(45).with_lbp().order_select(medication_request()))
    detail = card["detail"]
    assert "NSAIDs or skeletal muscle relaxants for acute pain" in detail
    assert "tramadol or duloxetine second-line" in detail
    assert "Opioids only when these have failed, and only after discussing their risks and benefits" in detail
    for cited in ("Recommendation 1", "Recommendation 2", "Recommendation 3", "Recommendation 4", "Recommendation 6"):
        assert cited in detail
    assert "Recommendation 7" in detail and "Recommendation 5" not in detail and "3–6" not in detail


def test_opioid_card_for_a_patient_on_long_term_opioids_cites_recommendation_5(hooks):
    record = patient(45).with_lbp().with_medication(medication_request(status="active", authored=days_ago(200)))
    [_pt, card] = hooks.view(record.patient_view())
    assert "Recommendation 5" in card["detail"] and "more than 3 months" in card["detail"]
    recent = patient(45).with_lbp().with_medication(medication_request(status="active", authored=days_ago(20)))
    assert "Recommendation 5" not in hooks.view(recent.patient_view())[1]["detail"]


def test_pt_card_says_every_state_allows_some_direct_access(hooks):
    [card] = hooks.view(patient(45).with_lbp().patient_view())
    assert "every US state now lets patients see a physical therapist without a referral" in card["detail"]
    assert any("apta.org" in link["url"] for link in card["links"])


def test_cards_and_pages_are_written_in_us_english(hooks, client):
    texts = [
        str(hooks.select(select(patient(45).with_lbp()))),
        str(hooks.view(patient(45).with_lbp().with_medication(medication_request(status="active")).patient_view())),
        str(hooks.view(patient(45).with_lbp().with_condition("R33.9", onset=days_ago(3)).patient_view())),
        client.get("/msc/handout").get_data(as_text=True),
        client.get("/msc/directory").get_data(as_text=True),
    ]
    for british in ("behavioural", "orthopaedic", "paediatric", "anaesthesia", "faecal", "colour", "centre"):
        assert all(british not in text.lower() for text in texts), british


def test_handout_sends_cauda_equina_symptoms_to_the_emergency_department_and_fever_to_same_day_care(client):
    page = client.get("/msc/handout").get_data(as_text=True)
    emergency, same_day = page.split("Go to an emergency department now")[1].split("Call your clinic today")
    assert "cannot pass urine" in emergency and "numbness around your groin" in emergency
    assert "fever" in same_day and "after a fall" in same_day
    assert "911" not in page


# --- one suggestion per response; the suspension notice once -------------------------------------------


def suggestion_labels(cards):
    return [s["label"] for card in cards for s in card.get("suggestions", [])]


def test_signing_a_spine_referral_and_an_opioid_offers_the_pt_referral_once(hooks):
    cards = hooks.sign(patient(45).with_lbp().order_sign(ortho_referral(), medication_request()))
    assert topics(cards) == [MSC, OPIOID]
    assert suggestion_labels(cards).count("Add a physical therapy referral") == 1
    assert "Add a cognitive behavioral therapy referral" in suggestion_labels(cards)


def test_chart_open_with_an_opioid_offers_each_referral_once(hooks):
    cards = hooks.view(patient(45).with_lbp().with_medication(medication_request(status="active")).patient_view())
    labels = suggestion_labels(cards)
    assert labels.count("Add a physical therapy referral") == 1
    assert labels.count("Add a cognitive behavioral therapy referral") == 1


def test_an_opioid_card_alone_keeps_its_suggestions(hooks):
    [card] = hooks.select(patient(45).with_lbp().order_select(medication_request()))
    assert suggestion_labels([card]) == [
        "Add a physical therapy referral",
        "Add a cognitive behavioral therapy referral",
    ]


def test_two_spine_referrals_get_one_msc_card_creating_one_msc_referral(hooks):
    cards = hooks.sign(patient(45).with_lbp().order_sign(ortho_referral(), service_request("308482002")))
    creates = [a for c in cards for s in c["suggestions"] for a in s["actions"] if a["type"] == "create"]
    assert [a["resource"]["code"]["coding"][0]["code"] for a in creates].count("306289000") == 1


def test_during_a_suspension_the_notice_appears_once_and_the_swap_is_not_recommended(content, settings):
    notice = "MSC evaluation requirement suspended until further notice."
    suspended = with_policy(
        content,
        settings,
        suspensions=(Suspension(start=clinical_today() - timedelta(days=3), end=None, notice=notice),),
    )
    cards = suspended.select(select(patient(45).with_lbp()))
    assert topics(cards) == [MSC, PN]
    assert sum(notice in card["detail"] for card in cards) == 1
    assert not any(s.get("isRecommended") for s in cards[0]["suggestions"])
