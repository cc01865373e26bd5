"""The statistics of the analytics dashboard, pure: Wilson intervals, u-chart control limits with weekly
seasonality, the alarm rules, and the small-cell suppression of exports.

The control chart is a u-chart of cards per hook call, day by day: hook calls are the opportunities, so a
day with fewer calls (a weekend) is not mistaken for a topic firing less. Each day is compared with the
same weekday of the preceding weeks (BASELINE_DAYS), so a rate that differs by weekday raises no alarm.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

Z_95 = 1.959963984540054
SIGMAS = 3.0
ONE_SIDED_3_SIGMA = 0.00135  # the chance of a normal value beyond +3 sigma
BASELINE_DAYS = 56  # eight weeks of the same weekday before a day set its centre line
MIN_SAME_WEEKDAYS = 2  # fewer same-weekday days in the baseline: the centre is the whole baseline's
RUN_LENGTH = 8  # this many days in a row on one side of the centre line is a shift
STOPPED_PROBABILITY = 0.001  # zero cards in a row less likely than this (Poisson) means it stopped firing
SUPPRESSED = "<11"  # CMS cell-size rule: counts from 1 to 10 are not published
SMALL_CELL_MAX = 10


def wilson(successes: int, n: int, z: float = Z_95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion (95 % by default); None when n is 0."""
    if n <= 0:
        return None
    p = successes / n
    denominator = 1 + z * z / n
    centre = p + z * z / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - half) / denominator), min(1.0, (centre + half) / denominator)


@dataclass(frozen=True)
class Day:
    day: date
    cards: int
    calls: int  # hook calls of the service that day: the opportunities


@dataclass(frozen=True)
class Point:
    """A day on the u-chart; centre and limits are None until a baseline exists."""

    day: date
    cards: int
    calls: int
    centre: float | None
    lower: float | None
    upper: float | None

    @property
    def rate(self) -> float:
        return self.cards / self.calls if self.calls else 0.0

    @property
    def expected(self) -> float | None:
        return None if self.centre is None else self.centre * self.calls


@dataclass(frozen=True)
class Alarm:
    kind: str  # beyond-limits | run | stopped
    since: date
    until: date
    cards: int  # over since..until
    expected: float  # over since..until
    message: str
    direction: str = "below"  # above | below the centre line


def centre_for(day: date, window: Sequence[Day]) -> float | None:
    """Cards per call on the same weekday among the days of `window` (all weekdays if too few)."""
    same = [d for d in window if d.day.weekday() == day.weekday()]
    chosen = same if len(same) >= MIN_SAME_WEEKDAYS else window
    calls = sum(d.calls for d in chosen)
    return sum(d.cards for d in chosen) / calls if calls else None


def control_chart(days: Sequence[Day]) -> list[Point]:
    """The u-chart: each day with calls, its centre line and 3-sigma limits from its own baseline."""
    ordered = [d for d in sorted(days, key=lambda d: d.day) if d.calls > 0]  # no call, no information
    points = []
    start = 0
    for index, day in enumerate(ordered):
        while (day.day - ordered[start].day).days > BASELINE_DAYS:
            start += 1
        centre = centre_for(day.day, ordered[start:index])  # the BASELINE_DAYS before the day
        if centre is None:
            points.append(Point(day.day, day.cards, day.calls, None, None, None))
            continue
        sigma = math.sqrt(centre / day.calls)
        lower, upper = max(0.0, centre - SIGMAS * sigma), centre + SIGMAS * sigma
        points.append(Point(day.day, day.cards, day.calls, centre, lower, upper))
    return points


def alarms(points: Sequence[Point]) -> list[Alarm]:
    """Every alarm of the chart, oldest first: beyond the limits, a run on one side, stopped firing."""
    silent = stopped(points)
    # A stopped run is also below the limits and a run below the centre: the stopped alarm says it once.
    explained = [
        a
        for a in beyond_limits(points) + runs(points)
        if not any(a.since <= s.until and s.since <= a.until for s in silent)
    ]
    return sorted(explained + silent, key=lambda a: (a.since, a.kind))


def beyond_limits(points: Sequence[Point]) -> list[Alarm]:
    found = []
    for p in points:
        if p.upper is None or p.lower is None or p.expected is None:
            continue
        # Few cards a day are far from normal: a high count must also be improbable by the Poisson tail.
        high = p.rate > p.upper and poisson_at_least(p.cards, p.expected) < ONE_SIDED_3_SIGMA
        if high or (p.lower > 0 and p.rate < p.lower):
            side = "above" if p.rate > p.upper else "below"
            message = (
                f"{p.day}: {p.cards} cards in {p.calls} calls, {side} the 3-sigma limits "
                f"(expected {p.expected:.1f}, limits {p.lower * p.calls:.1f}–{p.upper * p.calls:.1f})"
            )
            found.append(Alarm("beyond-limits", p.day, p.day, p.cards, p.expected, message, side))
    return found


def poisson_at_least(count: int, mean: float) -> float:
    """P(X >= count) for a Poisson count of this mean."""
    term, below = math.exp(-mean), 0.0
    for k in range(count):
        below += term
        term *= mean / (k + 1)
    return max(0.0, 1.0 - below)


def runs(points: Sequence[Point]) -> list[Alarm]:
    """RUN_LENGTH or more days in a row above (or below) the centre line: the rate has shifted."""
    found = []
    run: list[Point] = []
    side = 0
    for p in [*points, None]:
        this = 0 if p is None or p.centre is None else (p.rate > p.centre) - (p.rate < p.centre)
        if p is not None and this != 0 and this == side:
            run.append(p)
            continue
        if len(run) >= RUN_LENGTH:
            cards, expected = sum(q.cards for q in run), sum(q.expected or 0.0 for q in run)
            where = "above" if side > 0 else "below"
            message = (
                f"since {run[0].day}: {len(run)} days in a row {where} the centre line "
                f"({cards} cards, expected {expected:.1f})"
            )
            found.append(Alarm("run", run[0].day, run[-1].day, cards, expected, message, where))
        run, side = ([p], this) if p is not None and this != 0 else ([], 0)
    return found


def stopped(points: Sequence[Point]) -> list[Alarm]:
    """Days in a row with calls and no card, while the rate before them makes that improbable:
    P(0 cards) = exp(-expected), with the expected count of each day from the centre line of the run's first day."""
    found = []
    threshold = -math.log(STOPPED_PROBABILITY)
    run: list[Point] = []
    for p in [*points, None]:
        if p is not None and p.cards == 0:
            if run or p.centre is not None:
                run.append(p)
            continue
        if run:
            rate = run[0].centre or 0.0
            expected = sum(rate * q.calls for q in run)
            if expected > threshold:
                probability = math.exp(-expected)
                message = (
                    f"stopped firing: no card since {run[0].day} ({len(run)} days with {sum(q.calls for q in run)} "
                    f"calls), expected {expected:.1f} (P(0) = {probability:.1e})"
                )
                found.append(Alarm("stopped", run[0].day, run[-1].day, 0, expected, message))
        run = []
    return found


def suppress(count: int) -> str:
    """A count as published: 1 to 10 suppressed (CMS cell-size suppression policy), 0 and above 10 shown."""
    return SUPPRESSED if 1 <= count <= SMALL_CELL_MAX else str(count)


def suppressed_share(part: int, whole: int) -> str:
    """A share is suppressed whenever its count or its denominator is: it would give the count back."""
    if 1 <= part <= SMALL_CELL_MAX or 1 <= whole <= SMALL_CELL_MAX:
        return SUPPRESSED
    return f"{part / whole:.3f}" if whole else ""
