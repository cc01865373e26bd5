"""hooks.fhir.References: one way to resolve a Reference (contained first, then what the call gathered)."""

from __future__ import annotations

from typing import Any

from cds_service.pipeline.decode import decode
from hooks.fhir import References
from hooks.model import Reference, Resource
from tests.builders import practitioner, practitioner_role


def typed(raw: dict[str, Any]) -> Resource:
    decoded = decode(raw)
    assert decoded.resource is not None, decoded.problem
    return decoded.resource


def ref(reference: str) -> Reference:
    return Reference(reference=reference)


def test_a_local_reference_resolves_to_the_resource_contained_in_the_referrer():
    referrer = typed({"resourceType": "ServiceRequest", "contained": [{"resourceType": "Condition", "id": "r"}]})
    gathered = References([typed({"resourceType": "Condition", "id": "r", "code": {}})])
    assert gathered.resolve(ref("#r"), referrer) is referrer.contained[0]  # type: ignore[attr-defined]
    assert gathered.resolve(ref("#r"), typed({"resourceType": "ServiceRequest"})) is None


def test_a_relative_or_absolute_reference_resolves_to_the_gathered_resource():
    condition = typed({"resourceType": "Condition", "id": "c1"})
    gathered = References([condition])
    assert gathered.resolve(ref("Condition/c1")) is condition
    assert gathered.resolve(ref("https://ehr.example.org/fhir/Condition/c1/_history/2")) is condition
    assert gathered.resolve(ref("Condition/c2")) is None


def test_what_was_looked_up_and_not_found_is_noted_for_fetching():
    gathered = References([typed({"resourceType": "Condition", "id": "c1"})])
    gathered.resolve(ref("Condition/c1"))
    gathered.resolve(ref("https://ehr.example.org/fhir/Medication/m9"))
    gathered.resolve(ref("#contained"))
    assert gathered.not_found == {"Medication/m9"}


def test_a_practitioners_roles_are_found_by_their_practitioner_reference():
    role = typed(practitioner_role("208100000X", practitioner="dr-1"))
    gathered = References([typed(practitioner("dr-1")), role, typed(practitioner_role("225100000X"))])
    assert gathered.roles_of(typed(practitioner("dr-1"))) == (role,)


def test_unknown_is_what_was_wanted_and_could_not_be_had_never_what_was_found():
    gathered = References(
        [typed({"resourceType": "Medication", "id": "m1"})], unresolved={"Medication/m1", "Medication/m2"}
    )
    assert gathered.is_unknown(ref("Medication/m2"))
    assert not gathered.is_unknown(ref("Medication/m1"))
