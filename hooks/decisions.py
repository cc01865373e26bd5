"""What a hook decided: a card topic and what it is about. Wording comes later, from guideline_data.

Which missing data can make a card wrong is derived here, never kept by hand: each topic names the
facts its card rests on, and each fact declares the data it reads (hooks/facts.py `@reads`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

import msgspec

from hooks.facts import FACT_READS
from hooks.fhir import ConceptJson
from hooks.model import Appointment, Resource
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


class Decision(msgspec.Struct, frozen=True):
    topic: str
    orders: tuple[Resource, ...] = ()  # the draft orders the card is about, if any
    suspension: Suspension | None = None  # the MSC requirement is suspended
    basis: str | None = None  # why a referral may proceed (cards.yaml `bases`)
    variant: str | None = None  # which `when_<variant>` text the card takes, if any
    reason_codes: tuple[ConceptJson, ...] = ()  # CodeableConcepts to carry into suggested orders
    reason_references: tuple[str, ...] = ()  # 'Condition/id' to carry into suggested orders
    # appointment-book: the proposed Appointment the card is about, what the PN form will ask about the
    # MSC step (a key of cards.yaml `form_needs`), and the signed reference to the pre-filled form (set
    # by the pipeline once it has stored the form's context).
    appointment: Appointment | None = None
    form_needs: str | None = None
    form_token: str | None = None

    @property
    def about(self) -> tuple[Resource, ...]:
        """The context resources (draft orders, or the proposed appointment) the card is about."""
        return self.orders or ((self.appointment,) if self.appointment is not None else ())


# What the PN form asks about the MSC step (cards.yaml `form_needs:`).
FORM_NEEDS = frozenset({"msc-done", "no-msc"})

# The facts each card rests on: missing data behind any of them can turn the card into a wrong one. Red
# flags and exclusions silence cards; MSC visits, spine-surgeon visits, lumbar surgery and coverage change
# the MSC card into Prior Notification or nothing; recent PT silences the PT card; an order's reason says
# whether it is for LBP. A variant's facts (long-term opioid therapy) only change the wording.
IN_SCOPE = ("is_adult", "deceased", "red_flags")
TOPIC_FACTS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        MSC_EVALUATION_FIRST: (
            *IN_SCOPE,
            "has_active_lbp",
            "order_reason",
            "msc_done",
            "medicare_advantage",
            "msc_access",
            "established_spine_care",
            "after_lumbar_surgery",
        ),
        PRIOR_NOTIFICATION_REQUIRED: (*IN_SCOPE, "has_active_lbp", "order_reason"),
        PHYSICAL_THERAPY_FIRST_LINE: (*IN_SCOPE, "has_active_lbp", "red_flag_findings", "recent_pt"),
        OPIOID_SPARING_ALTERNATIVES: (
            *IN_SCOPE,
            "has_active_lbp",
            "order_reason",
            "opioid_excluded",
            "opioid_use_disorder",
        ),
        RED_FLAG_REVIEW: (*IN_SCOPE, "has_active_lbp", "red_flag_findings"),
    }
)


def data_read_by(facts: Iterable[str]) -> frozenset[str]:
    return frozenset(data for name in facts for data in FACT_READS[name])


# Which patient data can turn each card into a wrong one when missing (derived).
CARD_DEPENDS_ON: Mapping[str, frozenset[str]] = MappingProxyType(
    {topic: data_read_by(facts) for topic, facts in TOPIC_FACTS.items()}
)
# Without these nothing can be decided (age, red flags): silence would be a guess.
ESSENTIAL_KEYS = data_read_by(IN_SCOPE)


def keys_that_matter(decisions: Iterable[Decision], missing: set[str], unjudged: Iterable[str] = ()) -> set[str]:
    """The missing keys that could make one of these cards wrong, or leave nothing decidable.

    `unjudged`: data without which an order under judgment cannot be classified (its Medication, or the
    performer its classification hinges on, could not be had): answering no card for it would be a guess too.
    """
    matter = missing & (ESSENTIAL_KEYS | set(unjudged))
    for decision in decisions:
        matter |= missing & CARD_DEPENDS_ON[decision.topic]
    return matter
