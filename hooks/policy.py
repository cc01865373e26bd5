"""The program's policy switches, as the rules see them (loaded from guideline_data)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from types import MappingProxyType


@dataclass(frozen=True)
class Suspension:
    """A period in which the plan suspended the MSC requirement (it did for COVID-19)."""

    start: date
    end: date | None  # None: "until further notice"
    notice: str

    def covers(self, day: date) -> bool:
        return self.start <= day and (self.end is None or day <= self.end)


@dataclass(frozen=True)
class Policy:
    adult_age: int
    msc_lookback_days: int
    pt_lookback_days: int
    red_flag_review_days: int
    exclusion_lookback_days: int
    emergent_priorities: frozenset[str]
    medicare_advantage_plan_ids: frozenset[str]
    referral_text_patterns: tuple[re.Pattern[str], ...]
    referral_text_exclusions: tuple[re.Pattern[str], ...]
    suspensions: tuple[Suspension, ...] = field(default=())
    # Text naming physical therapy: such a referral is never spine-surgical, whatever else it says.
    physical_therapy_text: tuple[re.Pattern[str], ...] = ()
    spine_care_lookback_days: int = 365
    long_term_opioid_days: int = 90
    # ICD-10-CM 7th characters of subsequent encounters and sequelae (history, not a red flag), and per
    # red-flag tier how recent an initial-encounter code must be to count.
    later_encounter_characters: frozenset[str] = frozenset()
    red_flag_initial_days: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    plan_payer_ids: frozenset[str] = frozenset()  # the plan's own coverages: primary when Coverage.order is absent
    prior_notification_window_days: int = 90  # a PN filed this recently covers the visit (the episode)
    # appointmentType text that marks a follow-up visit, when it carries no standard code.
    follow_up_text_patterns: tuple[re.Pattern[str], ...] = field(default=())
    # Coverage.class names and values that say Medicare Advantage, read when the type leaves it open.
    medicare_advantage_text: tuple[re.Pattern[str], ...] = field(default=())
    # Read together: each pattern of one entry matches one of the names and values (group "Medicare", plan "Part C").
    medicare_advantage_text_together: tuple[tuple[re.Pattern[str], ...], ...] = field(default=())

    def suspension_on(self, day: date) -> Suspension | None:
        return next((s for s in self.suspensions if s.covers(day)), None)
