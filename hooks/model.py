"""The FHIR R4 data the rules read, as immutable typed values (msgspec Structs).

Only the elements some rule, card or form reads are declared; every other element of a resource is
ignored when it is decoded. The pipeline decodes each resource once, at one boundary
(cds_service/pipeline/decode.py), where wrong shapes are refused or set aside; past it, nothing reads
a raw dictionary. A FHIR array is a tuple here (empty when absent), a single element None when absent.

Why msgspec: converting the parsed JSON of a 10,000-resource record into these Structs takes about
9 ms on the reference machine, where pydantic-core's validated models took several times that
(docs/developers/index.md, "Typed data"); the Structs are C objects with slots, cheap to read and to hash.
"""

from __future__ import annotations

from typing import Annotated, TypeVar, get_args

import msgspec
from msgspec import Meta, Struct, field

# FHIR id: 1 to 64 letters, digits, '-' and '.'.
FhirId = Annotated[str, Meta(pattern=r"^[A-Za-z0-9\-.]{1,64}\Z")]
# FHIR JSON of elements the rules never read but echo back unchanged (extensions): kept as sent.
JsonObject = dict[str, object]


T = TypeVar("T")


def lenient(value: object, kind: type[T], default: T) -> T:
    """An element kept as sent, read as `kind` when it is shaped so, else `default`."""
    if value is None:
        return default
    try:
        return msgspec.convert(value, kind)
    except msgspec.ValidationError:
        return default


# gc=False: the Structs hold only strings, numbers, tuples and other Structs (and JSON kept as sent), so
# they can form no reference cycle; left out of the cyclic collector's sight, a 10,000-resource record
# costs it nothing to scan (docs/developers/index.md, "Typed data").
class Element(Struct, frozen=True, gc=False):
    """A FHIR data type or backbone element."""


class Coding(Element, frozen=True):
    system: str | None = None
    code: str | None = None
    display: str | None = None
    version: str | None = None
    userSelected: bool | None = None


class CodeableConcept(Element, frozen=True):
    coding: tuple[Coding, ...] = ()
    text: str | None = None


class Identifier(Element, frozen=True):
    system: str | None = None
    value: str | None = None
    type: CodeableConcept | None = None


class Reference(Element, frozen=True):
    reference: str | None = None
    identifier: Identifier | None = None
    display: str | None = None


class Period(Element, frozen=True):
    start: str | None = None
    end: str | None = None


class Address(Element, frozen=True):
    use: str | None = None
    postalCode: str | None = None


class HumanName(Element, frozen=True):
    use: str | None = None
    text: str | None = None
    family: str | None = None
    given: tuple[str, ...] = ()
    prefix: tuple[str, ...] = ()


class Qualification(Element, frozen=True):
    code: CodeableConcept | None = None


class CoverageClass(Element, frozen=True):
    value: str | None = None
    name: str | None = None


class Diagnosis(Element, frozen=True):
    condition: Reference | None = None


class EncounterParticipant(Element, frozen=True):
    individual: Reference | None = None
    type: tuple[CodeableConcept, ...] = ()


class AppointmentParticipant(Element, frozen=True):
    actor: Reference | None = None
    type: tuple[CodeableConcept, ...] = ()


# --------------------------------------------------------------------------
# Resources: each tagged by its resourceType
# --------------------------------------------------------------------------


class Resource(Struct, frozen=True, gc=False, tag_field="resourceType"):
    """A FHIR resource; `key` is its 'Type/id' (None without an id)."""

    id: FhirId | None = None

    @property
    def resource_type(self) -> str:
        return type(self).__name__

    @property
    def key(self) -> str | None:
        return f"{type(self).__name__}/{self.id}" if self.id is not None else None


# Elements only the Prior Notification form's pre-fill reads are kept as sent (`object`): a wrong shape
# there must cost the form an answer, never the card (cds_service/pipeline/prior_notification.py reads them
# with `lenient`).


class Patient(Resource, frozen=True, tag=True):
    birthDate: str | None = None
    deceasedBoolean: bool | None = None
    deceasedDateTime: str | None = None
    address: tuple[Address, ...] = ()
    name: object = None  # form only


class Condition(Resource, frozen=True, tag=True):
    code: CodeableConcept | None = None
    clinicalStatus: CodeableConcept | None = None
    verificationStatus: CodeableConcept | None = None
    onsetDateTime: str | None = None
    onsetPeriod: Period | None = None
    recordedDate: str | None = None
    # abatement[x]: only whether one is there is read (a Condition without clinicalStatus that abated).
    abatementDateTime: object = None
    abatementAge: object = None
    abatementPeriod: object = None
    abatementRange: object = None
    abatementString: object = None
    abatementBoolean: object = None

    @property
    def has_abated(self) -> bool:
        return any(
            value is not None
            for value in (
                self.abatementDateTime,
                self.abatementAge,
                self.abatementPeriod,
                self.abatementRange,
                self.abatementString,
                self.abatementBoolean,
            )
        )


class Coverage(Resource, frozen=True, tag=True):
    status: str | None = None
    period: Period | None = None
    type: CodeableConcept | None = None
    class_: tuple[CoverageClass, ...] = field(default=(), name="class")
    payor: tuple[Reference, ...] = ()
    order: int | None = None
    identifier: object = None  # form only
    subscriberId: object = None  # form only


class Encounter(Resource, frozen=True, tag=True):
    status: str | None = None
    serviceType: CodeableConcept | None = None
    type: tuple[CodeableConcept, ...] = ()
    period: Period | None = None
    reasonCode: tuple[CodeableConcept, ...] = ()
    reasonReference: tuple[Reference, ...] = ()
    diagnosis: tuple[Diagnosis, ...] = ()
    participant: tuple[EncounterParticipant, ...] = ()
    contained: tuple[ContainedResource, ...] = ()


class Procedure(Resource, frozen=True, tag=True):
    status: str | None = None
    code: CodeableConcept | None = None
    performedPeriod: Period | None = None
    performedDateTime: str | None = None


class MedicationIngredient(Element, frozen=True):
    itemCodeableConcept: CodeableConcept | None = None


class Medication(Resource, frozen=True, tag=True):
    code: CodeableConcept | None = None
    ingredient: tuple[MedicationIngredient, ...] = ()  # a compounded Medication names what it is made of


class Practitioner(Resource, frozen=True, tag=True):
    qualification: tuple[Qualification, ...] = ()
    name: object = None  # form only
    identifier: tuple[Identifier, ...] = ()


class PractitionerRole(Resource, frozen=True, tag=True):
    specialty: tuple[CodeableConcept, ...] = ()
    code: tuple[CodeableConcept, ...] = ()
    practitioner: Reference | None = None
    organization: Reference | None = None
    identifier: tuple[Identifier, ...] = ()
    contained: tuple[ContainedResource, ...] = ()


class Organization(Resource, frozen=True, tag=True):
    name: object = None  # form only (and a card's "with whom" when the participant has no display)
    identifier: tuple[Identifier, ...] = ()


# What a resource may contain and the rules follow a local ('#id') reference to.
ContainedResource = Condition | Medication | Practitioner | PractitionerRole | Organization


class ServiceRequest(Resource, frozen=True, tag=True):
    status: str | None = None
    priority: str | None = None
    code: CodeableConcept | None = None
    performerType: CodeableConcept | None = None
    occurrencePeriod: Period | None = None
    occurrenceDateTime: str | None = None
    authoredOn: str | None = None
    reasonCode: tuple[CodeableConcept, ...] = ()
    reasonReference: tuple[Reference, ...] = ()
    performer: tuple[Reference, ...] = ()
    contained: tuple[ContainedResource, ...] = ()
    extension: tuple[JsonObject, ...] = ()


class MedicationRequest(Resource, frozen=True, tag=True):
    status: str | None = None
    priority: str | None = None
    medicationCodeableConcept: CodeableConcept | None = None
    medicationReference: Reference | None = None
    reasonCode: tuple[CodeableConcept, ...] = ()
    reasonReference: tuple[Reference, ...] = ()
    authoredOn: str | None = None
    contained: tuple[ContainedResource, ...] = ()


class Appointment(Resource, frozen=True, tag=True):
    status: str | None = None
    appointmentType: CodeableConcept | None = None
    serviceType: tuple[CodeableConcept, ...] = ()
    specialty: tuple[CodeableConcept, ...] = ()
    reasonCode: tuple[CodeableConcept, ...] = ()
    reasonReference: tuple[Reference, ...] = ()
    basedOn: tuple[Reference, ...] = ()
    start: str | None = None
    end: str | None = None
    participant: tuple[AppointmentParticipant, ...] = ()
    contained: tuple[ContainedResource, ...] = ()
    extension: tuple[JsonObject, ...] = ()


class OtherResource(Struct, frozen=True, gc=False):
    """A resource of a type no rule reads (an OperationOutcome in a search Bundle, an included Location…)."""

    resourceType: Annotated[str, Meta(pattern=r"^[A-Z][A-Za-z]+\Z")]
    id: FhirId | None = None

    @property
    def resource_type(self) -> str:
        return self.resourceType

    @property
    def key(self) -> str | None:
        return f"{self.resourceType}/{self.id}" if self.id is not None else None


# Any resource type the rules read, told apart by its resourceType (a tagged union, for msgspec).
ReadResource = (
    Patient
    | Condition
    | Coverage
    | Encounter
    | Procedure
    | Medication
    | Practitioner
    | PractitionerRole
    | Organization
    | ServiceRequest
    | MedicationRequest
    | Appointment
)
READ_TYPES: dict[str, type[Resource]] = {cls.__name__: cls for cls in get_args(ReadResource)}
CONTAINED_TYPES = frozenset({"Condition", "Medication", "Practitioner", "PractitionerRole", "Organization"})
