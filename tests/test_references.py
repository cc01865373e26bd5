"""hooks.fhir.References: one way to resolve a Reference (contained first, then what the call gathered)."""

from __future__ import annotations

from hooks.fhir import References
from tests.builders import practitioner, practitioner_role


def test_a_local_reference_resolves_to_the_resource_contained_in_the_referrer():
    referrer = {"resourceType": "ServiceRequest", "contained": [{"resourceType": "Condition", "id": "r"}]}
    gathered = References.of([{"resourceType": "Condition", "id": "r", "code": {}}])
    assert gathered.resolve({"reference": "#r"}, referrer) is referrer["contained"][0]
    assert gathered.resolve({"reference": "#r"}, {"resourceType": "ServiceRequest"}) is None


def test_a_relative_or_absolute_reference_resolves_to_the_gathered_resource():
    condition = {"resourceType": "Condition", "id": "c1"}
    gathered = References.of([condition])
    assert gathered.resolve({"reference": "Condition/c1"}) is condition
    assert gathered.resolve({"reference": "https://ehr.example.org/fhir/Condition/c1/_history/2"}) is condition
    assert gathered.resolve({"reference": "Condition/c2"}) is None


def test_a_practitioners_roles_are_found_by_their_practitioner_reference():
    role = practitioner_role("208100000X", practitioner="dr-1")
    gathered = References.of([practitioner("dr-1"), role, practitioner_role("225100000X")])
    assert gathered.roles_of(practitioner("dr-1")) == (role,)


def test_unknown_is_what_was_wanted_and_could_not_be_had_never_what_was_found():
    gathered = References.of(
        [{"resourceType": "Medication", "id": "m1"}], unresolved={"Medication/m1", "Medication/m2"}
    )
    assert gathered.is_unknown({"reference": "Medication/m2"})
    assert not gathered.is_unknown({"reference": "Medication/m1"})
