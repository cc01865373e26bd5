"""The facts of the Da Vinci CRD `ext-coverage-information` extension the tests check answers against.

Copied from HL7 Da Vinci CRD STU 2.2.1 (HL7/davinci-crd, tag 2.2.1, commit
2bfabc15e9552fcbf30fe2b83a679ac839d7b6ed, CC0-1.0), as kept in the project's reference material:
- input/fsh/extensions/CoverageInformation.fsh: the sub-extensions with their cardinality and value
  type, the required bindings, and the invariants crd-ci-q1..q9 (written here as Python);
- input/fsh/valuesets/CoverageInformationValuesets.fsh: the codes of the required value sets;
- input/fsh/codesystems/CRDTempCodes.fsh: CRDCoverageAssertionReasons (extensible; CodeSystem temp).
The extension's contexts (where it may be put) are from the same FSH file. Nothing here is read from
the reference folder at test time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

URL = "http://hl7.org/fhir/us/davinci-crd/StructureDefinition/ext-coverage-information"
CONTEXTS = frozenset(
    {
        "Appointment",
        "CommunicationRequest",
        "Encounter",
        "DeviceRequest",
        "MedicationRequest",
        "NutritionOrder",
        "QuestionnaireResponse",
        "ServiceRequest",
        "VisionPrescription",
    }
)
# sub-extension url → (min, max, value[x] member); max None: unbounded.
ELEMENTS: Mapping[str, tuple[int, int | None, str | None]] = {
    "coverage": (1, 1, "valueReference"),
    "covered": (1, 1, "valueCode"),
    "pa-needed": (0, 1, "valueCode"),
    "doc-needed": (0, None, "valueCode"),
    "doc-purpose": (0, None, "valueCode"),
    "info-needed": (0, None, "valueCode"),
    "billingCode": (0, None, "valueCoding"),
    "reason": (0, None, "valueCodeableConcept"),
    "detail": (0, None, None),  # a complex extension: category, code, value, qualification
    "dependency": (0, None, "valueReference"),
    "questionnaire": (0, None, "valueCanonical"),
    "date": (1, 1, "valueDate"),
    "coverage-assertion-id": (1, 1, "valueString"),
    "satisfied-pa-id": (0, 1, "valueString"),
    "contact": (0, None, "valueContactDetail"),
    "expiry-date": (0, 1, "valueDate"),
}
# Required bindings (CRDCoveredInfo, CRDCoveragePaDetail, CRDAdditionalDoc, CRDDocReason, CRDInformationNeeded).
REQUIRED_CODES: Mapping[str, frozenset[str]] = {
    "covered": frozenset({"not-covered", "covered", "conditional", "indeterminate"}),
    "pa-needed": frozenset({"no-auth", "auth-needed", "satisfied", "performpa", "conditional", "indeterminate"}),
    "doc-needed": frozenset({"clinical", "admin", "patient", "conditional", "indeterminate"}),
    "doc-purpose": frozenset({"withpa", "withclaim", "withorder", "retain-doc", "OTH"}),
    "info-needed": frozenset({"performer", "location", "timeframe", "contract-window", "detail-code", "OTH"}),
}
DETAIL_CATEGORIES = frozenset({"cat-limitation", "cat-decisional", "cat-other"})  # CRDCoverageDetailCategories
ASSERTION_REASONS = (
    "http://hl7.org/fhir/us/davinci-crd/CodeSystem/temp",
    frozenset(
        {"gold-card", "no-member-found", "no-active-coverage", "coverage-not-found", "auth-out-network", "technical"}
    ),
)


def problems(extension: Mapping[str, Any]) -> list[str]:
    """What is wrong with one ext-coverage-information extension, against the profile."""
    found: list[str] = []
    if extension.get("url") != URL:
        return [f"url is {extension.get('url')!r}, not {URL}"]
    parts = extension.get("extension") or []
    by_url: dict[str, list[Mapping[str, Any]]] = {}
    for part in parts:
        by_url.setdefault(part.get("url"), []).append(part)
    for url in by_url:
        if url not in ELEMENTS:
            found.append(f"unknown sub-extension {url!r}")
    for url, (least, most, member) in ELEMENTS.items():
        given = by_url.get(url, [])
        if len(given) < least or (most is not None and len(given) > most):
            found.append(f"{url}: {len(given)} given, cardinality {least}..{most if most is not None else '*'}")
        for part in given:
            if member is not None and set(part) != {"url", member}:
                found.append(f"{url}: must carry exactly {member}, has {sorted(set(part) - {'url'})}")
            if url in REQUIRED_CODES and part.get(member) not in REQUIRED_CODES[url]:
                found.append(f"{url}: {part.get(member)!r} is not in its required value set")
    found += [f"detail: {p}" for part in by_url.get("detail", []) for p in detail_problems(part)]
    found += invariant_problems(by_url)
    return found


def detail_problems(part: Mapping[str, Any]) -> list[str]:
    inner = {p.get("url"): p for p in part.get("extension") or []}
    found = [f"{name} missing (1..1)" for name in ("category", "code", "value") if name not in inner]
    if "category" in inner and inner["category"].get("valueCode") not in DETAIL_CATEGORIES:
        found.append(f"category {inner['category'].get('valueCode')!r} is not a CRDCoverageDetailCategories code")
    if "value" in inner and not (
        {"valueBoolean", "valueString", "valueUrl", "valueQuantity", "valuePeriod"} & set(inner["value"])
    ):
        found.append("value must be a boolean, string, url, Quantity or Period")
    return found


def codes(by_url: Mapping[str, list[Mapping[str, Any]]], url: str) -> list[Any]:
    member = ELEMENTS[url][2]
    return [part.get(member) for part in by_url.get(url, [])]


def invariant_problems(by_url: Mapping[str, list[Mapping[str, Any]]]) -> list[str]:
    covered, pa, doc = codes(by_url, "covered"), codes(by_url, "pa-needed"), codes(by_url, "doc-needed")
    purposes, info, reasons = codes(by_url, "doc-purpose"), codes(by_url, "info-needed"), codes(by_url, "reason")
    key = set(covered) | set(pa) | set(doc)
    found = []
    if "questionnaire" in by_url and not doc:
        found.append("crd-ci-q1: questionnaire is only allowed when doc-needed exists")
    if "not-covered" in covered and pa:
        found.append("crd-ci-q2: not-covered, so pa-needed must not exist")
    if "conditional" in key and not info:
        found.append("crd-ci-q3: conditional needs info-needed")
    if set(pa) & {"satisfied", "noauth", "no-auth", "not-covered"} and "withpa" in purposes:
        found.append("crd-ci-q4: doc-purpose cannot be withpa")
    if ("satisfied" in pa) != ("satisfied-pa-id" in by_url):
        found.append("crd-ci-q5: satisfied-pa-id exists if and only if pa-needed is satisfied")
    if "OTH" in info and not reasons:
        found.append("crd-ci-q6: info-needed OTH needs a reason")
    for reason in reasons:
        coded = [(c.get("system"), c.get("code")) for c in (reason or {}).get("coding") or []]
        in_set = any(system == ASSERTION_REASONS[0] and code in ASSERTION_REASONS[1] for system, code in coded)
        if coded and not in_set and not (reason or {}).get("text"):
            found.append("crd-ci-q7: a reason coded outside CRDCoverageAssertionReasons needs text")
    if any(p != "conditional" for p in purposes) and not reasons:
        found.append("crd-ci-q8: doc-purpose needs a reason")
    if "indeterminate" in key and not reasons:
        found.append("crd-ci-q9: indeterminate needs a reason")
    return found


def coverage_information(resource: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [e for e in resource.get("extension") or [] if e.get("url") == URL]


def values(extension: Mapping[str, Any]) -> dict[str, list[Any]]:
    """Each sub-extension's values, by url (details as {category, code, value} dicts)."""
    found: dict[str, list[Any]] = {}
    for part in extension["extension"]:
        url = part["url"]
        if url == "detail":
            inner = {p["url"]: p for p in part["extension"]}
            value = inner["value"]
            found.setdefault(url, []).append(
                {
                    "category": inner["category"]["valueCode"],
                    "code": inner["code"]["valueCodeableConcept"]["coding"][0]["code"],
                    "value": value.get("valueString", value.get("valueUrl")),
                }
            )
        else:
            member = ELEMENTS[url][2]
            found.setdefault(url, []).append(part[member] if member else part)
    return found
