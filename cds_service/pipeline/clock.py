"""The clinical "today": ages, look-back windows and suspension dates are counted from it.

Today is the date in the program's time zone (CDS_PROGRAM_TIMEZONE), never the host's: a service on a
UTC host must not make a 17-year-old 18 on the evening before the birthday.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Protocol
from zoneinfo import ZoneInfo


class Clock(Protocol):
    def today(self) -> date: ...


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class SystemClock:
    """Today's date in the program's time zone, from the current instant (injectable for tests)."""

    zone: ZoneInfo  # CDS_PROGRAM_TIMEZONE, from the settings
    instant: Callable[[], datetime] = utc_now

    def today(self) -> date:
        return self.instant().astimezone(self.zone).date()


@dataclass(frozen=True)
class FixedClock:
    """One date for every call: tests, dated examples and the preview page."""

    day: date

    def today(self) -> date:
        return self.day
