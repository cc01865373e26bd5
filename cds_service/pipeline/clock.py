"""The clinical "today": ages, look-back windows and suspension dates are counted from it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Protocol


class Clock(Protocol):
    def today(self) -> date: ...


class SystemClock:
    """Today's date as the host sees it."""

    def today(self) -> date:
        return date.today()


@dataclass(frozen=True)
class FixedClock:
    """One date for every call: tests, dated examples and the preview page."""

    day: date

    def today(self) -> date:
        return self.day
