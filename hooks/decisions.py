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
