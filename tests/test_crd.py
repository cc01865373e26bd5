"""Da Vinci CRD STU 2.2.1 on lbp-cds: discovery extensions, the request's configuration, card types, and
the CRD example requests and test-kit fixtures (tests/fixtures/crd/) answered conformantly or with the
documented 4xx."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from tests.builders import appointment, ortho_referral
from tests.conftest import assert_conformant, topics
from tests.test_appointment_book import adult_with_lbp

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "crd"
CRD_SERVICES = {"lbp-referral-select", "lbp-referral-sign", "lbp-appointment-book"}


def fixture(path: str) -> dict:
    return json.loads((FIXTURES / path).read_text())


def with_configuration(body: dict, **options) -> dict:
    body["extension"] = {"davinci-crd.configuration": options}
    return body


# --- discovery ---------------------------------------------------------------------------------------


def services(client) -> dict[str, dict]:
    return {s["id"]: s for s in client.get("/cds-services").get_json()["services"]}


def test_discovery_declares_the_crd_version_and_configuration_options_of_each_crd_service(client):
    found = services(client)
    for service_id in CRD_SERVICES:
        extension = found[service_id]["extension"]
        assert extension["davinci-crd.version"] == ["2.2"]  # dev-1: major.minor
        options = extension["davinci-crd.configuration-options"]
        for option in options:  # dev-4: code, type, name, description, default
            assert set(option) == {"code", "type", "name", "description", "default"}
            assert option["type"] == "boolean" and option["default"] is True
            assert re.fullmatch(r"[a-z][a-z-]*", option["code"])  # dev-7: a JSON property name
        for field in ("code", "name", "description"):  # dev-8: unique within the service
            assert len({o[field] for o in options}) == len(options)
    codes = {s: [o["code"] for o in found[s]["extension"]["davinci-crd.configuration-options"]] for s in CRD_SERVICES}
    assert codes == {
        "lbp-referral-select": ["therapy-alternatives-req", "claim", "guideline"],
        "lbp-referral-sign": ["coverage-info", "therapy-alternatives-req", "claim", "guideline"],
        "lbp-appointment-book": ["coverage-info", "claim", "therapy-alternatives-req"],
    }


def test_patient_view_is_not_a_crd_service(client):
    assert "extension" not in services(client)["lbp-patient-view"]


def test_discovery_prefetch_of_the_appointment_book_service(client):
    found = services(client)
    assert found["lbp-appointment-book"]["prefetch"] == found["lbp-referral-sign"]["prefetch"]  # the same patient data
    assert set(found["lbp-appointment-book"]["prefetch"]) == {
        "patient",
        "conditions",
        "coverages",
        "encounters",
        "serviceRequests",
        "procedures",
        "practitionerRoles",
        "practitioners",
    }


# --- configuration (dev-14, dev-15, dev-17) ------------------------------------------------------------


def test_a_client_that_turns_off_a_card_type_gets_the_system_action_only(hooks):
    body = with_configuration(adult_with_lbp().appointment_book(appointment()), claim=False)
    body["extension"]["davinci-crd.configuration"]["therapy-alternatives-req"] = False
    answer = hooks.answer("lbp-appointment-book", body)
    assert answer["cards"] == []
    assert len(answer["systemActions"]) == 1


def test_turning_off_one_card_type_keeps_the_others(hooks):
    body = with_configuration(adult_with_lbp().appointment_book(appointment()), claim=False)
    assert topics(hooks.book(body)) == ["msc-evaluation-first"]
    body = with_configuration(adult_with_lbp().order_sign(ortho_referral()), **{"therapy-alternatives-req": False})
    assert topics(hooks.sign(body)) == []


def test_a_client_that_turns_off_coverage_info_gets_the_cards_only(hooks):
    body = with_configuration(adult_with_lbp().appointment_book(appointment()), **{"coverage-info": False})
    answer = hooks.answer("lbp-appointment-book", body)
    assert "systemActions" not in answer
    assert topics(answer["cards"]) == ["prior-notification-required", "msc-evaluation-first"]


def test_options_the_service_does_not_offer_are_ignored(hooks):
    body = with_configuration(adult_with_lbp().appointment_book(appointment()), cost=False, **{"max-cards": 1})
    assert topics(hooks.book(body)) == ["prior-notification-required", "msc-evaluation-first"]


def test_turning_on_everything_is_the_default(hooks):
    body = with_configuration(adult_with_lbp().appointment_book(appointment()), claim=True, **{"coverage-info": True})
    answer = hooks.answer("lbp-appointment-book", body)
    assert len(answer["cards"]) == 2 and len(answer["systemActions"]) == 1


@pytest.mark.parametrize(
    ("extension", "message"),
    [
        ({"davinci-crd.configuration": {"claim": "no"}}, "davinci-crd.configuration/claim: expected true or false"),
        ({"davinci-crd.configuration": ["claim"]}, "must be an object"),
        ({"davinci-crd.requestedVersion": "2.1"}, "answers CRD version 2.2 only"),
    ],
    ids=["wrong-type", "not-an-object", "unsupported-version"],
)
def test_crd_extensions_the_service_cannot_honour_are_422(client, extension, message):
    body = adult_with_lbp().appointment_book(appointment())
    body["extension"] = extension
    response = client.post("/cds-services/lbp-appointment-book", json=body)
    assert response.status_code == 422
    outcome = response.get_json()
    assert outcome["issue"][0]["code"] == "business-rule" and message in outcome["issue"][0]["diagnostics"]


def test_a_non_crd_service_ignores_crd_extensions(hooks):
    from tests.builders import patient

    body = patient(45).with_lbp().patient_view()
    body["extension"] = {"davinci-crd.configuration": {"guideline": "no"}, "davinci-crd.requestedVersion": "9.9"}
    assert topics(hooks.view(body)) == ["physical-therapy-first-line"]


# --- card types ----------------------------------------------------------------------------------------


def test_card_topics_keep_the_lbp_cds_code_and_carry_the_crd_card_type(hooks):
    cards = hooks.sign(adult_with_lbp().order_sign(ortho_referral(rid="ref-1")))
    [card] = cards
    assert card["source"]["topic"]["system"] == "urn:lbp-cds:card-topic"
    assert card["source"]["topic"]["code"] == "msc-evaluation-first"
    assert card["source"]["extension"]["lbp-cds-crd-card-type"] == {
        "system": "http://terminology.hl7.org/CodeSystem/cdshooks-card-type",
        "code": "therapy-alternatives-req",
        "display": "Required Therapy Alternatives",
    }
    assert card["extension"] == {"davinci-crd.associated-resource": [{"reference": "ServiceRequest/ref-1"}]}


def test_no_card_sends_users_to_a_prior_authorization_portal(hooks, client):
    """CRD resp-17, resp-23: the PN form is a Prior Notification, not prior authorization."""
    cards = hooks.book(adult_with_lbp().appointment_book(appointment()))
    cards += hooks.sign(adult_with_lbp().order_sign(ortho_referral()))
    urls = {link["url"] for card in cards for link in card["links"]}
    for url in urls:
        assert url.startswith(("https://cds.example.org/", "https://www.healthpartners.com/")), url
        assert "auth" not in url.lower(), url
    form = next(url for url in urls if "/prior-notification/form/" in url)
    page = client.get(form.removeprefix("https://cds.example.org")).get_data(as_text=True)
    assert "Prior Notification is not prior authorization" in page


# --- CRD example requests and test-kit fixtures --------------------------------------------------------


def test_the_fixtures_are_the_copies_their_readme_names():
    readme = (FIXTURES / "README.md").read_text()
    listed = dict(re.findall(r"\| `([^`]+)` \|(?: [^|]* \|)? `([0-9a-f]{64})` \|", readme))
    files = sorted(p for p in FIXTURES.rglob("*") if p.is_file() and p.name != "README.md")
    assert {p.name for p in files} == set(listed)
    for path in files:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == listed[path.name], path.name


@pytest.mark.parametrize(
    ("path", "service"),
    [
        ("ig-examples/CRDServiceRequest.json", "lbp-referral-sign"),  # mammography and home oxygen
        ("ig-examples/CRDServiceRequest3.json", "lbp-referral-sign"),  # a CommunicationRequest
        ("test-kit/order_sign_hook_request.json", "lbp-referral-sign"),  # diet and an antibiotic
        ("test-kit/order_select_hook_request.json", "lbp-referral-select"),
    ],
)
def test_crd_requests_outside_the_program_get_a_conformant_empty_answer(client, path, service):
    response = client.post(f"/cds-services/{service}", json=fixture(path))
    assert response.status_code == 200, response.get_json()
    assert_conformant(response.get_json())
    assert response.get_json() == {"cards": []}


@pytest.mark.parametrize(
    "path",
    [
        "ig-examples/CRDServiceRequest4.json",  # with PractitionerRole/987: who is it?
        "test-kit/appointment_book_hook_request.json",  # a check-up with Practitioner/example (and a follow-up)
    ],
)
def test_crd_appointment_requests_naming_an_unknown_practitioner_without_patient_data_are_412(client, path):
    """A visit with a practitioner known only by reference may be a spine surgeon visit: without prefetch and
    without a FHIR server this service may call, the data cannot be had (CDS Hooks 412; CRD found-32 allows it,
    as nothing was prefetched)."""
    response = client.post("/cds-services/lbp-appointment-book", json=fixture(path))
    assert response.status_code == 412
    assert "patient (Patient/{{context.patientId}})" in response.get_json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize(
    ("path", "service", "message"),
    [
        ("ig-examples/CRDServiceRequest2.json", "lbp-referral-sign", "order-sign"),  # an order-dispatch request
        ("test-kit/order_dispatch_hook_request.json", "lbp-referral-sign", "order-sign"),
        ("test-kit/encounter_start_hook_request.json", "lbp-appointment-book", "appointment-book"),
        ("test-kit/encounter_discharge_hook_request.json", "lbp-patient-view", "patient-view"),
    ],
)
def test_crd_hooks_lbp_cds_does_not_offer_are_400(client, path, service, message):
    response = client.post(f"/cds-services/{service}", json=fixture(path))
    assert response.status_code == 400
    # The refusal names the hook the service answers, never what was sent (docs/integrators/errors.md).
    assert f"answers the '{message}' hook only" in response.get_json()["issue"][0]["diagnostics"]


def test_the_crd_appointment_book_example_with_a_spine_visit_gets_the_program_answer(hooks):
    """CRDServiceRequest4's request, its visit turned into the program's case: cards and coverage information."""
    body = fixture("ig-examples/CRDServiceRequest4.json")
    visit = body["context"]["appointments"]["entry"][0]["resource"]
    visit["specialty"] = [{"coding": [{"system": "http://nucc.org/provider-taxonomy", "code": "207XS0117X"}]}]
    visit["reasonCode"] = [{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M54.50"}]}]
    record = adult_with_lbp()
    record.pid = "123"
    body["prefetch"] = record.prefetch()
    answer = hooks.answer("lbp-appointment-book", body)
    assert topics(answer["cards"]) == ["prior-notification-required", "msc-evaluation-first"]
    [action] = answer["systemActions"]
    assert action["resource"]["id"] == "example"
