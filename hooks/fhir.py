"""Navigation of FHIR R4 JSON: codings, statuses, dates and references.

Every rule reads FHIR through these helpers, so the quirks of real EHR data
(partial dates, missing statuses, contained resources) are handled once.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import date
from types import MappingProxyType
from typing import Any

Resource = dict[str, Any]
Coding = tuple[str, str]  # (system, code)

ACTIVE_CLINICAL_STATUSES = frozenset({"active", "recurrence", "relapse"})
DISCARDED_VERIFICATION_STATUSES = frozenset({"entered-in-error", "refuted"})


def codings(concept: Any) -> Iterator[Coding]:
    """Yield (system, code) of a CodeableConcept, a list of them, or a Coding."""
    if isinstance(concept, list):
        for item in concept:
            yield from codings(item)
        return
    if not isinstance(concept, dict):
        return
    if "code" in concept and "coding" not in concept:
        if isinstance(concept.get("system"), str) and isinstance(concept.get("code"), str):
            yield concept["system"], concept["code"]
        return
    for coding in concept.get("coding") or []:
        if isinstance(coding, dict):
            system, code = coding.get("system"), coding.get("code")
            if isinstance(system, str) and isinstance(code, str):
                yield system, code.strip()


def concept_text(concept: Any) -> str:
    """All human text of a CodeableConcept (or list of them): text and displays."""
    if isinstance(concept, list):
        return " ".join(concept_text(item) for item in concept)
    if not isinstance(concept, dict):
        return ""
    parts = [concept.get("text")]
    parts += [c.get("display") for c in concept.get("coding") or [] if isinstance(c, dict)]
    return " ".join(p for p in parts if isinstance(p, str))


def is_coded(concept: Any) -> bool:
    return next(codings(concept), None) is not None


def status_code(concept: Any) -> str | None:
    """The code of a status CodeableConcept such as Condition.clinicalStatus."""
    return next((code for _system, code in codings(concept)), None)


def parse_date(value: Any, *, latest: bool = False) -> date | None:
    """Parse a FHIR date or dateTime, which may be partial (YYYY or YYYY-MM).

    A partial date is a range; `latest` picks its last day instead of its first,
    so callers can decide conservatively (e.g. "certainly 18 or older").
    """
    if not isinstance(value, str) or len(value) < 4:
        return None
    try:
        year = int(value[0:4])
        month = int(value[5:7]) if len(value) >= 7 else (12 if latest else 1)
        day = int(value[8:10]) if len(value) >= 10 else calendar.monthrange(year, month)[1] if latest else 1
        return date(year, month, day)
    except ValueError:
        return None


def add_years(day: date, years: int) -> date:
    """The same calendar day `years` later; 29 February becomes 1 March."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return date(day.year + years, 3, 1)


def reference_key(reference: Any) -> str | None:
    """'Condition/123' from a Reference (absolute URLs and _history stripped)."""
    if not isinstance(reference, dict) or not isinstance(reference.get("reference"), str):
        return None
    parts = reference["reference"].split("/_history/")[0].rstrip("/").split("/")
    if len(parts) < 2:
        return parts[0] or None
    return f"{parts[-2]}/{parts[-1]}"


def resource_key(resource: Resource) -> str | None:
    if isinstance(resource.get("resourceType"), str) and isinstance(resource.get("id"), str):
        return f"{resource['resourceType']}/{resource['id']}"
    return None


def bundle_resources(bundle: Any) -> list[Resource]:
    """The resources of a Bundle, or the resource itself when it is not a Bundle."""
    if not isinstance(bundle, dict):
        return []
    if bundle.get("resourceType") != "Bundle":
        return [bundle]
    entries = bundle.get("entry") or []
    return [e["resource"] for e in entries if isinstance(e, dict) and isinstance(e.get("resource"), dict)]


def is_active_condition(condition: Resource) -> bool:
    """Active, recurrent or relapsed, and not refuted or entered in error.

    A Condition without clinicalStatus counts as active unless it has abated,
    as FHIR R4 allows clinicalStatus to be absent only when unknown.
    """
    if status_code(condition.get("verificationStatus")) in DISCARDED_VERIFICATION_STATUSES:
        return False
    clinical = status_code(condition.get("clinicalStatus"))
    if clinical is None:
        return not any(key.startswith("abatement") for key in condition)
    return clinical in ACTIVE_CLINICAL_STATUSES


def condition_date(condition: Resource) -> date | None:
    """When the condition was noted: onset, else recorded date (latest reading)."""
    onset = condition.get("onsetDateTime") or (condition.get("onsetPeriod") or {}).get("start")
    return parse_date(onset, latest=True) or parse_date(condition.get("recordedDate"), latest=True)


def period_date(resource: Resource, *fields: str) -> date | None:
    """The first date found among the named fields (Period end/start or dateTime)."""
    for field in fields:
        value = resource.get(field)
        if isinstance(value, dict):
            found = parse_date(value.get("end"), latest=True) or parse_date(value.get("start"), latest=True)
        else:
            found = parse_date(value, latest=True)
        if found:
            return found
    return None


def references_in(value: Any) -> list[dict[str, Any]]:
    """The Reference objects of a field that holds one Reference or a list of them."""
    items = value if isinstance(value, list) else [value]
    return [item for item in items if isinstance(item, dict) and isinstance(item.get("reference"), str)]


def contained(container: Resource | None, reference: str) -> Resource | None:
    """The resource contained in `container` that a local reference ('#id') points to."""
    if container is None or not reference.startswith("#"):
        return None
    wanted = reference[1:]
    for item in container.get("contained") or []:
        if isinstance(item, dict) and item.get("id") == wanted:
            return item
    return None


@dataclass(frozen=True)
class References:
    """Resolves a Reference the one way every rule does: a resource contained in the referring resource
    ('#id'), else one the call gathered (prefetched, fetched by search, or fetched by reference).

    `unresolved` holds the 'Type/id' keys that were wanted but could not be had (no FHIR server, a failed
    fetch): a rule can tell "not there" from "not known".
    """

    by_key: Mapping[str, Resource] = dataclass_field(default_factory=lambda: MappingProxyType({}))
    roles_by_practitioner: Mapping[str, tuple[Resource, ...]] = dataclass_field(
        default_factory=lambda: MappingProxyType({})
    )
    unresolved: frozenset[str] = frozenset()

    @classmethod
    def of(cls, resources: Iterable[Resource], unresolved: Iterable[str] = ()) -> References:
        by_key: dict[str, Resource] = {}
        roles: dict[str, list[Resource]] = {}
        for resource in resources:
            key = resource_key(resource)
            if key is None:
                continue
            if key in by_key:
                continue  # the same resource from two searches
            by_key[key] = resource
            practitioner = reference_key(resource.get("practitioner"))
            if resource.get("resourceType") == "PractitionerRole" and practitioner:
                roles.setdefault(practitioner, []).append(resource)
        return cls(
            MappingProxyType(by_key),
            MappingProxyType({k: tuple(v) for k, v in roles.items()}),
            frozenset(unresolved) - set(by_key),
        )

    def resolve(self, reference: Any, container: Resource | None = None) -> Resource | None:
        """The resource a Reference points to, or None when it is neither contained nor gathered."""
        if not isinstance(reference, dict) or not isinstance(reference.get("reference"), str):
            return None
        if reference["reference"].startswith("#"):
            return contained(container, reference["reference"])
        return self.by_key.get(reference_key(reference) or "")

    def is_unknown(self, reference: Any) -> bool:
        """Wanted but could not be had: the rules must not read its absence as 'no such resource'."""
        return (reference_key(reference) or "") in self.unresolved

    def roles_of(self, practitioner: Resource | None) -> tuple[Resource, ...]:
        """The PractitionerRoles gathered for a Practitioner (a contained Practitioner has none)."""
        key = resource_key(practitioner or {})
        return self.roles_by_practitioner.get(key, ()) if key else ()


def medication_concepts(request: Resource, references: References | None = None) -> list[Any]:
    """The medication CodeableConcept of a MedicationRequest: coded inline, or its Medication resolved."""
    concepts: list[Any] = []
    if "medicationCodeableConcept" in request:
        concepts.append(request["medicationCodeableConcept"])
    medication = (references or References()).resolve(request.get("medicationReference"), request)
    if medication is not None:
        concepts.append(medication.get("code"))
    return concepts


def all_codings(concepts: Iterable[Any]) -> list[Coding]:
    return [coding for concept in concepts for coding in codings(concept)]
