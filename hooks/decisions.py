"""What a hook decided: a card topic and what it is about. Wording comes later, from guideline_data."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hooks.fhir import Resource
from hooks.policy import Suspension

# Card topics (source.topic.code): a stable contract for EHR analytics.
MSC_EVALUATION_FIRST = "msc-evaluation-first"
PRIOR_NOTIFICATION_REQUIRED = "prior-notification-required"
PHYSICAL_THERAPY_FIRST_LINE = "physical-therapy-first-line"
OPIOID_SPARING_ALTERNATIVES = "opioid-sparing-alternatives"
RED_FLAG_REVIEW = "red-flag-review"
TOPICS = (
    MSC_EVALUATION_FIRST,
    PRIOR_NOTIFICATION_REQUIRED,
    PHYSICAL_THERAPY_FIRST_LINE,
    OPIOID_SPARING_ALTERNATIVES,
    RED_FLAG_REVIEW,
)
# The variants of a card's text (cards.yaml `when_<variant>`), chosen by the rules.
SUSPENDED = "suspended"
LONG_TERM_OPIOID = "long_term_opioid"
# appointment-book: the surgical practice's wording (and, when the PN records could not be read, saying so).
AT_BOOKING = "at_booking"
AT_BOOKING_UNCHECKED = "at_booking_unchecked"
VARIANTS = (SUSPENDED, LONG_TERM_OPIOID, AT_BOOKING, AT_BOOKING_UNCHECKED)


@dataclass(frozen=True)
class Decision:
    topic: str
    orders: tuple[Resource, ...] = ()  # the draft orders the card is about, if any
    suspension: Suspension | None = None  # the MSC requirement is suspended
    basis: str | None = None  # why a referral may proceed (cards.yaml `bases`)
    variant: str | None = None  # which `when_<variant>` text the card takes, if any
    reason_codes: tuple[Any, ...] = ()  # CodeableConcepts to carry into suggested orders
    reason_references: tuple[str, ...] = ()  # 'Condition/id' to carry into suggested orders
    # appointment-book: the proposed Appointment the card is about, what the PN form will ask about the
    # MSC step (a key of cards.yaml `form_needs`), and the signed reference to the pre-filled form (set
    # by the pipeline once it has stored the form's context).
    appointment: Resource | None = None
    form_needs: str | None = None
    form_token: str | None = None

    @property
    def about(self) -> tuple[Resource, ...]:
        """The context resources (draft orders, or the proposed appointment) the card is about."""
        return self.orders or ((self.appointment,) if self.appointment is not None else ())


# What the PN form asks about the MSC step (cards.yaml `form_needs:`).
FORM_NEEDS = frozenset({"msc-done", "no-msc"})

# Data that is not a prefetch key of its own: resources reached by reference (contained, prefetched
# or fetched by reference) that could not be had. Named per kind, like prefetch keys.
REFERENCED_DATA = {
    "Condition": "referencedConditions",
    "Medication": "referencedMedications",
    "PractitionerRole": "referencedPractitioners",
    "Practitioner": "referencedPractitioners",
}

# Which patient data can turn each card into a wrong one when missing: red flags and exclusions
# silence cards; MSC visits, spine-surgeon visits, lumbar surgery and coverage change the MSC card
# into Prior Notification or nothing; the practitioners of past visits say whether they were MSC,
# spine-surgeon or PT visits; recent PT silences the PT card; an order's reason Condition says whether
# it is for LBP (or, for buprenorphine and methadone, for opioid use disorder). A card whose data was
# all had is safe to show even when other data could not be fetched.
CARD_DEPENDS_ON: dict[str, frozenset[str]] = {
    MSC_EVALUATION_FIRST: frozenset(
        {
            "patient",
            "conditions",
            "coverages",
            "encounters",
            "serviceRequests",
            "procedures",
            "referencedConditions",
            "referencedPractitioners",
        }
    ),
    PRIOR_NOTIFICATION_REQUIRED: frozenset({"patient", "conditions", "referencedConditions"}),
    PHYSICAL_THERAPY_FIRST_LINE: frozenset(
        {"patient", "conditions", "encounters", "serviceRequests", "procedures", "referencedPractitioners"}
    ),
    OPIOID_SPARING_ALTERNATIVES: frozenset(
        {"patient", "conditions", "encounters", "serviceRequests", "procedures", "referencedConditions"}
    ),
    RED_FLAG_REVIEW: frozenset({"patient", "conditions"}),
}
# Without these nothing can be decided (age, diagnoses): silence would be a guess.
ESSENTIAL_KEYS = frozenset({"patient", "conditions"})


def keys_that_matter(decisions: list[Decision], missing: set[str], unjudged: Iterable[str] = ()) -> set[str]:
    """The missing keys that could make one of these cards wrong, or leave nothing decidable.

    `unjudged`: data without which an order under judgment cannot be classified (its Medication or
    performer could not be had): answering no card for it would be a guess too.
    """
    matter = missing & (ESSENTIAL_KEYS | set(unjudged))
    for decision in decisions:
        matter |= missing & CARD_DEPENDS_ON[decision.topic]
    return matter
