"""The program's policy switches, as the rules see them (loaded from guideline_data)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date


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
    prior_notification_window_days: int = 90  # a PN filed this recently covers the visit (the episode)
    # appointmentType text that marks a follow-up visit, when it carries no standard code.
    follow_up_text_patterns: tuple[re.Pattern[str], ...] = field(default=())

    def suspension_on(self, day: date) -> Suspension | None:
        return next((s for s in self.suspensions if s.covers(day)), None)
