"""What a hook decided: a card topic and what it is about. Wording comes later, from guideline_data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hooks.fhir import Resource
from hooks.policy import Suspension

# Card topics (source.topic.code): a stable contract for EHR analytics.
MSC_EVALUATION_FIRST = "msc-evaluation-first"
PRIOR_NOTIFICATION_REQUIRED = "prior-notification-required"
PHYSICAL_THERAPY_FIRST_LINE = "physical-therapy-first-line"
OPIOID_SPARING_ALTERNATIVES = "opioid-sparing-alternatives"
TOPICS = (MSC_EVALUATION_FIRST, PRIOR_NOTIFICATION_REQUIRED, PHYSICAL_THERAPY_FIRST_LINE, OPIOID_SPARING_ALTERNATIVES)


@dataclass(frozen=True)
class Decision:
    topic: str
    order: Resource | None = None  # the draft order the card is about, if any
    suspension: Suspension | None = None  # the MSC requirement is suspended
    basis: str | None = None  # why a referral may proceed: msc-done, medicare-advantage or suspended
    reason_codes: tuple[Any, ...] = ()  # CodeableConcepts to carry into suggested orders
    reason_references: tuple[str, ...] = ()  # 'Condition/id' to carry into suggested orders
    # appointment-book: the proposed Appointment the card is about, the card text variant (see
    # VARIANTS), what the PN form will ask for (a key of form_needs in cards.yaml), and the signed
    # reference to the pre-filled form (set by the pipeline once it has stored the form's context).
    appointment: Resource | None = None
    variant: str | None = None
    form_needs: str | None = None
    form_token: str | None = None

    @property
    def about(self) -> Resource | None:
        """The context resource (draft order or proposed appointment) the card is about."""
        return self.order if self.order is not None else self.appointment


# Card text variants the rules use, per topic (cards.yaml `variants:`): the surgical practice's
# cards at appointment-book say other things than the referring clinician's at order time.
AT_BOOKING = "at-booking"
AT_BOOKING_UNCHECKED = "at-booking-unchecked"  # the PN records could not be read
VARIANTS: dict[str, frozenset[str]] = {
    PRIOR_NOTIFICATION_REQUIRED: frozenset({AT_BOOKING, AT_BOOKING_UNCHECKED}),
    MSC_EVALUATION_FIRST: frozenset({AT_BOOKING}),
}
# What the PN form asks about the MSC step (cards.yaml `form_needs:`).
FORM_NEEDS = frozenset({"msc-done", "no-msc"})

# Which patient data (prefetch keys) can turn each card into a wrong one when missing:
# red flags and exclusions silence cards, MSC visits and coverage change the MSC card into
# Prior Notification, recent PT silences the PT card. A card whose keys were all had is safe
# to show even when other keys could not be fetched.
CARD_DEPENDS_ON: dict[str, frozenset[str]] = {
    MSC_EVALUATION_FIRST: frozenset({"patient", "conditions", "coverages", "encounters", "serviceRequests"}),
    PRIOR_NOTIFICATION_REQUIRED: frozenset({"patient", "conditions"}),
    PHYSICAL_THERAPY_FIRST_LINE: frozenset({"patient", "conditions", "encounters", "serviceRequests", "procedures"}),
    OPIOID_SPARING_ALTERNATIVES: frozenset({"patient", "conditions", "encounters", "serviceRequests", "procedures"}),
}
# Without these nothing can be decided (age, diagnoses): silence would be a guess.
ESSENTIAL_KEYS = frozenset({"patient", "conditions"})


def keys_that_matter(decisions: list[Decision], missing: set[str]) -> set[str]:
    """The missing keys that could make one of these cards wrong, or leave nothing decidable."""
    matter = missing & ESSENTIAL_KEYS
    for decision in decisions:
        matter |= missing & CARD_DEPENDS_ON[decision.topic]
    return matter
