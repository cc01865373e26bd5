"""order-select (lbp-referral-select): the MSC pathway rules, one test per situation."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import pytest

from cds_service.app import create_app
from hooks.policy import Suspension
from tests.builders import (
    ICD10,
    NEURO_REFERRAL,
    NUCC,
    SNOMED,
    birth_date_for_age,
    days_ago,
    ortho_referral,
    patient,
    service_request,
)
from tests.clinical_date import CLOCK, TODAY
from tests.conftest import BASE_URL, Hooks, topics

MSC = "msc-evaluation-first"
PN = "prior-notification-required"
PMR = (NUCC, "208100000X")


def adult_with_lbp():
    return patient(45).with_lbp()


def with_policy(content, settings, **changes):
    """An app whose guideline policy differs from the shipped one."""
    policy = replace(content.knowledge.policy, **changes)
    changed = replace(content, knowledge=replace(content.knowledge, policy=policy))
    return Hooks(create_app(settings, content=changed, clock=CLOCK).test_client())


# --- the baseline card --------------------------------------------------------------------------------


def test_orthopedic_referral_for_low_back_pain_suggests_msc_first(hooks):
    referral = ortho_referral()
    [card] = hooks.select(adult_with_lbp().order_select(referral))

    assert card["source"]["topic"]["code"] == MSC
    assert card["indicator"] == "warning"
    assert len(card["summary"]) < 140
    assert "Fritz" in card["detail"] and "shared decision making" in card["detail"]
    assert card["selectionBehavior"] == "any"

    swap, pt = card["suggestions"]
    assert swap["label"] == "Refer to a Medical Spine Center instead" and swap["isRecommended"] is True
    delete, create = swap["actions"]
    assert delete == {
        "type": "delete",
        "description": "Remove the spine surgery referral",
        "resourceId": f"ServiceRequest/{referral['id']}",
    }
    msc_order = create["resource"]
    assert msc_order["resourceType"] == "ServiceRequest" and msc_order["status"] == "draft"
    assert msc_order["subject"] == {"reference": "Patient/p1"}
    assert msc_order["reasonCode"] == referral["reasonCode"]
    assert msc_order["code"]["coding"][0]["code"] == "306289000"

    assert pt["label"] == "Add a physical therapy referral"
    assert pt["actions"][0]["resource"]["code"]["coding"][0]["code"] == "444831000124102"

    links = {link["url"] for link in card["links"]}
    assert f"{BASE_URL}/msc/handout" in links
    assert f"{BASE_URL}/msc/directory?region=twin-cities" in links
    assert any(url.startswith("https://www.healthpartners.com/") for url in links)

    reasons = [r["display"] for r in card["overrideReasons"]]
    assert reasons == [
        "Emergent condition",
        "MSC evaluation already done",
        "Exempt coverage (e.g. Medicare Advantage)",
        "Patient declines after shared decision making",
        "Other reason",
    ]


def test_directory_link_follows_the_patients_region(hooks):
    [card] = hooks.select(patient(45, postal_code="54016").with_lbp().order_select(ortho_referral()))
    directory = next(link for link in card["links"] if "/msc/directory" in link["url"])
    assert directory["url"] == f"{BASE_URL}/msc/directory?region=wisconsin"
    assert directory["label"] == "Medical Spine Center directory: Wisconsin"


def test_patient_without_an_address_gets_the_msc_card_with_the_whole_directory(hooks):
    [card] = hooks.select(patient(45, postal_code=None).with_lbp().order_select(ortho_referral()))
    directory = next(link for link in card["links"] if "/msc/directory" in link["url"])
    assert directory["url"] == f"{BASE_URL}/msc/directory"


# --- what counts as a spine-surgical referral -----------------------------------------------------------


@pytest.mark.parametrize(
    "referral",
    [
        pytest.param(service_request(NEURO_REFERRAL), id="neurosurgeon referral code"),
        pytest.param(service_request("183541002", performer="207XS0117X"), id="referral to surgeon, spine performer"),
        pytest.param(service_request(None, performer="207T00000X"), id="neurological surgery performer only"),
        pytest.param(service_request(None, performer="207X00000X"), id="orthopaedic surgery performer only"),
        pytest.param(service_request(None, text="Referral to Orthopedics"), id="uncoded text: orthopedics"),
        pytest.param(service_request(None, text="Neurosurgery consult"), id="uncoded text: neurosurgery"),
        pytest.param(service_request(None, text="Spine surgery evaluation"), id="uncoded text: spine surgery"),
        pytest.param(
            service_request("REF-ORTHO", system="urn:oid:1.2.840.114350.1", text="Ortho referral"),
            id="EHR-local code, classified by text",
        ),
    ],
)
def test_spine_surgical_referrals_get_the_msc_card(hooks, referral):
    assert topics(hooks.select(adult_with_lbp().order_select(referral))) == [MSC]


@pytest.mark.parametrize(
    "referral",
    [
        pytest.param(ortho_referral(performer="207XS0106X"), id="orthopaedic hand surgery"),
        pytest.param(ortho_referral(performer="207XX0004X"), id="foot and ankle surgery"),
        pytest.param(ortho_referral(performer="207XS0114X"), id="adult reconstructive orthopaedics"),
        pytest.param(service_request(None, text="Orthotics fitting"), id="orthotics is not ortho"),
        pytest.param(service_request(None, text="Orthopedic hand surgery referral"), id="text: hand surgery"),
        pytest.param(service_request(None, text="Ortho referral for knee replacement"), id="text: knee"),
        pytest.param(service_request("183541002"), id="referral to surgeon, no spine performer"),
        pytest.param(service_request("444831000124102"), id="physical therapy referral"),
        pytest.param(service_request(None, text="Neurology consult"), id="neurology is not neurosurgery"),
    ],
)
def test_other_referrals_get_no_card(hooks, referral):
    assert hooks.select(adult_with_lbp().order_select(referral)) == []


# --- for low back pain? ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "system"),
    [
        ("M54.50", ICD10),
        ("M54.5", ICD10),  # legacy parent code, still on old problem lists
        ("M5450", ICD10),  # without its dot, as some EHRs send it
        ("M51.16", ICD10),  # lumbar disc disorder with radiculopathy
        ("M48.062", ICD10),  # lumbar stenosis with neurogenic claudication
        ("279039007", SNOMED),  # Low back pain
    ],
)
def test_referral_with_a_low_back_pain_reason_counts_even_without_a_problem_list(hooks, reason, system):
    referral = ortho_referral(reason=reason, reason_system=system)
    assert topics(hooks.select(patient(45).order_select(referral))) == [MSC]


@pytest.mark.parametrize(
    "reason",
    [
        pytest.param("M17.11", id="knee osteoarthritis"),
        pytest.param("C71.9", id="brain tumour"),
        pytest.param("M54.12", id="cervical radiculopathy"),
    ],
)
def test_referral_for_another_problem_gets_no_card_even_with_back_pain_on_the_list(hooks, reason):
    assert hooks.select(adult_with_lbp().order_select(ortho_referral(reason=reason))) == []


def test_reason_reference_to_a_low_back_pain_condition_counts(hooks):
    record = patient(45).with_condition("M54.16", cid="radic")
    referral = ortho_referral(reason=None, reason_reference="Condition/radic")
    assert topics(hooks.select(record.order_select(referral))) == [MSC]


def test_referral_without_reason_counts_when_the_patient_has_active_lbp(hooks):
    assert topics(hooks.select(adult_with_lbp().order_select(ortho_referral(reason=None)))) == [MSC]


def test_referral_without_reason_and_without_lbp_gets_no_card(hooks):
    assert hooks.select(patient(45).order_select(ortho_referral(reason=None))) == []


def test_resolved_low_back_pain_does_not_make_an_unexplained_referral_count(hooks):
    record = patient(45).with_condition("M54.50", clinical_status="resolved")
    assert hooks.select(record.order_select(ortho_referral(reason=None))) == []


def test_unspecified_back_code_counts_only_beside_an_lbp_diagnosis(hooks):
    referral = ortho_referral(reason="M54.9")  # dorsalgia, unspecified: context only
    assert hooks.select(patient(45).order_select(referral)) == []
    assert topics(hooks.select(adult_with_lbp().order_select(ortho_referral(reason="M54.9")))) == [MSC]


# --- adults only ----------------------------------------------------------------------------------------


def test_child_gets_no_card(hooks):
    assert hooks.select(patient(17).with_lbp().order_select(ortho_referral())) == []


def test_eighteen_today_is_in_scope(hooks):
    assert topics(hooks.select(patient(18).with_lbp().order_select(ortho_referral()))) == [MSC]


def test_day_before_eighteenth_birthday_is_out_of_scope(hooks):
    tomorrow_18 = (date.fromisoformat(birth_date_for_age(18)) + timedelta(days=1)).isoformat()
    assert hooks.select(patient(birth_date=tomorrow_18).with_lbp().order_select(ortho_referral())) == []


def test_birth_year_only_is_read_conservatively(hooks):
    # The earliest birth year of someone who may not be 18 yet (a year alone is read at its last day): no
    # card. 18 years before today's year, except on 31 December, when everyone born then is 18.
    uncertain = (TODAY + timedelta(days=1)).year - 18
    year = str(uncertain)
    assert hooks.select(patient(None, birth_date=year).with_lbp().order_select(ortho_referral())) == []
    old = str(uncertain - 1)  # certainly 18: a card
    assert topics(hooks.select(patient(None, birth_date=old).with_lbp().order_select(ortho_referral()))) == [MSC]


def test_unknown_age_gets_no_card(hooks):
    assert hooks.select(patient(None).with_lbp().order_select(ortho_referral())) == []


# --- emergent and urgent presentations ------------------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        pytest.param("G83.4", id="cauda equina syndrome"),
        pytest.param("G06.1", id="intraspinal abscess"),
        pytest.param("S32.000A", id="lumbar vertebral fracture"),
        pytest.param("C79.51", id="bone metastasis"),
        pytest.param("I71.40", id="abdominal aortic aneurysm"),
    ],
)
def test_active_red_flag_condition_silences_the_card(hooks, code):
    record = adult_with_lbp().with_condition(code)
    assert hooks.select(record.order_select(ortho_referral())) == []


def test_recent_red_flag_finding_silences_the_msc_card_and_asks_to_rule_out_an_emergency(hooks):
    record = adult_with_lbp().with_condition("R33.9", onset=days_ago(5))  # urinary retention
    assert topics(hooks.select(record.order_select(ortho_referral()))) == ["red-flag-review"]


def test_red_flag_finding_from_years_ago_does_not_count(hooks):
    record = adult_with_lbp().with_condition("M21.371", onset=days_ago(3 * 365))  # foot drop, right
    assert topics(hooks.select(record.order_select(ortho_referral()))) == [MSC]


def test_resolved_fracture_from_years_ago_does_not_count(hooks):
    record = adult_with_lbp().with_condition(
        "S32.010A", clinical_status="resolved", onset=days_ago(6 * 365), abated=days_ago(5 * 365)
    )
    assert topics(hooks.select(record.order_select(ortho_referral()))) == [MSC]


def test_referral_for_a_red_flag_reason_gets_no_card(hooks):
    assert hooks.select(adult_with_lbp().order_select(ortho_referral(reason="G83.4"))) == []


@pytest.mark.parametrize("priority", ["stat", "asap"])
def test_stat_or_asap_referral_is_emergent(hooks, priority):
    assert hooks.select(adult_with_lbp().order_select(ortho_referral(priority=priority))) == []


def test_urgent_priority_alone_is_not_emergent(hooks):
    assert topics(hooks.select(adult_with_lbp().order_select(ortho_referral(priority="urgent")))) == [MSC]


# --- exempt coverage ------------------------------------------------------------------------------------


@pytest.mark.parametrize("sopt", ["111", "112", "11", "141"])
def test_medicare_advantage_is_exempt_and_gets_prior_notification(hooks, sopt):
    [card] = hooks.select(adult_with_lbp().with_coverage(sopt).order_select(ortho_referral()))
    assert card["source"]["topic"]["code"] == PN
    assert card["indicator"] == "info"
    assert "Medicare Advantage" in card["detail"] and "Prior Notification" in card["detail"]
    assert "denied" in card["detail"]


def test_cancelled_medicare_advantage_coverage_does_not_exempt(hooks):
    record = adult_with_lbp().with_coverage("111", status="cancelled")
    assert topics(hooks.select(record.order_select(ortho_referral()))) == [MSC]


@pytest.mark.parametrize("sopt", ["121", "13", "5"])  # Medicare FFS, Medicare FFS (dual), commercial
def test_other_coverage_is_not_exempt(hooks, sopt):
    assert topics(hooks.select(adult_with_lbp().with_coverage(sopt).order_select(ortho_referral()))) == [MSC]


def test_ambiguous_payer_code_needs_a_configured_plan(hooks, content, settings):
    record = adult_with_lbp().with_coverage("14", plan="HP-MA-GOLD")
    assert topics(hooks.select(record.order_select(ortho_referral()))) == [MSC]
    configured = with_policy(content, settings, medicare_advantage_plan_ids=frozenset({"HP-MA-GOLD"}))
    assert topics(configured.select(record.order_select(ortho_referral()))) == [PN]


# --- MSC already done -----------------------------------------------------------------------------------


def test_recent_msc_visit_for_lbp_means_prior_notification(hooks):
    record = adult_with_lbp().with_encounter(service_type=PMR, days=60, reason="M54.50")
    [card] = hooks.select(record.order_select(ortho_referral()))
    assert card["source"]["topic"]["code"] == PN
    assert "Medical Spine Center evaluation for low back pain is on record" in card["detail"]


def test_msc_visit_without_reason_counts_for_a_patient_with_lbp(hooks):
    record = adult_with_lbp().with_encounter(service_type=(NUCC, "2083X0100X"), days=30)
    assert topics(hooks.select(record.order_select(ortho_referral()))) == [PN]


def test_msc_visit_over_a_year_ago_does_not_count(hooks):
    record = adult_with_lbp().with_encounter(service_type=PMR, days=400, reason="M54.50")
    assert topics(hooks.select(record.order_select(ortho_referral()))) == [MSC]


def test_pmr_visit_for_stroke_rehabilitation_does_not_count(hooks):
    record = adult_with_lbp().with_encounter(service_type=PMR, days=30, reason="I69.351")
    assert topics(hooks.select(record.order_select(ortho_referral()))) == [MSC]


def test_unfinished_msc_visit_does_not_count(hooks):
    record = adult_with_lbp().with_encounter(service_type=PMR, days=0, status="planned", reason="M54.50")
    assert topics(hooks.select(record.order_select(ortho_referral()))) == [MSC]


def test_completed_msc_referral_for_lbp_counts(hooks):
    done = service_request("306289000", status="completed", authored=days_ago(90))
    record = adult_with_lbp().with_service_request(done)
    assert topics(hooks.select(record.order_select(ortho_referral()))) == [PN]


def test_pending_msc_referral_does_not_count(hooks):
    pending = service_request("306289000", status="active", authored=days_ago(10))
    record = adult_with_lbp().with_service_request(pending)
    assert topics(hooks.select(record.order_select(ortho_referral()))) == [MSC]


# --- suspension -----------------------------------------------------------------------------------------

NOTICE = "Due to the COVID-19 emergency, the MSC requirement is suspended until further notice."


def test_suspended_requirement_turns_the_card_info_and_quotes_the_notice(content, settings):
    suspended = with_policy(
        content, settings, suspensions=(Suspension(start=TODAY - timedelta(days=30), end=None, notice=NOTICE),)
    )
    msc, pn = suspended.select(adult_with_lbp().order_select(ortho_referral()))
    assert msc["source"]["topic"]["code"] == MSC and msc["indicator"] == "info"
    assert NOTICE in msc["detail"] and "further notice" in msc["detail"]
    pt, swap = msc["suggestions"]
    assert swap["label"] == "Refer to a Medical Spine Center instead" and "isRecommended" not in swap
    assert pt["label"] == "Add a physical therapy referral" and "isRecommended" not in pt
    assert pn["source"]["topic"]["code"] == PN and "suspended its MSC requirement" in pn["detail"]
    assert NOTICE not in pn["detail"], "the notice appears once per response"


def test_ended_suspension_restores_the_requirement(content, settings):
    ended = Suspension(start=date(2020, 3, 23), end=date(2021, 6, 30), notice=NOTICE)
    hooks = with_policy(content, settings, suspensions=(ended,))
    [card] = hooks.select(adult_with_lbp().order_select(ortho_referral()))
    assert card["indicator"] == "warning" and NOTICE not in card["detail"]


# --- order-select looks only at the selections ----------------------------------------------------------


def test_only_the_selected_orders_are_judged(hooks):
    referral = ortho_referral()
    lab = service_request("58410-2", system="http://loinc.org", reason=None, rid="lab-1")
    body = adult_with_lbp().order_select(referral, lab, selections=["ServiceRequest/lab-1"])
    assert hooks.select(body) == []


def test_irrelevant_selection_needs_no_patient_data(hooks):
    lab = service_request("58410-2", system="http://loinc.org", reason=None, rid="lab-1")
    body = adult_with_lbp().order_select(lab)
    del body["prefetch"]
    assert hooks.select(body) == []
