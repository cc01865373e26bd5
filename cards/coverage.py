"""CoverageAssertion + crd.yaml text → the Da Vinci CRD Coverage Information system action.

CRD STU 2.2.1 (cards.md, "Coverage Information Response Type"): never a card; a systemAction of type
`update` whose resource is the request resource as the EHR sent it, with the `ext-coverage-information`
extension added (and no other element changed: resp-37). No action when the resource already carries
the same coverage information (resp-29, resp-35).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import date, timedelta

import msgspec

from cards.model import Content, JsonObject, JsonValue
from cards.render import thaw
from hooks.coverage import CoverageAssertion, PnState
from hooks.model import Resource

COVERAGE_INFORMATION = "http://hl7.org/fhir/us/davinci-crd/StructureDefinition/ext-coverage-information"
ASSERTION_REASONS = "http://hl7.org/fhir/us/davinci-crd/CodeSystem/temp"  # CRDCoverageAssertionReasons' system
DETAIL_CODES = "http://terminology.hl7.org/CodeSystem/crd-coverage-detail"
# Sub-extensions that change with every answer without saying anything new.
VOLATILE = frozenset({"date", "coverage-assertion-id"})


class CoverageContext(msgspec.Struct, frozen=True):
    crd: Content  # crd.yaml
    questionnaire: str  # canonical URL (with |version) of the Prior Notification Questionnaire
    today: date
    window_days: int  # how long a PN on file covers the visit (its assertion's expiry)
    new_id: Callable[[], str]  # coverage-assertion-id
    source_of: Callable[[Resource], Mapping[str, object]]  # a resource's JSON as the EHR sent it


def render_system_actions(assertions: list[CoverageAssertion], ctx: CoverageContext) -> list[JsonObject]:
    actions = []
    for assertion in assertions:
        extension = coverage_information(assertion, ctx)
        sent = ctx.source_of(assertion.target)
        if already_says(sent, extension):
            continue
        resource = without_empty(thaw(sent))
        kept = [e for e in resource.get("extension") or [] if not is_coverage_information(e)]
        resource["extension"] = [*kept, extension]
        description = ctx.crd["coverage_information"]["action_description"]
        actions.append({"type": "update", "description": description, "resource": resource})
    return actions


def coverage_information(assertion: CoverageAssertion, ctx: CoverageContext) -> JsonObject:
    """The extension, its sub-extensions in the order of the CRD profile."""
    info = ctx.crd["coverage_information"]
    state = info["states"][assertion.state.value]
    values = on_file_values(assertion)
    parts: list[JsonObject] = [
        {"url": "coverage", "valueReference": {"reference": assertion.coverage}},
        {"url": "covered", "valueCode": state["covered"]},
    ]
    if "pa-needed" in state:
        parts.append({"url": "pa-needed", "valueCode": state["pa-needed"]})
    if "doc-needed" in state:
        parts.append({"url": "doc-needed", "valueCode": state["doc-needed"]})
    parts += [{"url": "doc-purpose", "valueCode": code} for code in state.get("doc-purpose", ())]
    parts += [{"url": "info-needed", "valueCode": code} for code in state.get("info-needed", ())]
    parts += [{"url": "reason", "valueCodeableConcept": reason(r, values)} for r in state["reasons"]]
    details = [*state["details"], *([info["msc_expected"]] if assertion.msc_expected else []), info["policy_link"]]
    parts += [detail(d, values) for d in details]
    if state["questionnaire"]:
        parts.append({"url": "questionnaire", "valueCanonical": ctx.questionnaire})
    parts.append({"url": "date", "valueDate": ctx.today.isoformat()})
    parts.append({"url": "coverage-assertion-id", "valueString": ctx.new_id()})
    if assertion.state is PnState.ON_FILE and assertion.on_file is not None:
        expiry = assertion.on_file.filed_on + timedelta(days=ctx.window_days)
        parts.append({"url": "expiry-date", "valueDate": expiry.isoformat()})
    return {"url": COVERAGE_INFORMATION, "extension": parts}


def on_file_values(assertion: CoverageAssertion) -> dict[str, str]:
    found = assertion.on_file
    return {"filed_on": found.filed_on.isoformat(), "record_id": found.record_id} if found else {}


def reason(text: JsonValue, values: Mapping[str, str]) -> JsonObject:
    if isinstance(text, str):
        return {"text": text.format_map(values)}
    return {
        "coding": [{"system": ASSERTION_REASONS, "code": text["coding"]}],
        "text": text["text"].format_map(values),
    }


def detail(spec: Content, values: Mapping[str, str]) -> JsonObject:
    kind = "valueUrl" if spec["code"] == "policy-link" else "valueString"
    return {
        "url": "detail",
        "extension": [
            {"url": "category", "valueCode": spec["category"]},
            {"url": "code", "valueCodeableConcept": {"coding": [{"system": DETAIL_CODES, "code": spec["code"]}]}},
            {"url": "value", kind: spec["value"].format_map(values)},
        ],
    }


def without_empty(value: JsonValue) -> JsonValue:
    """The resource without null, empty strings, arrays and objects at any depth: FHIR JSON allows none, so
    an EHR's copy that has them says nothing more than this one (and the update is valid FHIR)."""
    if isinstance(value, dict):
        kept = {key: without_empty(child) for key, child in value.items()}
        return {key: child for key, child in kept.items() if child not in EMPTY}
    if isinstance(value, list):
        return [child for child in map(without_empty, value) if child not in EMPTY]
    return value


EMPTY: tuple[JsonValue, ...] = (None, "", [], {})


def is_coverage_information(extension: JsonValue) -> bool:
    return isinstance(extension, Mapping) and extension.get("url") == COVERAGE_INFORMATION


def already_says(target: Content, extension: Content) -> bool:
    """The resource already carries this coverage information (only its date and id would change)."""
    wanted = essence(extension)
    return any(essence(e) == wanted for e in target.get("extension") or () if is_coverage_information(e))


def essence(extension: Content) -> list[str]:
    """Its sub-extensions but the volatile ones, in a canonical form (key and part order do not count)."""
    parts = [p for p in extension.get("extension") or () if isinstance(p, Mapping) and p.get("url") not in VOLATILE]
    return sorted(json.dumps(thaw(part), sort_keys=True) for part in parts)
