"""Prior Notification over HTTP: the Questionnaire, QuestionnaireResponses (JSON), and the web form.

FHIR endpoints (JSON, `application/fhir+json`), under /fhir:
- GET  /fhir/Questionnaire/{id}: the PN form as a FHIR Questionnaire (open, like discovery).
- POST /fhir/QuestionnaireResponse: a PN as JSON, authenticated like a hook call (the EHR's JWT,
  audience this URL); 201 with Location when stored, 200 with the stored one for a resubmission.
- GET  /fhir/QuestionnaireResponse[?patient=&_lastUpdated=&_count=] and /fhir/QuestionnaireResponse/{id}:
  the records, for the plan's staff tools (CDS_PN_READER_ISSUERS: every EHR's) and for an EHR (its own);
  /fhir/QuestionnaireResponse/{id}/_history/{n}: a version of an amended record.

The web form (HTML, no JavaScript, strict CSP), opened from the card's link:
- GET/POST /prior-notification/form/{token}: the pre-filled form; its signed token is its authorisation.
  A link files one record: once used, it opens a page that says so and links the record and its correction.
- GET /prior-notification/form/{token}/records/{id}: the saved record (its latest version), printable.
- GET/POST /prior-notification/form/{token}/records/{id}/correction: the form with the filed answers; sent, it
  amends the record (QuestionnaireResponse status `amended`), the earlier version kept.
- GET /prior-notification/form/{token}/records/{id}/versions/{n}: an earlier version of the record.
- GET /prior-notification/form: the blank printable form (what a card links when no context could be stored).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlencode

import orjson
from flask import Blueprint, Response, jsonify, make_response, redirect, render_template, request, url_for

from cds_service.content.forms import PN_FORM_ID, Form, FormItem
from cds_service.errors import BadRequest, NotFound, StorageUnavailable
from cds_service.pipeline.prior_notification import (
    FormLinkExpired,
    FormLinkInvalid,
    Submission,
    Upload,
    correction,
    new_record,
    response_from_fields,
    same_answers,
    served_questionnaire,
)
from cds_service.pipeline.questionnaire_response import (
    FHIR_ID_PATTERN,
    Answers,
    ItemProblem,
    check_response,
    raise_if_invalid,
)
from cds_service.pipeline.validation import refuse_deep_nesting
from cds_service.storage.prior_notifications import (
    AlreadyFiled,
    CorrectedMeanwhile,
    FormContext,
    Scope,
    SearchCriteria,
)
from cds_service.web.auth import Caller
from cds_service.web.hook_routes import authenticate, public_base_url, read_json_body
from cds_service.wiring import AppServices, current_services, scope_of

blueprint = Blueprint("prior_notification", __name__)
FHIR_JSON = "application/fhir+json"
# The form pages run no script at all (not even this service's own), take styles only from this service's
# files, post only to themselves, and are never framed.
FORM_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
DEFAULT_COUNT, MAX_COUNT = 100, 1000
LAST_UPDATED = re.compile(r"^(ge|le)([0-9]{4}-[0-9]{2}-[0-9]{2})$")
SEARCH_PARAMETERS = frozenset({"patient", "_lastUpdated", "_count", "_offset"})
# Room left in a search answer for the Bundle around its entries (type, total, links).
BUNDLE_ENVELOPE_BYTES = 4096
SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}
UNAVAILABLE = "The plan's records are unavailable for a moment. Try again in a minute."
NOT_CORRECTED = (
    "The correction could not be saved right now, so the filed answers are unchanged. Send it again in a minute."
)


# --------------------------------------------------------------------------
# FHIR endpoints
# --------------------------------------------------------------------------


@blueprint.get("/fhir/Questionnaire/<questionnaire_id>")
def questionnaire(questionnaire_id: str) -> Response:
    services = current_services()
    form = services.current_content().forms.get(questionnaire_id)
    if form is None:
        raise NotFound(f"No Questionnaire/{questionnaire_id} (this service serves Questionnaire/{PN_FORM_ID}).")
    return fhir_json(served_questionnaire(public_base_url(services), form))


@blueprint.post("/fhir/QuestionnaireResponse")
def submit_response() -> Response:
    """Answer 2xx only once the record is committed; 503 with Retry-After when it cannot be."""
    services = current_services()
    caller = authenticate(services)
    body = read_json_body(services)
    refuse_deep_nesting(body, "")
    form = pn_form(services)
    checked, problems = check_response(body, form)
    raise_if_invalid(problems)
    assert checked is not None
    submission = Submission(scope_of(caller), "api")
    record = new_record(body, checked, submission, datetime.now(UTC), services.clock.today())
    stored, created = services.prior_notifications.record(record)
    response = fhir_json(stored, 201 if created else 200)
    response.headers["Location"] = f"{public_base_url(services)}/fhir/QuestionnaireResponse/{stored['id']}"
    return response


@blueprint.get("/fhir/QuestionnaireResponse/<record_id>")
def read_response(record_id: str) -> Response:
    services = current_services()
    caller = authenticate(services)
    stored = services.prior_notifications.get(record_id, reader_scope(services, caller))
    if stored is None:
        raise NotFound(f"No QuestionnaireResponse/{record_id} that this caller may read.")
    return fhir_json(stored.response)


@blueprint.get("/fhir/QuestionnaireResponse/<record_id>/_history/<version_id>")
def read_version(record_id: str, version_id: str) -> Response:
    """A version of a record (FHIR vread): the latest, or one a correction replaced."""
    services = current_services()
    caller = authenticate(services)
    store = services.prior_notifications
    stored = store.get(record_id, reader_scope(services, caller))
    version = int(version_id) if version_id.isdecimal() and len(version_id) < 9 else 0
    if stored is not None and version == stored.version:
        return fhir_json(stored.response)
    earlier = store.earlier_version(record_id, version) if stored is not None else None
    if earlier is None:
        raise NotFound(f"No version {version_id} of QuestionnaireResponse/{record_id} that this caller may read.")
    return fhir_json(earlier.response)


@blueprint.get("/fhir/QuestionnaireResponse")
def search_responses() -> Response:
    services = current_services()
    caller = authenticate(services)
    unknown = sorted(set(request.args) - SEARCH_PARAMETERS)
    if unknown:
        raise BadRequest(
            f"Unsupported search parameter(s) {', '.join(unknown)}; supported: patient, _lastUpdated, _count, _offset."
        )
    since, until = last_updated(request.args.getlist("_lastUpdated"))
    scope = reader_scope(services, caller)
    criteria = SearchCriteria(patient_id(request.args.get("patient")), since, until)
    limit, offset = count(request.args.get("_count")), number("_offset", request.args.get("_offset"), 0)
    base = public_base_url(services)
    budget = services.settings.pn_search_max_bytes - BUNDLE_ENVELOPE_BYTES
    with services.prior_notifications.search(scope, criteria, offset=offset, limit=limit + 1) as rows:
        entries, more = page_of(rows, base, limit, budget)
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": services.prior_notifications.count(scope, criteria),
        "link": [{"relation": "self", "url": page_url(base, offset, limit)}],
        "entry": entries,
    }
    if more:
        bundle["link"].append({"relation": "next", "url": page_url(base, offset + len(entries), limit)})
    return fhir_json(bundle)


def page_of(rows: Iterator[Any], base: str, limit: int, budget: int) -> tuple[list[dict[str, Any]], bool]:
    """The entries of a page (at most `limit`, at most `budget` bytes of JSON, at least one) and whether more
    records follow; rows are consumed as they come, so no more than a page is held."""
    entries: list[dict[str, Any]] = []
    for row in rows:
        entry = search_entry(base, row.id, row.response)
        size = len(orjson.dumps(entry))
        if len(entries) == limit or (entries and size > budget):
            return entries, True  # the next page starts with this record
        entries.append(entry)
        budget -= size
    return entries, False


def search_entry(base: str, record_id: str, response: Mapping[str, Any]) -> dict[str, Any]:
    """A record as a search shows it: each attachment's data left out, linked to the record that holds it
    (FHIR's SUBSETTED tag says so); the read of the record returns it whole."""
    url = f"{base}/fhir/QuestionnaireResponse/{record_id}"
    items, subsetted = without_attachment_data(response.get("item") or [], url)
    resource = {**response, "item": items} if subsetted else response
    if subsetted:
        meta = dict(resource.get("meta") or {})
        meta["tag"] = [*meta.get("tag", []), SUBSETTED]
        resource = {**resource, "meta": meta}
    return {"fullUrl": url, "resource": resource, "search": {"mode": "match"}}


def without_attachment_data(items: list[Any], url: str) -> tuple[list[Any], bool]:
    """The items with every attachment's `data` replaced by `url`; whether any was."""
    changed = False
    result = []
    for item in items:
        answers = []
        for answer in item.get("answer") or []:
            attachment = answer.get("valueAttachment")
            if isinstance(attachment, Mapping) and "data" in attachment:
                kept = {k: v for k, v in attachment.items() if k != "data"}
                answer = {**answer, "valueAttachment": {**kept, "url": url}}
                changed = True
            answers.append(answer)
        children, nested = without_attachment_data(item.get("item") or [], url)
        changed = changed or nested
        copy = {**item, "answer": answers} if "answer" in item else dict(item)
        if "item" in item:
            copy["item"] = children
        result.append(copy)
    return result, changed


def page_url(base: str, offset: int, limit: int) -> str:
    """This search's URL at another page: the same parameters, with _offset and _count."""
    kept = [(k, v) for k, v in request.args.items(multi=True) if k not in ("_offset", "_count")]
    return f"{base}/fhir/QuestionnaireResponse?" + urlencode([*kept, ("_count", limit), ("_offset", offset)])


def reader_scope(services: AppServices, caller: Caller | None) -> Scope | None:
    """None (every EHR's records) for the plan's staff tools and in development; else the caller's own EHR."""
    if caller is None or caller.issuer in services.settings.pn_reader_issuers:
        return None
    return scope_of(caller)


def last_updated(values: list[str]) -> tuple[date | None, date | None]:
    since = until = None
    for value in values:
        match = LAST_UPDATED.fullmatch(value)
        if match is None:
            raise BadRequest("_lastUpdated: write geYYYY-MM-DD or leYYYY-MM-DD (whole UTC days).")
        try:
            day = date.fromisoformat(match.group(2))
        except ValueError:
            raise BadRequest("_lastUpdated: the date after ge or le is not a calendar date.") from None
        since, until = (day, until) if match.group(1) == "ge" else (since, day)
    return since, until


def patient_id(value: str | None) -> str | None:
    if value is not None and not FHIR_ID_PATTERN.fullmatch(value):
        raise BadRequest("patient: a FHIR Patient id (letters, digits, '-' and '.', at most 64).")
    return value


def number(name: str, value: str | None, default: int) -> int:
    if value is None:
        return default
    if not value.isdecimal() or len(value) > 9:
        raise BadRequest(f"{name}: a whole number (at most 9 digits).")
    return int(value)


def count(value: str | None) -> int:
    if value is None:
        return DEFAULT_COUNT
    if not value.isdecimal() or not 1 <= int(value) <= MAX_COUNT:
        raise BadRequest(f"_count: a whole number from 1 to {MAX_COUNT}.")
    return int(value)


def fhir_json(resource: Mapping[str, Any], status: int = 200) -> Response:
    response = jsonify(resource)
    response.status_code = status
    response.mimetype = FHIR_JSON
    return response


def pn_form(services: AppServices) -> Form:
    return services.current_content().forms[PN_FORM_ID]


# --------------------------------------------------------------------------
# The web form
# --------------------------------------------------------------------------


@blueprint.get("/prior-notification/form")
def blank_form() -> Response:
    services = current_services()
    return page("pn_form.html", form=pn_form(services), values={}, errors={}, action=None, context=None)


@blueprint.get("/prior-notification/form/<token>")
def prefilled_form(token: str) -> Response:
    """The pre-filled form (HEAD too, which Flask answers with this view's headers and no body)."""
    services = current_services()
    context, failure = open_context(services, token)
    if context is None:
        return failure
    try:
        filed = services.prior_notifications.filed_from(context.id)
    except StorageUnavailable:
        return unavailable_message()
    if filed is not None:
        return used_link_page(token, filed)
    values = {key: field_value(value) for key, value in context.prefill.items()}
    return page("pn_form.html", form=pn_form(services), values=values, errors={}, action=request.path, context=context)


def used_link_page(token: str, filed: Any) -> Response:
    """What a form link opens once it has filed its Prior Notification: when, and how to see or correct it."""
    return page(
        "pn_used.html",
        record=filed,
        record_url=url_for("prior_notification.saved", token=token, record_id=filed.id),
        correction_url=url_for("prior_notification.correction_form", token=token, record_id=filed.id),
    )


@blueprint.post("/prior-notification/form/<token>")
def submit_form(token: str) -> Response:
    """Only a POST files a Prior Notification: its own view, so no other method can reach this code."""
    services = current_services()
    form = pn_form(services)
    fields = {name: value for name, value in request.form.items()}
    context, failure = open_context(services, token, typed=fields)
    if context is None:
        return failure
    base = public_base_url(services)
    uploads = {
        name: Upload(upload.filename or "", upload.mimetype or "", upload.read())
        for name, upload in request.files.items()
        if upload.filename
    }
    response = response_from_fields(form, fields, uploads, context, base, datetime.now(UTC))
    checked, problems = check_response(response, form)
    if problems or checked is None:
        errors = by_item(problems)
        return page(
            "pn_form.html", status=400, form=form, values=fields, errors=errors, action=request.path, context=context
        )
    submission = Submission(context.scope, "web-form", context)
    record = new_record(response, checked, submission, datetime.now(UTC), services.clock.today())
    try:
        stored, _created = services.prior_notifications.record(record)
        return to_record(token, str(stored["id"]))
    except AlreadyFiled as filed:
        # Never a second record unnoticed: the answers sent, offered as a correction of the one filed.
        return refused_as_already_filed(services, token, filed.record_id, context, fields)
    except StorageUnavailable:
        return unavailable_page(form, fields)


def refused_as_already_filed(
    services: AppServices, token: str, record_id: str, context: FormContext, fields: Mapping[str, str]
) -> Response:
    try:
        filed = services.prior_notifications.get(record_id, context.scope)
    except StorageUnavailable:
        return unavailable_page(pn_form(services), fields)
    assert filed is not None  # the link's record, in the link's scope
    return correction_page(token, filed, fields, {}, status=409, conflict="already-filed")


def to_record(token: str, record_id: str) -> Response:
    return make_response(redirect(url_for("prior_notification.saved", token=token, record_id=record_id), 303))


@blueprint.get("/prior-notification/form/<token>/records/<record_id>/correction")
def correction_form(token: str, record_id: str) -> Response:
    """The form with the record's latest answers, to correct them."""
    services = current_services()
    opened, failure = open_record(services, token, record_id)
    if opened is None:
        return failure
    filed = opened[1]
    return correction_page(token, filed, answers_as_fields(filed.response), {})


@blueprint.post("/prior-notification/form/<token>/records/<record_id>/correction")
def submit_correction(token: str, record_id: str) -> Response:
    """Amend the record with the answers sent (status amended, the version it replaces kept)."""
    services = current_services()
    form = pn_form(services)
    fields = {name: value for name, value in request.form.items()}
    opened, failure = open_record(services, token, record_id, typed=fields)
    if opened is None:
        return failure
    context, filed = opened
    uploads = {
        name: Upload(upload.filename or "", upload.mimetype or "", upload.read())
        for name, upload in request.files.items()
        if upload.filename
    }
    base = public_base_url(services)
    kept = attachments_of(filed.response)
    response = response_from_fields(form, fields, uploads, context, base, datetime.now(UTC), kept)
    checked, problems = check_response(response, form)
    if problems or checked is None:
        return correction_page(token, filed, fields, by_item(problems), status=400)
    corrects = number("base-version", fields.get("base-version"), filed.version)
    amended = correction(
        filed.id, corrects, response, checked, context.scope, datetime.now(UTC), services.clock.today()
    )
    try:
        outcome = services.prior_notifications.amend(amended, same_answers)
    except CorrectedMeanwhile:
        latest = services.prior_notifications.get(filed.id, context.scope)
        assert latest is not None
        return correction_page(token, latest, fields, {}, status=409, conflict="corrected-meanwhile")
    except StorageUnavailable:
        refused = correction_page(token, filed, fields, {None: NOT_CORRECTED}, status=503)
        refused.headers["Retry-After"] = "30"
        return refused
    if outcome is None:
        return no_such_record()
    return to_record(token, filed.id)


def correction_page(
    token: str,
    filed: Any,
    values: Mapping[str, str],
    errors: Mapping[str | None, str],
    status: int = 200,
    conflict: str | None = None,
) -> Response:
    """The form to correct a record: `values` shown, the version corrected in a hidden field (a correction
    started from an older version than the stored one is not applied unseen)."""
    services = current_services()
    return page(
        "pn_form.html",
        status=status,
        form=pn_form(services),
        values={**values, "base-version": str(filed.version)},
        errors=errors,
        action=url_for("prior_notification.submit_correction", token=token, record_id=filed.id),
        correcting=filed,
        conflict=conflict,
        record_url=url_for("prior_notification.saved", token=token, record_id=filed.id),
        attached=attachments_of(filed.response),
    )


def open_record(
    services: AppServices, token: str, record_id: str, typed: Mapping[str, str] | None = None
) -> tuple[tuple[FormContext, Any] | None, Response]:
    """The form link's context and the record it filed, or the page that says why they cannot be shown."""
    context, failure = open_context(services, token, typed)
    if context is None:
        return None, failure
    try:
        stored = services.prior_notifications.get(record_id, context.scope)
    except StorageUnavailable:
        return None, unavailable_message()
    if stored is None or stored.form_context_id != context.id:
        return None, no_such_record()
    return (context, stored), Response()


def no_such_record() -> Response:
    return page(
        "pn_message.html", status=404, title="No such record", message="This form link has no record with that number."
    )


def unavailable_message() -> Response:
    response = page("pn_message.html", status=503, title="Try again in a minute", message=UNAVAILABLE)
    response.headers["Retry-After"] = "30"
    return response


@blueprint.get("/prior-notification/form/<token>/records/<record_id>")
def saved(token: str, record_id: str) -> Response:
    services = current_services()
    opened, failure = open_record(services, token, record_id)
    if opened is None:
        return failure
    stored = opened[1]
    try:
        earlier = services.prior_notifications.earlier_versions(stored.id)
    except StorageUnavailable:
        return unavailable_message()
    zone = services.settings.zone
    return page(
        "pn_saved.html",
        record=stored,
        filed_at=stored.submitted_at.astimezone(zone),
        amended_at=stored.amended_at.astimezone(zone) if stored.amended_at else None,
        zone=zone.key,
        answers=answer_rows(stored.response),
        earlier=earlier,
        token=token,
        correction_url=url_for("prior_notification.correction_form", token=token, record_id=stored.id),
    )


@blueprint.get("/prior-notification/form/<token>/records/<record_id>/versions/<int:version>")
def earlier_version(token: str, record_id: str, version: int) -> Response:
    """A version a correction replaced, as it was filed."""
    services = current_services()
    opened, failure = open_record(services, token, record_id)
    if opened is None:
        return failure
    stored = opened[1]
    try:
        found = services.prior_notifications.earlier_version(stored.id, version)
    except StorageUnavailable:
        return unavailable_message()
    if found is None:
        return page(
            "pn_message.html",
            status=404,
            title="No such version",
            message=f"This record has versions 1 to {stored.version}; the latest is on its own page.",
        )
    zone = services.settings.zone
    return page(
        "pn_version.html",
        record=stored,
        version=found,
        stored_at=found.stored_at.astimezone(zone),
        zone=zone.key,
        answers=answer_rows(found.response),
        record_url=url_for("prior_notification.saved", token=token, record_id=stored.id),
    )


def open_context(
    services: AppServices, token: str, typed: Mapping[str, str] | None = None
) -> tuple[FormContext | None, Response]:
    """The form link's context, or the page that says why it cannot be opened (for a submission the database
    cannot take, the form again with what was `typed`, to send once more)."""
    try:
        context_id = services.form_links.context_id(token)
    except FormLinkExpired:
        return None, page(
            "pn_message.html",
            status=410,
            title="This form link has expired",
            message="Open the appointment in the EHR again (or book it again) to get a new link, "
            "or use the blank printable form.",
        )
    except FormLinkInvalid:
        return None, page(
            "pn_message.html", status=404, title="Unknown form link", message="This link is not one this service made."
        )
    try:
        context = services.prior_notifications.form_context(context_id, datetime.now(UTC))
    except StorageUnavailable:
        if typed is not None:
            return None, unavailable_page(pn_form(services), typed)
        response = page("pn_message.html", status=503, title="The form cannot be opened right now", message=UNAVAILABLE)
        response.headers["Retry-After"] = "30"
        return None, response
    if context is None:
        return None, page(
            "pn_message.html", status=410, title="This form link has expired", message="Ask for a new link."
        )
    return context, Response()


def unavailable_page(form: Form, fields: Mapping[str, str]) -> Response:
    """Nothing was stored: say so, keep what was typed, and let the practice send it again (an attachment must
    be chosen again: no browser lets a page pre-fill a file)."""
    errors = {
        None: "The Prior Notification could not be saved right now, so it was NOT filed. "
        "Send the form again in a minute."
    }
    response = page("pn_form.html", status=503, form=form, values=fields, errors=errors, action=request.path)
    response.headers["Retry-After"] = "30"
    return response


def page(template: str, status: int = 200, **values: Any) -> Response:
    """An HTML page of the form: never cached (it shows patient data), strict CSP, and no Referer sent from it
    (its address holds the form link's token)."""
    response = make_response(render_template(template, **values), status)
    response.headers["Content-Security-Policy"] = FORM_CSP
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


def answers_as_fields(response: Mapping[str, Any]) -> dict[str, str]:
    """A stored response's answers as the form's field values (attachments aside: no file field is pre-filled)."""
    values: dict[str, str] = {}

    def visit(items: Any) -> None:
        for item in items or []:
            for answer in item.get("answer") or []:
                for member, value in answer.items():
                    if member != "valueAttachment":
                        values.setdefault(item["linkId"], field_value(value))
            visit(item.get("item"))

    visit(response.get("item"))
    return values


def attachments_of(response: Mapping[str, Any]) -> Answers:
    """A stored response's attachments by linkId: kept by a correction that chooses no other file."""
    found: Answers = {}

    def visit(items: Any) -> None:
        for item in items or []:
            for answer in item.get("answer") or []:
                if "valueAttachment" in answer:
                    found.setdefault(item["linkId"], []).append(answer["valueAttachment"])
            visit(item.get("item"))

    visit(response.get("item"))
    return found


def field_value(value: Any) -> str:
    """A pre-filled answer as the form field's value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return str(value.get("code", ""))
    return str(value)


def by_item(problems: list[ItemProblem]) -> dict[str | None, str]:
    """The first problem of each item, in the words of the form (its question's text)."""
    errors: dict[str | None, str] = {}
    for problem in problems:
        errors.setdefault(problem.link_id, problem.plain or problem.message)
    return errors


def answer_rows(response: Mapping[str, Any]) -> list[tuple[int, str, str]]:
    """(depth, question, answer) of every answered item, groups as headings."""
    rows: list[tuple[int, str, str]] = []

    def visit(items: Any, depth: int) -> None:
        for item in items or []:
            answers = [shown(a) for a in item.get("answer") or []]
            rows.append((depth, item.get("text") or item.get("linkId", ""), ", ".join(answers)))
            visit(item.get("item"), depth + 1)

    visit(response.get("item"), 0)
    return rows


def shown(answer: Mapping[str, Any]) -> str:
    for member, value in answer.items():
        if member == "valueBoolean":
            return "Yes" if value else "No"
        if member == "valueCoding":
            return str(value.get("display") or value.get("code"))
        if member == "valueAttachment":
            return f"{value.get('title', 'attachment')} ({value.get('contentType')}, {value.get('size', '?')} bytes)"
        return str(value)
    return ""


@blueprint.app_template_filter("item_kind")
def item_kind(item: FormItem) -> str:
    """How the template draws an item (single-option choices are a checkbox)."""
    if item.type == "choice" and len(item.options) == 1:
        return "checkbox"
    return item.type


@blueprint.app_template_filter("control_id")
def control_id(item: FormItem) -> str:
    """The id of an item's first control, where the error summary's link moves focus (a fieldset of radio
    buttons has none of its own: its first button)."""
    kind = item_kind(item)
    if kind == "boolean":
        return f"{item.link_id}-true"
    if kind == "choice":
        return f"{item.link_id}-{item.options[0]['code']}"
    return item.link_id
