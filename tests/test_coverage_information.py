"""Coverage information, the Da Vinci CRD way: a systemAction that updates the Appointment or ServiceRequest
with the `ext-coverage-information` extension, checked against the profile (tests/crd_profile.py) and,
for the updated resource, with fhir.resources (tests/conftest.py: assert_coverage_information_action).
"""

from __future__ import annotations

import copy
import json
from datetime import timedelta
from pathlib import Path

import pytest

from cds_service.app import create_app
from cds_service.content.loader import check_content
from cds_service.wiring import services_of
from tests import crd_profile
from tests.builders import appointment, medication_request, ortho_referral, patient
from tests.clinical_date import CLOCK, TODAY
from tests.conftest import Hooks, topics
from tests.content_copies import ContentCopy
from tests.pn import QUESTIONNAIRE, file_on_form
from tests.test_appointment_book import MA_SOPT, adult_with_lbp, store_pn

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "crd"
BOOK = "lbp-appointment-book"
SIGN = "lbp-referral-sign"


def the_extension(action) -> dict:
    [extension] = crd_profile.coverage_information(action["resource"])
    return crd_profile.values(extension)


def without_coverage_information(resource) -> dict:
    kept = {k: v for k, v in resource.items() if k != "extension"}
    others = [e for e in resource.get("extension", []) if e["url"] != crd_profile.URL]
    return {**kept, "extension": others} if others else kept


# --- appointment-book ----------------------------------------------------------------------------------


def test_before_a_pn_the_appointment_is_updated_with_the_pn_requirement_and_nothing_else(hooks):
    visit = appointment(aid="apt-1")
    answer = hooks.answer(BOOK, adult_with_lbp().appointment_book(visit))
    [action] = answer["systemActions"]
    assert action["type"] == "update"
    assert without_coverage_information(action["resource"]) == visit  # CRD resp-37: nothing else changes
    values = the_extension(action)
    assert values["covered"] == ["covered"]
    assert values["pa-needed"] == ["no-auth"]  # Prior Notification is not prior authorization
    assert values["doc-needed"] == ["admin"]
    assert values["doc-purpose"] == ["OTH"]
    assert values["questionnaire"] == [f"{QUESTIONNAIRE}|2026.1"]
    assert values["date"] == [TODAY.isoformat()]
    assert "Prior Notification, not prior authorization" in values["reason"][0]["text"]
    categories = {(d["category"], d["code"]) for d in values["detail"]}
    assert categories == {
        ("cat-limitation", "instructions"),
        ("cat-decisional", "instructions"),
        ("cat-other", "policy-link"),
    }
    assert "satisfied-pa-id" not in values and "expiry-date" not in values


def test_null_and_empty_values_the_ehr_sent_are_left_out_of_the_update(hooks):
    visit = appointment(aid="apt-1")
    sloppy = {
        **visit,
        "comment": "",
        "identifier": [],
        "meta": {},
        "description": None,
        "participant": [*visit["participant"], {}],
    }
    [action] = hooks.answer(BOOK, adult_with_lbp().appointment_book(sloppy))["systemActions"]
    assert without_coverage_information(action["resource"]) == visit  # FHIR JSON has no empty values


def test_the_extension_references_the_prefetched_coverage_in_force(hooks):
    record = adult_with_lbp()
    coverage_id = record.coverages[0]["id"]
    [action] = hooks.answer(BOOK, record.appointment_book(appointment()))["systemActions"]
    assert the_extension(action)["coverage"] == [{"reference": f"Coverage/{coverage_id}"}]


def test_an_appointment_based_on_a_service_request_updates_the_service_request(hooks):
    referral = ortho_referral(rid="ref-1", status="active")
    record = adult_with_lbp().with_service_request(referral)
    answer = hooks.answer(BOOK, record.appointment_book(appointment(based_on="ServiceRequest/ref-1")))
    [action] = answer["systemActions"]
    assert action["resource"]["resourceType"] == "ServiceRequest"
    assert without_coverage_information(action["resource"]) == referral


def test_after_the_pn_is_filed_the_extension_says_it_is_on_file_until_it_expires(hooks, client):
    body = adult_with_lbp().appointment_book(appointment(aid="apt-1"))
    [warning, _msc] = hooks.book(body)
    record_id = file_on_form(client, warning)
    answer = hooks.answer(BOOK, body)
    assert topics(answer["cards"]) == ["msc-evaluation-first"]
    values = the_extension(answer["systemActions"][0])
    assert values["covered"] == ["covered"] and values["pa-needed"] == ["no-auth"]
    assert "doc-needed" not in values and "questionnaire" not in values and "doc-purpose" not in values
    today = TODAY
    assert values["expiry-date"] == [(today + timedelta(days=90)).isoformat()]
    [on_file] = [d for d in values["detail"] if d["category"] == "cat-other" and d["code"] == "instructions"]
    assert f"filed {today.isoformat()} (record {record_id})" in on_file["value"]


def test_the_msc_detail_appears_only_while_the_msc_step_applies(hooks):
    [action] = hooks.answer(BOOK, adult_with_lbp().appointment_book(appointment()))["systemActions"]
    assert "cat-decisional" in {d["category"] for d in the_extension(action)["detail"]}
    medicare = patient(70).with_lbp().with_coverage(MA_SOPT)
    [action] = hooks.answer(BOOK, medicare.appointment_book(appointment()))["systemActions"]
    assert "cat-decisional" not in {d["category"] for d in the_extension(action)["detail"]}


def test_without_a_coverage_there_is_no_system_action_but_the_cards_stay(hooks):
    answer = hooks.answer(BOOK, patient(45).with_lbp().appointment_book(appointment()))
    assert "systemActions" not in answer
    assert topics(answer["cards"]) == ["prior-notification-required", "msc-evaluation-first"]


def test_a_silent_visit_gets_no_system_action(hooks):
    answer = hooks.answer(BOOK, adult_with_lbp().appointment_book(appointment(appointment_type="FOLLOWUP")))
    assert answer == {"cards": []}


def test_the_same_coverage_information_already_on_the_appointment_is_not_sent_again(hooks):
    record = adult_with_lbp()
    visit = appointment(aid="apt-1")
    [action] = hooks.answer(BOOK, record.appointment_book(visit))["systemActions"]
    annotated = action["resource"]  # as the EHR stores it (CRD resp-46)
    answer = hooks.answer(BOOK, record.appointment_book(annotated))
    assert "systemActions" not in answer  # CRD resp-29, resp-35: nothing new
    assert topics(answer["cards"]) == ["prior-notification-required", "msc-evaluation-first"]


def test_outdated_coverage_information_is_replaced_and_other_extensions_kept(app, hooks):
    record = adult_with_lbp()
    visit = appointment(aid="apt-1")
    [action] = hooks.answer(BOOK, record.appointment_book(visit))["systemActions"]
    annotated = copy.deepcopy(action["resource"])
    annotated["extension"].insert(0, {"url": "http://ehr.example.org/booking-channel", "valueString": "phone"})
    store_pn(app)  # now a PN is on file: the information changed
    [updated] = hooks.answer(BOOK, record.appointment_book(annotated))["systemActions"]
    extensions = updated["resource"]["extension"]
    assert [e["url"] for e in extensions] == ["http://ehr.example.org/booking-channel", crd_profile.URL]
    assert "doc-needed" not in the_extension(updated)


def test_with_the_database_down_the_pn_requirement_is_indeterminate_for_a_technical_reason(
    settings, content, postgres_outage
):
    outage = postgres_outage
    app = create_app(settings.model_copy(update=dict(database_url=outage.url)), content=content, clock=CLOCK)
    hooks = Hooks(app.test_client())
    outage.down()
    [action] = hooks.answer(BOOK, adult_with_lbp().appointment_book(appointment()))["systemActions"]
    values = the_extension(action)
    assert values["doc-needed"] == ["indeterminate"]  # CRD resp-43
    [reason] = values["reason"]
    assert reason["coding"] == [{"system": "http://hl7.org/fhir/us/davinci-crd/CodeSystem/temp", "code": "technical"}]
    assert "could not be checked" in reason["text"]
    outage.up()
    services_of(app).close()


# --- order-sign --------------------------------------------------------------------------------------


def test_order_sign_writes_the_pn_requirement_on_the_spine_referral(hooks):
    referral = ortho_referral(rid="ref-1")
    answer = hooks.answer(SIGN, adult_with_lbp().order_sign(referral))
    assert topics(answer["cards"]) == ["msc-evaluation-first"]
    [action] = answer["systemActions"]
    assert without_coverage_information(action["resource"]) == referral
    values = the_extension(action)
    assert (values["covered"], values["pa-needed"], values["doc-needed"]) == (["covered"], ["no-auth"], ["admin"])
    assert values["questionnaire"] == [f"{QUESTIONNAIRE}|2026.1"]


def test_order_sign_after_a_pn_is_on_file_says_so(app, hooks):
    store_pn(app)
    [action] = hooks.answer(SIGN, adult_with_lbp().order_sign(ortho_referral()))["systemActions"]
    values = the_extension(action)
    assert "doc-needed" not in values and values["expiry-date"]


def test_order_sign_gives_coverage_information_only_for_program_referrals(hooks):
    answer = hooks.answer(SIGN, adult_with_lbp().order_sign(medication_request(reason="M54.50")))
    assert topics(answer["cards"]) == ["opioid-sparing-alternatives"]
    assert "systemActions" not in answer


def test_order_select_gives_no_coverage_information(hooks):
    answer = hooks.answer("lbp-referral-select", adult_with_lbp().order_select(ortho_referral()))
    assert "systemActions" not in answer


# --- the profile checker and the content checks --------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["ig-examples/CRDServiceResponse.json", "ig-examples/CRDServiceResponse3.json"],
)
def test_the_profile_checker_accepts_the_crd_ig_examples(path):
    actions = json.loads((FIXTURES / path).read_text())["systemActions"]
    for action in actions:
        [extension] = crd_profile.coverage_information(action["resource"])
        assert crd_profile.problems(extension) == []


def test_the_profile_checker_finds_what_the_profile_forbids():
    action = json.loads((FIXTURES / "test-kit/coverage_info_system_action_covered.json").read_text())
    [extension] = crd_profile.coverage_information(action["resource"])
    assert crd_profile.problems(extension) == []
    broken = copy.deepcopy(extension)
    broken["extension"] = [p for p in broken["extension"] if p["url"] != "coverage-assertion-id"]
    broken["extension"].append({"url": "covered", "valueCode": "perhaps"})
    broken["extension"].append({"url": "questionnaire", "valueCanonical": "http://example.org/Questionnaire/q"})
    assert set(crd_profile.problems(broken)) == {
        "coverage-assertion-id: 0 given, cardinality 1..1",
        "covered: 2 given, cardinality 1..1",
        "covered: 'perhaps' is not in its required value set",
        "crd-ci-q1: questionnaire is only allowed when doc-needed exists",
    }
    # The test kit (written for CRD 2.0.1) has a doc-purpose without a reason, which 2.2.1 forbids.
    conditional = json.loads((FIXTURES / "test-kit/coverage_info_system_action_conditional.json").read_text())
    [extension] = crd_profile.coverage_information(conditional["resource"])
    assert crd_profile.problems(extension) == ["crd-ci-q8: doc-purpose needs a reason"]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "      doc-needed: admin\n      doc-purpose: [OTH]\n",
            "      doc-purpose: [OTH]\n",
            "crd-ci-q1: a questionnaire is named only when doc-needed is given",
        ),
        (
            "      doc-needed: indeterminate\n",
            "      doc-needed: conditional\n",
            "crd-ci-q3: a conditional covered, pa-needed or doc-needed needs info-needed",
        ),
        ("  prior-notification-required: claim\n", "", 'the card "prior-notification-required" has no CRD card type'),
        ("(record {record_id})", "(record {recordid})", "unknown placeholder {recordid}"),
    ],
    ids=["q1", "q3", "card-type", "placeholder"],
)
def test_crd_yaml_edits_that_break_the_profile_are_refused(tmp_path, old, new, message):
    content = ContentCopy.of_guideline_data(tmp_path)
    text = (content.root / "crd.yaml").read_text()
    (content.root / "crd.yaml").write_text(text.replace(old, new, 1))
    loaded, problems = check_content(content.root)
    assert loaded is None
    assert any(message in str(p) for p in problems), [str(p) for p in problems]
