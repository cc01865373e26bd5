"""Filing Prior Notifications in tests, the two ways a practice does: the card's web form, or JSON."""

from __future__ import annotations

import re
from typing import Any

from flask.testing import FlaskClient

from tests.builders import LBP, PRACTICE_NPI, SURGEON_NPI
from tests.conftest import BASE_URL

QUESTIONNAIRE = f"{BASE_URL}/fhir/Questionnaire/lbp-prior-notification"
PN_SYSTEM = "urn:lbp-cds:prior-notification"
NUCC = "http://nucc.org/provider-taxonomy"


def form_link(card: dict[str, Any]) -> str:
    """The path of the card's Prior Notification form link."""
    [url] = [link["url"] for link in card["links"] if "/prior-notification/form" in link["url"]]
    return url.removeprefix(BASE_URL)


def completed_fields(**changes: str) -> dict[str, str]:
    """What a practice submits on the web form: every required answer (the form's field names are linkIds)."""
    fields = {
        "member-name": "Pat Lumbar",
        "member-birth-date": "1981-04-02",
        "member-id": "M123456",
        "practice-name": "Lakeside Spine Surgery",
        "practice-npi": PRACTICE_NPI,
        "surgeon-name": "Dr Ada Spine",
        "surgeon-npi": SURGEON_NPI,
        "surgeon-specialty": "207XS0117X",
        "visit-date": "2026-12-10",
        "diagnosis-code": LBP,
        "msc-done": "false",
        "msc-not-done-reason": "patient-choice",
        "attested": "attested",
        "attester-name": "Sam Scheduler",
    }
    fields.update(changes)
    return {k: v for k, v in fields.items() if v != ""}


def file_on_form(client: FlaskClient, card: dict[str, Any], **changes: str) -> str:
    """Submit the card's form; the saved record's id."""
    response = client.post(form_link(card), data=completed_fields(**changes))
    assert response.status_code == 303, response.get_data(as_text=True)
    return str(response.headers["Location"]).rsplit("/", 1)[1]


def answer(link_id: str, member: str, value: Any) -> dict[str, Any]:
    return {"linkId": link_id, "answer": [{member: value}]}


def response_json(patient_id: str = "p1", **changes: Any) -> dict[str, Any]:
    """A complete QuestionnaireResponse as a DTR-capable EHR submits it; `changes` replace answers by linkId
    (None removes the item)."""
    groups: dict[str, list[dict[str, Any]]] = {
        "member": [
            answer("member-name", "valueString", "Pat Lumbar"),
            answer("member-birth-date", "valueDate", "1981-04-02"),
            answer("member-id", "valueString", "M123456"),
        ],
        "practice": [
            answer("practice-name", "valueString", "Lakeside Spine Surgery"),
            answer("practice-npi", "valueString", PRACTICE_NPI),
            answer("surgeon-name", "valueString", "Dr Ada Spine"),
            answer("surgeon-npi", "valueString", SURGEON_NPI),
            answer(
                "surgeon-specialty",
                "valueCoding",
                {"system": NUCC, "code": "207XS0117X", "display": "Orthopaedic Surgery of the Spine Physician"},
            ),
        ],
        "visit": [answer("visit-date", "valueDate", "2026-12-10"), answer("diagnosis-code", "valueString", LBP)],
        "msc": [
            answer("msc-done", "valueBoolean", True),
            answer("msc-date", "valueDate", "2026-10-01"),
            answer("msc-notes-reference", "valueString", "MSC note of 2026-10-01 in the shared EHR"),
        ],
        "attestation": [
            answer("attested", "valueCoding", {"system": PN_SYSTEM, "code": "attested"}),
            answer("attester-name", "valueString", "Sam Scheduler"),
        ],
    }
    for link_id, value in changes.items():
        for items in groups.values():
            for index, item in enumerate(items):
                if item["linkId"] == link_id:
                    if value is None:
                        del items[index]
                    else:
                        member = next(iter(item["answer"][0]))
                        items[index] = answer(link_id, member, value)
    return {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": f"{QUESTIONNAIRE}|2026.1",
        "status": "completed",
        "subject": {"reference": f"Patient/{patient_id}"},
        "authored": "2026-11-20T10:00:00Z",
        "item": [{"linkId": group, "item": items} for group, items in groups.items()],
    }


def field_values(html: str) -> dict[str, str]:
    """The pre-filled values of the form's text and date fields, and its checked radios and boxes."""
    values = dict(re.findall(r'<input type="(?:text|date)" id="[^"]+" name="([^"]+)" value="([^"]*)"', html))
    values.update(re.findall(r'name="([^"]+)" value="([^"]+)" checked', html))
    return {k: v for k, v in values.items() if v}
