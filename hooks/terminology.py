"""Value-set membership as constant-time set lookups, prepared once at start-up."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from hooks.fhir import Coding, codings

ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"

# EHRs send the same code system under its OID as often as under its URL.
SYSTEM_ALIASES = {
    "urn:oid:2.16.840.1.113883.6.90": ICD10CM,
    "http://hl7.org/fhir/sid/icd-10": ICD10CM,
    "urn:oid:2.16.840.1.113883.6.96": "http://snomed.info/sct",
    "urn:oid:2.16.840.1.113883.6.88": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "urn:oid:2.16.840.1.113883.6.101": "http://nucc.org/provider-taxonomy",
    "urn:oid:2.16.840.1.113883.6.12": "http://www.ama-assn.org/go/cpt",
    "urn:oid:2.16.840.1.113883.3.221.5": "https://nahdo.org/sopt",
}


def normalize(system: str, code: str) -> Coding:
    """Canonical system URL; ICD-10-CM upper-cased with its dot ('m5450' → 'M54.50')."""
    system = SYSTEM_ALIASES.get(system.strip(), system.strip())
    code = code.strip()
    if system == ICD10CM:
        code = code.upper()
        if len(code) > 3 and "." not in code:
            code = f"{code[:3]}.{code[3:]}"
    return system, code


class ValueSets:
    """Named sets of (system, code); unknown names are a programming error."""

    def __init__(self, sets: Mapping[str, Iterable[Coding]]) -> None:
        self._sets = {name: frozenset(normalize(*c) for c in codes) for name, codes in sets.items()}

    def __contains__(self, name: str) -> bool:
        return name in self._sets

    def names(self) -> list[str]:
        return sorted(self._sets)

    def codes(self, name: str) -> frozenset[Coding]:
        return self._sets[name]

    def has_any(self, name: str, found: Iterable[Coding]) -> bool:
        members = self._sets[name]
        return any(normalize(*coding) in members for coding in found)

    def matches(self, name: str, concept: Any) -> bool:
        """Whether a CodeableConcept (or list of them) has a coding in the set."""
        return self.has_any(name, codings(concept))
