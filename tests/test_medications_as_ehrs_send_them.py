"""Medications as EHRs send them: medicationReference to a Medication (contained, in the prefetch, or on the FHIR
server); buprenorphine and methadone judged by product and reason; the sickle cell disease exclusion."""

from __future__ import annotations

import pytest

from tests.builders import (
    ORDER_KEYS,
    SUBOXONE,
    medication_request,
    medication_resource,
    patient,
    with_fhir_server,
)
from tests.conftest import topics
from tests.ehr_forms import FORMS, TOKEN

OPIOID = "opioid-sparing-alternatives"
PT = "physical-therapy-first-line"
OXYCODONE = "1049621"
IBUPROFEN = "197806"
BUTRANS = "1432971"  # 168 HR buprenorphine 0.015 MG/HR Transdermal System [BuTrans]
BELBUCA = "1716063"  # buprenorphine 0.15 MG Buccal Film [Belbuca]
METHADONE = "864718"  # methadone hydrochloride 5 MG Oral Tablet
DISKETS = "1990745"  # methadone 40 MG Tablet for Oral Suspension [Diskets]: opioid use disorder only
SUBLOCADE = "1996189"  # buprenorphine extended-release injection [Sublocade]
OUD = "F11.20"  # opioid dependence, uncomplicated


def referenced_order(record, rxcui, form, *, mid, **kwargs):
    """A draft prescription naming its Medication: contained (prefetch form) or on the server (fallback form)."""
    if form == "prefetch":
        return medication_request(rxcui, contained_medication=True, **kwargs)
    record.with_referenced(medication_resource(rxcui, mid))
    return medication_request(rxcui, medication=mid, **kwargs)


# --- medicationReference resolved ----------------------------------------------------------------------


@pytest.mark.processes
@pytest.mark.parametrize("form", FORMS)
def test_selected_oxycodone_by_medication_reference_gets_the_opioid_card(ehr, form):
    record = patient(45).with_lbp()
    order = referenced_order(record, OXYCODONE, form, mid="oxy-1")
    assert topics(ehr.cards(form, record, lambda r: r.order_select(order))) == [OPIOID]


@pytest.mark.processes
@pytest.mark.parametrize("form", FORMS)
def test_signed_oxycodone_by_medication_reference_gets_the_opioid_card(ehr, form):
    record = patient(45).with_lbp()
    order = referenced_order(record, OXYCODONE, form, mid="oxy-2")
    assert topics(ehr.cards(form, record, lambda r: r.order_sign(order), hook="sign")) == [OPIOID]


@pytest.mark.processes
@pytest.mark.parametrize("form", FORMS)
def test_selected_ibuprofen_by_medication_reference_gets_no_card(ehr, form):
    record = patient(45).with_lbp()
    order = referenced_order(record, IBUPROFEN, form, mid="ibu-1")
    assert ehr.cards(form, record, lambda r: r.order_select(order)) == []


@pytest.mark.processes
@pytest.mark.parametrize("form", FORMS)
def test_active_oxycodone_by_medication_reference_at_chart_open_gets_the_opioid_card(ehr, form):
    record = (
        patient(45)
        .with_lbp()
        .with_referenced(medication_resource(OXYCODONE, "oxy-3"), prefetched_as="medicationRequests")
    )
    record.with_medication(medication_request(OXYCODONE, medication="oxy-3", status="active"))
    assert topics(ehr.cards(form, record, lambda r: r.patient_view(), hook="view")) == [PT, OPIOID]


@pytest.mark.processes
@pytest.mark.parametrize("form", FORMS)
def test_active_ibuprofen_by_medication_reference_at_chart_open_gets_only_the_pt_card(ehr, form):
    record = (
        patient(45)
        .with_lbp()
        .with_referenced(medication_resource(IBUPROFEN, "ibu-2"), prefetched_as="medicationRequests")
    )
    record.with_medication(medication_request(IBUPROFEN, medication="ibu-2", status="active"))
    assert topics(ehr.cards(form, record, lambda r: r.patient_view(), hook="view")) == [PT]


def test_selected_prescription_whose_medication_cannot_be_had_is_refused_not_answered_empty(hooks):
    order = medication_request(OXYCODONE, medication="unknown-med")
    response = hooks.client.post("/cds-services/lbp-referral-select", json=patient(45).with_lbp().order_select(order))
    assert response.status_code == 412
    assert "referencedMedications" in response.get_json()["issue"][0]["diagnostics"]


@pytest.mark.processes
def test_prescription_whose_medication_the_server_fails_to_give_is_refused(ehr):
    record = patient(45).with_lbp().with_referenced(medication_resource(OXYCODONE, "oxy-4"))
    ehr.server.load(record.resources())
    ehr.server.fail("Medication", 500)
    body = record.order_select(medication_request(OXYCODONE, medication="oxy-4"))
    response = ehr.hooks.client.post(
        "/cds-services/lbp-referral-select", json=with_fhir_server(body, ehr.server.base_url, TOKEN, keep=ORDER_KEYS)
    )
    assert response.status_code == 412


def test_unknown_medication_of_an_old_active_prescription_still_gives_the_pt_card(hooks):
    record = patient(45).with_lbp().with_medication(medication_request(medication="elsewhere", status="active"))
    assert topics(hooks.view(record.patient_view())) == [PT]


# --- buprenorphine and methadone: product and reason ----------------------------------------------------


@pytest.mark.parametrize(
    "rxcui",
    [
        pytest.param(BUTRANS, id="buprenorphine patch (Butrans)"),
        pytest.param(BELBUCA, id="buprenorphine buccal film (Belbuca)"),
        pytest.param(METHADONE, id="methadone tablet"),
    ],
)
def test_buprenorphine_or_methadone_for_back_pain_gets_the_opioid_card(hooks, rxcui):
    [card] = hooks.select(patient(45).with_lbp().order_select(medication_request(rxcui, reason="M54.50")))
    assert card["source"]["topic"]["code"] == OPIOID
    assert "not an extended-release or long-acting one such as a buprenorphine patch or methadone" in card["detail"]


def test_buprenorphine_patch_without_a_reason_for_a_patient_with_lbp_gets_the_opioid_card(hooks):
    assert topics(hooks.select(patient(45).with_lbp().order_select(medication_request(BUTRANS)))) == [OPIOID]


@pytest.mark.parametrize(
    "rxcui",
    [
        pytest.param(SUBOXONE, id="buprenorphine/naloxone"),
        pytest.param(DISKETS, id="methadone dispersible tablet"),
        pytest.param(SUBLOCADE, id="extended-release buprenorphine injection"),
    ],
)
def test_products_for_opioid_use_disorder_stay_silent_whatever_the_reason(hooks, rxcui):
    assert hooks.select(patient(45).with_lbp().order_select(medication_request(rxcui, reason="M54.50"))) == []


def test_methadone_ordered_for_opioid_use_disorder_stays_silent(hooks):
    assert hooks.select(patient(45).with_lbp().order_select(medication_request(METHADONE, reason=OUD))) == []


def test_methadone_for_a_patient_with_opioid_use_disorder_and_no_stated_reason_stays_silent(hooks):
    record = patient(45).with_lbp().with_condition(OUD)
    assert hooks.select(record.order_select(medication_request(METHADONE))) == []


def test_oxycodone_for_a_patient_with_opioid_use_disorder_still_gets_the_opioid_card(hooks):
    record = patient(45).with_lbp().with_condition(OUD)
    assert topics(hooks.select(record.order_select(medication_request(OXYCODONE)))) == [OPIOID]


def test_active_buprenorphine_patch_at_chart_open_gets_the_opioid_card_and_suboxone_does_not(hooks):
    patch = patient(45).with_lbp().with_medication(medication_request(BUTRANS, status="active"))
    assert topics(hooks.view(patch.patient_view())) == [PT, OPIOID]
    film = patient(45).with_lbp().with_medication(medication_request(SUBOXONE, status="active"))
    assert topics(hooks.view(film.patient_view())) == [PT]


# --- sickle cell disease, not sickle cell trait ---------------------------------------------------------


@pytest.mark.parametrize("code", ["D57.1", "D57.00", "D57.20", "D57.40", "D57.80"])
def test_sickle_cell_disease_silences_the_opioid_card(hooks, code):
    record = patient(30).with_lbp().with_condition(code)
    assert hooks.select(record.order_select(medication_request())) == []


def test_sickle_cell_trait_does_not_silence_the_opioid_card(hooks):
    record = patient(30).with_lbp().with_condition("D57.3")
    assert topics(hooks.select(record.order_select(medication_request()))) == [OPIOID]


def test_the_published_cdc_list_is_kept_as_published(content):
    import json

    from cds_service.content.loader import DEFAULT_CONTENT_DIR

    published = json.loads((DEFAULT_CONTENT_DIR / "valuesets" / "opioid-exclusion-conditions.json").read_text())
    codes = {c["code"] for c in published["codes"]}
    assert "D57.3" in codes and "D57.1" not in codes, "the correction lives in valuesets/overlays/"
    rules_see = {c.code for c in content.valuesets["opioid-exclusion-conditions"]}
    assert "D57.1" in rules_see and "D57.3" not in rules_see
