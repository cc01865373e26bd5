"""The program's forms (guideline_data/forms/*.questionnaire.json): FHIR Questionnaires, checked and indexed.

A Form is what the web form renders and what answers (QuestionnaireResponses) are checked against. The
service reads some answers into the Prior Notification record's columns; PN_ITEMS names them, and the
loader refuses a form that lacks one or gives it another type.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from cds_service.content.problems import FieldPath, Problem

FORMS_DIR = "forms"
PN_FORM_ID = "lbp-prior-notification"
REGEX_EXTENSION = "http://hl7.org/fhir/StructureDefinition/regex"
# The expected answer in words ("10 digits"): what the web form says when an answer does not match the regex.
ENTRY_FORMAT_EXTENSION = "http://hl7.org/fhir/StructureDefinition/entryFormat"
# Answers the service reads from a Prior Notification (record columns, the on-file check, the export).
PN_ITEMS = MappingProxyType(
    {
        "member-name": "string",
        "member-birth-date": "date",
        "member-id": "string",
        "practice-name": "string",
        "practice-npi": "string",
        "surgeon-name": "string",
        "surgeon-npi": "string",
        "visit-date": "date",
        "diagnosis-code": "string",
        "msc-done": "boolean",
        "msc-date": "date",
        "msc-not-done-reason": "choice",
        "attester-name": "string",
    }
)
# The answer[x] member each item type takes (FHIR R4 QuestionnaireResponse.item.answer.value[x]).
ANSWER_MEMBER = MappingProxyType(
    {
        "string": "valueString",
        "text": "valueString",
        "date": "valueDate",
        "boolean": "valueBoolean",
        "choice": "valueCoding",
        "attachment": "valueAttachment",
    }
)


@dataclass(frozen=True)
class Condition:
    """enableWhen: the item is shown (and may be answered) only when `question` has this answer."""

    question: str
    operator: str  # "=" or "exists"
    answer: Any  # a bool, or a {system, code, display} Coding


@dataclass(frozen=True)
class FormItem:
    link_id: str
    text: str
    type: str
    required: bool = False
    repeats: bool = False
    max_length: int | None = None
    regex: re.Pattern[str] | None = None
    entry_format: str | None = None  # the regex in words, for the people who fill in the form
    options: tuple[Mapping[str, str], ...] = ()
    enable_when: Condition | None = None
    items: tuple[FormItem, ...] = ()

    def option(self, system: Any, code: Any) -> Mapping[str, str] | None:
        return next((o for o in self.options if o["system"] == system and o["code"] == code), None)


@dataclass(frozen=True)
class Form:
    id: str
    version: str
    title: str
    resource: Mapping[str, Any]  # the Questionnaire as written (read-only)
    items: tuple[FormItem, ...]
    by_link_id: Mapping[str, FormItem] = field(default_factory=dict)

    def walk(self) -> Iterator[FormItem]:
        yield from walk(self.items)


def walk(items: tuple[FormItem, ...]) -> Iterator[FormItem]:
    for item in items:
        yield item
        yield from walk(item.items)


def build_form(file: str, data: Mapping[str, Any], problems: list[Problem]) -> Form:
    """The Form, adding a problem for each cross-reference the schema cannot check."""
    items = tuple(build_item(file, item, ("item", index), problems) for index, item in enumerate(data["item"]))
    by_link_id: dict[str, FormItem] = {}
    order: list[str] = []
    for item in walk(items):
        if item.link_id in by_link_id:
            problems.append(Problem(file, (), f'the linkId "{item.link_id}" is used twice: each item needs its own'))
        by_link_id[item.link_id] = item
        order.append(item.link_id)
    for item in walk(items):
        check_condition(file, item, by_link_id, order, problems)
    form = Form(data["id"], data["version"], data["title"], data, items, MappingProxyType(by_link_id))
    if data["id"] == PN_FORM_ID:
        check_pn_items(file, form, problems)
    return form


def build_item(file: str, data: Mapping[str, Any], at: FieldPath, problems: list[Problem]) -> FormItem:
    pattern = None
    entry_format = None
    for extension in data.get("extension") or ():
        if extension["url"] == ENTRY_FORMAT_EXTENSION:
            entry_format = extension["valueString"]
            continue
        try:
            pattern = re.compile(extension["valueString"])
        except re.error as error:
            problems.append(Problem(file, (*at, "extension"), f"the regex is not a valid pattern: {error}"))
    if pattern is not None and entry_format is None:
        problems.append(
            Problem(
                file,
                (*at, "extension"),
                f'the item "{data["linkId"]}" has a regex but no entryFormat saying it in words '
                '(e.g. "10 digits"): the form shows that to the people who fill it in',
            )
        )
    when = (data.get("enableWhen") or [None])[0]
    condition = None
    if when is not None:
        answer = when.get("answerBoolean", when.get("answerCoding"))
        condition = Condition(when["question"], when["operator"], answer)
    return FormItem(
        link_id=data["linkId"],
        text=data["text"],
        type=data["type"],
        required=bool(data.get("required")),
        repeats=bool(data.get("repeats")),
        max_length=data.get("maxLength"),
        regex=pattern,
        entry_format=entry_format,
        options=tuple(option["valueCoding"] for option in data.get("answerOption") or ()),
        enable_when=condition,
        items=tuple(
            build_item(file, child, (*at, "item", i), problems) for i, child in enumerate(data.get("item") or ())
        ),
    )


def check_condition(
    file: str, item: FormItem, by_link_id: Mapping[str, FormItem], order: list[str], problems: list[Problem]
) -> None:
    condition = item.enable_when
    if condition is None:
        return
    question = by_link_id.get(condition.question)
    where = f'the item "{item.link_id}" is enabled by "{condition.question}"'
    if question is None or order.index(condition.question) > order.index(item.link_id):
        problems.append(Problem(file, (), f"{where}, which is not an item before it"))
        return
    if condition.operator == "exists":
        return
    if question.type == "boolean" and not isinstance(condition.answer, bool):
        problems.append(Problem(file, (), f"{where}, a yes/no question: use answerBoolean"))
    elif question.type == "choice" and (
        not isinstance(condition.answer, Mapping)
        or question.option(condition.answer["system"], condition.answer["code"]) is None
    ):
        problems.append(Problem(file, (), f"{where}: its answerCoding is not one of that item's options"))
    elif question.type not in ("boolean", "choice"):
        problems.append(Problem(file, (), f"{where}: only yes/no and choice items can enable others"))


def check_pn_items(file: str, form: Form, problems: list[Problem]) -> None:
    for link_id, kind in PN_ITEMS.items():
        item = form.by_link_id.get(link_id)
        if item is None:
            problems.append(Problem(file, (), f'the item "{link_id}" is missing, but the service reads it'))
        elif item.type != kind:
            problems.append(Problem(file, (), f'the item "{link_id}" must be of type {kind} (the service reads it so)'))
