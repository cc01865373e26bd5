"""Prior Notification (PN): what the hook call hands the rules, what a form link refers to, and records.

- A hook call reads the patient's PNs on file (a fact for the rules; None when the database cannot
  be read) and, for each PN card, stores the form's context (pre-filled answers) and signs a link to
  it: an itsdangerous token holding only the context id, expiring after CDS_PN_LINK_DAYS.
- A submission, from the web form or as JSON, is checked against the Questionnaire and becomes a
  PriorNotificationRecord with an idempotency key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from cards.render import thaw
from cds_service.content.forms import ANSWER_MEMBER, Form
from cds_service.errors import StorageUnavailable
from cds_service.pipeline.questionnaire_response import Answers, CheckedResponse, answer_date, first, walk_enabled
from cds_service.storage.prior_notifications import Correction, FormContext, PriorNotificationRecord, Scope
from hooks import fhir
from hooks.appointments import NPI_SYSTEM, participant_resources, specialty_concepts
from hooks.facts import PatientFacts
from hooks.model import Appointment, HumanName, Identifier, Organization, Practitioner, lenient
from hooks.notifications import PriorNotificationOnFile
from hooks.record import PatientRecord
from hooks.rules import msc_exemption_on_record
from hooks.terminology import ICD10CM, normalize

log = logging.getLogger("lbp_cds")
TOKEN_SALT = "lbp-cds prior-notification form link"
NUCC = "http://nucc.org/provider-taxonomy"
MEMBER_ID_TYPE = ("http://terminology.hl7.org/CodeSystem/v2-0203", "MB")


class NotificationStore(Protocol):
    """Where the hook call reads PNs on file and stores form contexts (storage.PriorNotificationStore)."""

    def on_file(self, scope: Scope, patient_id: str, since: date) -> list[PriorNotificationOnFile]: ...

    def save_form_context(self, context: FormContext) -> None: ...


class FormLinkInvalid(Exception):
    """A form link that was not signed by this service (or was altered)."""


class FormLinkExpired(FormLinkInvalid):
    """A genuine form link older than its lifetime."""


class FormLinks:
    """Signed, expiring references to stored form contexts: no patient data ever goes in the URL."""

    def __init__(self, secret: str, max_age: timedelta) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt=TOKEN_SALT)
        self.max_age = max_age

    def token(self, context_id: str) -> str:
        return str(self._serializer.dumps(context_id))

    def context_id(self, token: str) -> str:
        try:
            value = self._serializer.loads(token, max_age=int(self.max_age.total_seconds()))
        except SignatureExpired:
            raise FormLinkExpired() from None
        except BadSignature:
            raise FormLinkInvalid() from None
        if not isinstance(value, str):
            raise FormLinkInvalid()
        return value


def questionnaire_url(base_url: str, form: Form) -> str:
    """Where the form is served, which is also its canonical URL."""
    return f"{base_url}/fhir/Questionnaire/{form.id}"


def questionnaire_canonical(base_url: str, form: Form) -> str:
    return f"{questionnaire_url(base_url, form)}|{form.version}"


def served_questionnaire(base_url: str, form: Form) -> dict[str, Any]:
    """The Questionnaire as served: its canonical url set from where this service is reachable."""
    resource = {k: thaw(v) for k, v in form.resource.items() if k not in ("resourceType", "id")}
    return {"resourceType": "Questionnaire", "id": form.id, "url": questionnaire_url(base_url, form), **resource}


def notifications_on_file(
    store: NotificationStore | None, scope: Scope, patient_id: str, since: date
) -> tuple[PriorNotificationOnFile, ...] | None:
    """The fact for the rules: the patient's PNs (none when there is no store), None when unreadable."""
    if store is None:
        return ()
    try:
        return tuple(store.on_file(scope, patient_id, since))
    except StorageUnavailable:
        log.warning("prior notifications could not be read: the cards say they could not be checked")
        return None


def new_form_context(
    store: NotificationStore | None,
    links: FormLinks | None,
    *,
    scope: Scope,
    patient_id: str,
    appointment: Appointment,
    prefill: Mapping[str, Any],
    now: datetime,
) -> str | None:
    """Store the form's context and return the signed token for its link; None when it cannot be stored."""
    if store is None or links is None:
        return None
    context = FormContext(
        id=str(uuid.uuid4()),
        scope=scope,
        patient_id=patient_id,
        appointment_id=appointment.id,
        prefill=prefill,
        created_at=now,
        expires_at=now + links.max_age,
    )
    try:
        store.save_form_context(context)
    except StorageUnavailable:
        log.warning("a Prior Notification form context could not be stored: the card links the blank form")
        return None
    return links.token(context.id)


# --------------------------------------------------------------------------
# Pre-filling the form from what the hook call knew
# --------------------------------------------------------------------------


def prefill(appointment: Appointment, record: PatientRecord, facts: PatientFacts, form: Form) -> dict[str, Any]:
    """Answers the form can start with (the practice checks and completes them); only items the form has."""
    patient = record.patient
    values: dict[str, Any] = {
        "member-name": person_name(patient.name if patient else None),
        "member-birth-date": full_date(patient.birthDate if patient else None),
        "member-id": member_id(facts),
        "visit-date": full_date(appointment.start),
    }
    for resource in participant_resources(appointment, facts.references):
        if isinstance(resource, Organization):
            values.setdefault("practice-name", text(lenient(resource.name, str, "")))
            values.setdefault("practice-npi", npi_of(resource.identifier))
        elif isinstance(resource, Practitioner):
            values.setdefault("surgeon-name", person_name(resource.name))
            values.setdefault("surgeon-npi", npi_of(resource.identifier))
    values.update(diagnosis(appointment, facts))
    specialty = specialty_option(appointment, facts, form)
    if specialty is not None:
        values["surgeon-specialty"] = specialty
    values.update(msc_answers(facts, form))
    return {k: v for k, v in values.items() if v not in (None, "") and k in form.by_link_id}


def person_name(sent: object) -> str | None:
    """The first official (or usual, or unlabelled) name of those sent; a name not shaped as FHIR says is none."""
    names = [lenient(name, HumanName, None) for name in lenient(sent, list[object], [])]
    ranked = sorted((n for n in names if n is not None), key=lambda n: n.use not in ("official", "usual", None))
    for name in ranked:
        whole = text(name.text) or text(" ".join([*name.given, text(name.family) or ""]))
        if whole:
            return whole
    return None


def text(value: str | None) -> str | None:
    """A FHIR string element, trimmed; None when it is blank or absent."""
    return value.strip() or None if value is not None else None


def full_date(value: str | None) -> str | None:
    return value[:10] if value is not None and len(value) >= 10 else None


def member_id(facts: PatientFacts) -> str | None:
    """The member number of the primary coverage (identifier of type MB), else its subscriber id."""
    coverage = facts.primary_coverage
    if coverage is None:
        return None
    for sent in lenient(coverage.identifier, list[object], []):
        identifier = lenient(sent, Identifier, None)
        if identifier and MEMBER_ID_TYPE in set(fhir.codings((identifier.type,))) and identifier.value is not None:
            return identifier.value
    return lenient(coverage.subscriberId, str, None)


def npi_of(identifiers: tuple[Identifier, ...]) -> str | None:
    return next((text(i.value) for i in identifiers if i.system == NPI_SYSTEM), None)


def diagnosis(appointment: Appointment, facts: PatientFacts) -> dict[str, Any]:
    """The visit's ICD-10-CM reason, else the patient's active LBP diagnosis."""
    concepts = [*appointment.reasonCode, *(c.code for c in facts.lbp_conditions if c.code is not None)]
    for concept in concepts:
        for coding in concept.coding:
            if coding.code is None:
                continue
            system, code = normalize(coding.system or "", coding.code)
            if system == ICD10CM:
                return {"diagnosis-code": code, "diagnosis-text": text(coding.display)}
    return {}


def specialty_option(appointment: Appointment, facts: PatientFacts, form: Form) -> dict[str, Any] | None:
    """The form's surgeon-specialty option the visit's specialty codes name, if any."""
    item = form.by_link_id.get("surgeon-specialty")
    if item is None:
        return None
    for system, code in fhir.codings(specialty_concepts(appointment, facts.references)):
        option = item.option(system, code)
        if option is not None:
            return dict(option)
    return None


def msc_answers(facts: PatientFacts, form: Form) -> dict[str, Any]:
    """What the record says about the MSC step: done, or why not when the member is exempt."""
    exemption = msc_exemption_on_record(facts)
    if exemption == "msc-done":
        return {"msc-done": True}
    # The form's own codes; a suspension is the plan's, not the record's, so it is left to the practice.
    reason = {"medicare-advantage": "medicare-advantage", "no-msc-access": "no-msc-in-region"}.get(exemption or "")
    item = form.by_link_id.get("msc-not-done-reason")
    option = next((o for o in item.options if o["code"] == reason), None) if item is not None and reason else None
    return {"msc-done": False, "msc-not-done-reason": dict(option)} if option is not None else {}


# --------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Submission:
    """Who submits, and how: the EHR's scope and its patient, and the form link's context if any."""

    scope: Scope
    via: str  # api | web-form
    context: FormContext | None = None


def new_record(
    response: Mapping[str, Any], checked: CheckedResponse, submission: Submission, now: datetime, today: date
) -> PriorNotificationRecord:
    """The record to store: a server-assigned id, the response with its id and meta, the answers it reads."""
    key = submission_key(response, submission)
    record_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"urn:lbp-cds:prior-notification:{key}"))
    stored = {k: v for k, v in response.items() if k not in ("id", "meta")}
    meta = {"versionId": "1", "lastUpdated": iso(now)}
    stored = {"resourceType": "QuestionnaireResponse", "id": record_id, "meta": meta, **stored}
    context = submission.context
    return PriorNotificationRecord(
        id=record_id,
        submission_key=key,
        questionnaire=str(response["questionnaire"]),
        status=str(response["status"]),
        scope=submission.scope,
        patient_id=checked.patient_id,
        appointment_id=context.appointment_id if context else None,
        form_context_id=context.id if context else None,
        submitted_via=submission.via,
        submitted_at=now,
        filed_on=today,
        response=stored,
        fields=record_fields(checked.answers),
    )


def correction(
    record_id: str,
    version: int,
    response: Mapping[str, Any],
    checked: CheckedResponse,
    scope: Scope,
    now: datetime,
    today: date,
) -> Correction:
    """A correction of version `version` of a record: the response, status amended, as the record's next version."""
    rest = {k: v for k, v in response.items() if k not in ("resourceType", "id", "meta", "status")}
    amended = {
        "resourceType": "QuestionnaireResponse",
        "id": record_id,
        "meta": {"versionId": str(version + 1), "lastUpdated": iso(now)},
        "status": "amended",
        **rest,
    }
    return Correction(record_id, scope, version, amended, record_fields(checked.answers), now, today)


def same_answers(stored: Mapping[str, Any], sent: Mapping[str, Any]) -> bool:
    """Whether two responses give the same answers (whenever and however they were filed)."""
    server_set = ("id", "meta", "authored", "status")
    return {k: v for k, v in stored.items() if k not in server_set} == {
        k: v for k, v in sent.items() if k not in server_set
    }


def submission_key(response: Mapping[str, Any], submission: Submission) -> str:
    """The same response from the same EHR (and form link) is the same submission: stored once.

    The web form's `authored` is the server's clock at each post, so it does not tell two posts apart.
    """
    server_set = ("id", "meta", "authored") if submission.via == "web-form" else ("id", "meta")
    content = {k: v for k, v in response.items() if k not in server_set}
    scope = submission.scope
    basis = [scope.issuer, scope.tenant, submission.context.id if submission.context else None, content]
    return hashlib.sha256(json.dumps(basis, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def record_fields(answers: Answers) -> dict[str, Any]:
    reason = first(answers, "msc-not-done-reason")
    return {
        "member_name": first(answers, "member-name"),
        "member_birth_date": answer_date(answers, "member-birth-date"),
        "member_id": first(answers, "member-id"),
        "practice_name": first(answers, "practice-name"),
        "practice_npi": first(answers, "practice-npi"),
        "surgeon_name": first(answers, "surgeon-name"),
        "surgeon_npi": first(answers, "surgeon-npi"),
        "visit_date": answer_date(answers, "visit-date"),
        "diagnosis_code": first(answers, "diagnosis-code"),
        "msc_done": first(answers, "msc-done"),
        "msc_date": answer_date(answers, "msc-date"),
        "msc_not_done_reason": reason.get("code") if isinstance(reason, dict) else None,
        "attester_name": first(answers, "attester-name"),
    }


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --------------------------------------------------------------------------
# The web form's fields as a QuestionnaireResponse
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Upload:
    filename: str
    content_type: str
    data: bytes


def response_from_fields(
    form: Form,
    fields: Mapping[str, str],
    uploads: Mapping[str, Upload],
    context: FormContext,
    base_url: str,
    now: datetime,
    kept: Answers | None = None,
) -> dict[str, Any]:
    """The response the form's fields say (field names are linkIds); answers to disabled items dropped.

    Without JavaScript every field is on the page: an MSC date typed before answering "no" is not
    an answer, as FHIR drops the answers of items that are not enabled. `kept`: in a correction, the
    attachments already filed, kept unless another file is chosen (no browser pre-fills a file field).
    """
    answers: Answers = {}
    for item in form.walk():
        value = field_answer(item, fields.get(item.link_id, ""), uploads.get(item.link_id))
        if value is not None:
            answers[item.link_id] = [value]
        elif item.type == "attachment" and kept and item.link_id in kept:
            answers[item.link_id] = list(kept[item.link_id])
    enabled = {item.link_id for item, on in walk_enabled(form.items, answers, enabled=True) if on}
    answers = {k: v for k, v in answers.items() if k in enabled}
    response: dict[str, Any] = {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": questionnaire_canonical(base_url, form),
        "status": "completed",
        "subject": {"reference": f"Patient/{context.patient_id}"},
        "authored": iso(now),
        "item": response_items(form.items, answers),
    }
    attester = first(answers, "attester-name")
    if isinstance(attester, str):
        response["author"] = {"display": attester}
    return response


def field_answer(item: Any, raw: str, upload: Upload | None) -> Any:
    """One field's answer value, or None when left empty; odd values stay odd for the check to name."""
    if item.type == "attachment":
        if upload is None or not upload.data:
            return None
        return {
            "contentType": upload.content_type,
            "data": base64.b64encode(upload.data).decode("ascii"),
            "title": upload.filename or "attachment",
            "size": len(upload.data),
        }
    text = raw.strip()
    if not text or item.type in ("group", "display"):
        return None
    if item.type == "boolean":
        return {"true": True, "false": False}.get(text, text)
    if item.type == "choice":
        option = next((o for o in item.options if o["code"] == text), None)
        return dict(option) if option is not None else {"system": "", "code": text}
    return text


def response_items(items: Any, answers: Answers) -> list[dict[str, Any]]:
    """QuestionnaireResponse.item for the answered items, nested as the form's groups are."""
    found = []
    for item in items:
        if item.type == "group":
            children = response_items(item.items, answers)
            if children:
                found.append({"linkId": item.link_id, "text": item.text, "item": children})
        elif item.link_id in answers:
            member = ANSWER_MEMBER[item.type]
            found.append(
                {"linkId": item.link_id, "text": item.text, "answer": [{member: v} for v in answers[item.link_id]]}
            )
    return found
