"""QuestionnaireResponses checked against the program's Questionnaire, and read into record fields.

One check for both ways a Prior Notification arrives: the JSON a machine client submits, and the
QuestionnaireResponse built from the web form's fields. Each problem names the item (linkId and its
text) and says what is wrong, so a 400 tells the client which answer to fix and the web form can show
the message beside its field. As for every refusal, a message says where and what kind, never the
value sent (docs/integrators/errors.md, "Messages say where and what kind, never the value").
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from cds_service.content.forms import ANSWER_MEMBER, Form, FormItem
from cds_service.errors import BadRequest

RESPONSE_STATUSES = frozenset({"completed", "amended"})
FULL_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
FHIR_ID = r"[A-Za-z0-9\-.]{1,64}"  # FHIR R4 id
FHIR_ID_PATTERN = re.compile(f"^{FHIR_ID}$")
PATIENT_REFERENCE = re.compile(f"^(?:.*/)?Patient/({FHIR_ID})$")
ATTACHMENT_TYPES = frozenset({"application/pdf", "image/jpeg", "image/png"})
ATTACHMENT_MAX_BYTES = 4 * 1024 * 1024
MAX_REPORTED = 5

Answers = dict[str, list[Any]]  # linkId → its answer values (str, bool, Coding or Attachment dicts)


@dataclass(frozen=True)
class ItemProblem:
    link_id: str | None  # None: about the response as a whole
    message: str  # names the item by linkId and text: what a 400 says
    plain: str = ""  # the item's text and the problem: what the web form shows beside the field

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class CheckedResponse:
    patient_id: str
    answers: Answers


def form_reference_matches(questionnaire: Any, form: Form) -> bool:
    """`…/Questionnaire/{id}` (any base, or relative), optionally `|{version}` of the current version."""
    if not isinstance(questionnaire, str):
        return False
    url, _, version = questionnaire.partition("|")
    return (url == f"Questionnaire/{form.id}" or url.endswith(f"/Questionnaire/{form.id}")) and version in (
        "",
        form.version,
    )


def check_response(response: Any, form: Form) -> tuple[CheckedResponse | None, list[ItemProblem]]:
    """The patient and answers of a valid response, or every problem found."""
    if not isinstance(response, dict) or response.get("resourceType") != "QuestionnaireResponse":
        return None, [
            ItemProblem(None, "The body must be a FHIR QuestionnaireResponse (resourceType QuestionnaireResponse).")
        ]
    problems: list[ItemProblem] = []
    if not form_reference_matches(response.get("questionnaire"), form):
        problems.append(
            ItemProblem(
                None, f"questionnaire must be the canonical URL of Questionnaire/{form.id} (version {form.version})."
            )
        )
    status = response.get("status")
    if not isinstance(status, str) or status not in RESPONSE_STATUSES:
        problems.append(
            ItemProblem(None, "status must be completed (or amended): a Prior Notification is filed complete.")
        )
    subject = response.get("subject")
    match = (
        PATIENT_REFERENCE.fullmatch(subject.get("reference", ""))
        if isinstance(subject, dict) and isinstance(subject.get("reference"), str)
        else None
    )
    if match is None:
        problems.append(ItemProblem(None, 'subject must reference the patient, e.g. {"reference": "Patient/123"}.'))
    answers: Answers = {}
    problems += check_items(response.get("item"), form.items, "item", answers)
    problems += check_required(form.items, answers)
    if problems:
        return None, problems
    assert match is not None
    return CheckedResponse(match.group(1), answers), []


def raise_if_invalid(problems: list[ItemProblem]) -> None:
    if problems:
        shown = "; ".join(str(p) for p in problems[:MAX_REPORTED])
        more = f"; and {len(problems) - MAX_REPORTED} more" if len(problems) > MAX_REPORTED else ""
        raise BadRequest(f"Invalid QuestionnaireResponse: {shown}{more}")


def check_items(given: Any, items: tuple[FormItem, ...], where: str, answers: Answers) -> list[ItemProblem]:
    if given is None:
        return []
    if not isinstance(given, list):
        return [ItemProblem(None, f"{where} must be a list of items.")]
    by_id = {item.link_id: item for item in items}
    problems: list[ItemProblem] = []
    seen: set[str] = set()
    for index, entry in enumerate(given):
        link_id = entry.get("linkId") if isinstance(entry, dict) else None
        item = by_id.get(link_id) if isinstance(link_id, str) else None
        if item is None:
            known = ", ".join(by_id)
            problems.append(ItemProblem(None, f"{where}[{index}]: its linkId is not an item here (items: {known})."))
            continue
        if item.link_id in seen:
            problems.append(about(item, "given twice: give its answers in one item"))
            continue
        seen.add(item.link_id)
        if item.type == "group":
            if "answer" in entry:
                problems.append(about(item, "a group holds items, not answers"))
            problems += check_items(entry.get("item"), item.items, f"{where}[{index}] ({item.link_id})", answers)
        else:
            problems += check_answers(item, entry.get("answer"), answers)
    return problems


def check_answers(item: FormItem, given: Any, answers: Answers) -> list[ItemProblem]:
    if given is None:
        return []
    if not isinstance(given, list):
        return [about(item, "answer must be a list")]
    if item.type == "display":
        return [about(item, "text to read, not a question")]
    if len(given) > 1 and not item.repeats:
        return [about(item, "takes one answer")]
    member = ANSWER_MEMBER[item.type]
    problems = []
    for answer in given:
        value = answer.get(member) if isinstance(answer, dict) else None
        wrong = value_problem(item, value) if value is not None else (f"needs {member}", "")
        if wrong:
            problems.append(about(item, *wrong))
        else:
            answers.setdefault(item.link_id, []).append(canonical(item, value))
    return problems


def value_problem(item: FormItem, value: Any) -> tuple[str, str] | None:
    """What is wrong with one answer value for this item, or None: for a client, and in the words of the
    people who fill in the web form ("" when they are the same), which never show a pattern or a code."""
    if item.type in ("string", "text"):
        if not isinstance(value, str) or not value.strip():
            return "must be a non-empty text", "an answer is required"
        if "\x00" in value:  # no text has one; PostgreSQL cannot store it
            return "must not hold a NUL character", ""
        if item.max_length is not None and len(value) > item.max_length:
            return f"must be at most {item.max_length} characters", ""
        if item.regex is not None and not item.regex.search(value.strip()):
            return f"does not have the expected form ({item.regex.pattern})", f"write {item.entry_format}"
        return None
    if item.type == "date":
        return None if is_full_date(value) else ("must be a date written YYYY-MM-DD", "write a date such as 2026-12-31")
    if item.type == "boolean":
        return None if isinstance(value, bool) else ("must be true or false", "answer yes or no")
    if item.type == "choice":
        if not isinstance(value, dict) or item.option(value.get("system"), value.get("code")) is None:
            codes = ", ".join(f"{o['code']} ({o['display']})" for o in item.options)
            return f"must be one of its options: {codes}", "choose one of the answers listed"
        return None
    if item.type == "attachment":
        problem = attachment_problem(value)
        return None if problem is None else (problem, "attach a PDF, JPEG or PNG file of at most 4 MB")
    return f"items of type {item.type} cannot be answered here", ""


def attachment_problem(value: Any) -> str | None:
    if not isinstance(value, dict):
        return "must be an Attachment"
    content_type = value.get("contentType")
    if not isinstance(content_type, str) or content_type not in ATTACHMENT_TYPES:
        return f"contentType must be one of {', '.join(sorted(ATTACHMENT_TYPES))}"
    if isinstance(value.get("url"), str) and value["url"].strip() and "data" not in value:
        return None
    try:
        size = len(base64.b64decode(value.get("data") or "", validate=True))
    except (binascii.Error, TypeError, ValueError):
        return "data must be base64"
    if size == 0:
        return "needs data (base64) or a url"
    if size > ATTACHMENT_MAX_BYTES:
        return f"is {size} bytes; at most {ATTACHMENT_MAX_BYTES} are accepted"
    return None


def is_full_date(value: Any) -> bool:
    if not isinstance(value, str) or not FULL_DATE.fullmatch(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def canonical(item: FormItem, value: Any) -> Any:
    """The answer as stored: text trimmed, a chosen Coding with the option's own display."""
    if item.type in ("string", "text"):
        return value.strip()
    if item.type == "choice":
        option = item.option(value["system"], value["code"])
        return dict(option) if option is not None else value
    return value


def check_required(items: tuple[FormItem, ...], answers: Answers) -> list[ItemProblem]:
    """Required items that are enabled must be answered; disabled ones must not be."""
    problems = []
    for item in walk_enabled(items, answers, enabled=True):
        if item[1] and item[0].required and item[0].type != "group" and item[0].link_id not in answers:
            problems.append(about(item[0], "an answer is required"))
        if not item[1] and item[0].link_id in answers:
            condition = item[0].enable_when
            assert condition is not None
            problems.append(about(item[0], f"must not be answered given the answer to '{condition.question}'"))
    return problems


def walk_enabled(items: Iterable[FormItem], answers: Answers, enabled: bool) -> Iterable[tuple[FormItem, bool]]:
    for item in items:
        on = enabled and is_enabled(item, answers)
        yield item, on
        yield from walk_enabled(item.items, answers, on)


def is_enabled(item: FormItem, answers: Answers) -> bool:
    condition = item.enable_when
    if condition is None:
        return True
    given = answers.get(condition.question, [])
    if condition.operator == "exists":
        return bool(given) == bool(condition.answer)
    if isinstance(condition.answer, Mapping):
        return any(
            isinstance(v, Mapping)
            and (v.get("system"), v.get("code")) == (condition.answer["system"], condition.answer["code"])
            for v in given
        )
    return condition.answer in given


def about(item: FormItem, problem: str, plain: str = "") -> ItemProblem:
    """A problem with one item: named by linkId and text for a client, by its text (and in `plain` words,
    when they differ) for the form's user."""
    return ItemProblem(
        item.link_id, f"item '{item.link_id}' ({item.text}): {problem}", f"{item.text}: {plain or problem}"
    )


def first(answers: Answers, link_id: str) -> Any:
    values = answers.get(link_id) or [None]
    return values[0]


def answer_date(answers: Answers, link_id: str) -> date | None:
    value = first(answers, link_id)
    return date.fromisoformat(value) if isinstance(value, str) else None
