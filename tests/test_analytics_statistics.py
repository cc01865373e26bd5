"""The analytics statistics against hand-computed examples."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from cds_service.observability.statistics import (
    Day,
    alarms,
    control_chart,
    suppress,
    suppressed_share,
    wilson,
)
from cds_service.web.analytics import weeks

START = date(2026, 1, 5)  # a Monday


def days(counts: list[tuple[int, int]], start: date = START) -> list[Day]:
    return [Day(start + timedelta(days=i), cards, calls) for i, (cards, calls) in enumerate(counts)]


def test_wilson_intervals_match_the_hand_computed_ones():
    # 5/10: (0.5 + 1.9208 / 10 ± 1.96 * sqrt(0.025 + 0.009604)) / 1.38416
    low, high = wilson(5, 10)
    assert low == pytest.approx(0.2366, abs=1e-4) and high == pytest.approx(0.7634, abs=1e-4)
    # 0/10: the lower bound is 0, the upper 0.38416 / 1.38416
    assert wilson(0, 10) == (0.0, pytest.approx(0.2775, abs=1e-4))
    assert wilson(10, 10) == (pytest.approx(0.7225, abs=1e-4), pytest.approx(1.0))
    assert wilson(0, 0) is None


def test_u_chart_limits_are_the_centre_plus_minus_three_sigma_of_the_day():
    points = control_chart(days([(10, 100)] * 56 + [(10, 400)]))
    last = points[-1]
    # centre 560 / 5600 = 0.1; sigma = sqrt(0.1 / 400) = 0.0158114
    assert last.centre == pytest.approx(0.1)
    assert last.upper == pytest.approx(0.1 + 3 * 0.0158114, abs=1e-6)
    assert last.lower == pytest.approx(0.1 - 3 * 0.0158114, abs=1e-6)
    assert last.expected == pytest.approx(40.0)
    assert points[0].centre is None  # no baseline before the first day


def test_a_day_beyond_three_sigma_is_an_alarm_that_says_count_and_expected():
    # limits for 100 calls at 0.1: 0.1 ± 3 * 0.0316228 → 0.51 to 19.49 cards; P(X >= 25 | 10) = 5e-5
    found = alarms(control_chart(days([(10, 100)] * 56 + [(25, 100)])))
    assert [(a.kind, a.since, a.cards, a.expected) for a in found] == [
        ("beyond-limits", START + timedelta(days=56), 25, pytest.approx(10.0))
    ]
    assert "25 cards in 100 calls, above" in found[0].message and "expected 10.0" in found[0].message
    # 20 cards: beyond 19.49, but P(X >= 20 | 10) = 0.0035, more than a normal value beyond 3 sigma (0.00135)
    assert alarms(control_chart(days([(10, 100)] * 56 + [(20, 100)]))) == []
    assert alarms(control_chart(days([(10, 100)] * 56 + [(19, 100)]))) == []


def test_a_rare_card_firing_once_is_not_beyond_the_limits_when_the_poisson_tail_says_it_is_likely():
    # centre 0.001 per call, 100 calls: expected 0.1 card, upper limit 0.001 + 3 * sqrt(0.00001) = 0.0105 per call;
    # 2 cards (0.02) are above it, but P(X >= 2 | 0.1) = 1 - e^-0.1 * 1.1 = 0.0047: not improbable enough.
    baseline = [(1, 1000)] * 56
    assert alarms(control_chart(days([*baseline, (2, 100)]))) == []
    # 4 cards: P(X >= 4 | 0.1) = 3.8e-6
    assert [a.kind for a in alarms(control_chart(days([*baseline, (4, 100)])))] == ["beyond-limits"]


def test_eight_days_in_a_row_above_the_centre_is_a_shift_seven_is_not():
    found = alarms(control_chart(days([(10, 100)] * 56 + [(13, 100)] * 8)))
    assert [(a.kind, a.since, a.until, a.cards) for a in found] == [
        ("run", START + timedelta(days=56), START + timedelta(days=63), 104)
    ]
    assert "since 2026-03-02: 8 days in a row above the centre line" in found[0].message
    assert alarms(control_chart(days([(10, 100)] * 56 + [(13, 100)] * 7))) == []


def test_stopped_firing_when_zero_cards_in_a_row_are_improbable():
    # 3 cards expected a day: P(0) is e^-3 = 0.0498 after one day, e^-6 = 0.0025 after two, e^-9 = 0.00012 after
    # three: below 0.001 only on the third day.
    baseline = [(3, 100)] * 56
    assert alarms(control_chart(days(baseline + [(0, 100)] * 2))) == []
    found = alarms(control_chart(days(baseline + [(0, 100)] * 3)))
    assert [(a.kind, a.since, a.until, a.cards, a.expected) for a in found] == [
        ("stopped", START + timedelta(days=56), START + timedelta(days=58), 0, pytest.approx(9.0))
    ]
    assert "no card since 2026-03-02 (3 days with 300 calls), expected 9.0 (P(0) = 1.2e-04)" in found[0].message


def test_a_topic_that_stops_is_one_stopped_alarm_not_one_alarm_a_day():
    found = alarms(control_chart(days([(10, 100)] * 56 + [(0, 100)] * 20)))
    assert [(a.kind, a.since, a.until) for a in found] == [
        ("stopped", START + timedelta(days=56), START + timedelta(days=75))
    ]
    assert found[0].expected == pytest.approx(200.0)


def test_days_without_calls_neither_break_nor_count_in_a_stopped_run():
    baseline = [(3, 100)] * 56
    found = alarms(control_chart(days([*baseline, (0, 100), (0, 0), (0, 0), (0, 100), (0, 100)])))
    assert [(a.kind, a.expected) for a in found] == [("stopped", pytest.approx(9.0))]


def test_weekly_seasonality_a_quieter_weekend_raises_no_alarm():
    # Weekdays 10 cards per 100 calls, weekends 2 per 100: against one centre line for all days every weekend
    # would sit below it; against its own weekday's centre nothing is unusual.
    week = [(10, 100)] * 5 + [(2, 100)] * 2
    points = control_chart(days(week * 12))
    assert alarms(points) == []
    saturday = points[-2]
    assert saturday.day.weekday() == 5 and saturday.centre == pytest.approx(0.02)


def test_counts_from_one_to_ten_are_suppressed_in_exports():
    assert [suppress(n) for n in (0, 1, 10, 11)] == ["0", "<11", "<11", "11"]
    assert suppressed_share(5, 100) == "<11"  # the count would be given back by the share
    assert suppressed_share(50, 8) == "<11"
    assert suppressed_share(25, 100) == "0.250"
    assert suppressed_share(0, 0) == ""


def test_a_long_period_is_drawn_by_week_with_limits_from_the_summed_expected_cards():
    points = control_chart(days([(10, 100)] * 56 + [(10, 100)] * 6 + [(16, 100)]))
    [*_, last_week] = weeks([p for p in points if p.day >= START + timedelta(days=56)])
    # Monday 2026-03-02 to Sunday 2026-03-08: 76 cards in 700 calls, 70 expected: centre 0.1, sigma sqrt(0.1/700)
    assert (last_week.day, last_week.cards, last_week.calls) == (date(2026, 3, 2), 76, 700)
    assert last_week.centre == pytest.approx(0.1)
    assert last_week.upper == pytest.approx(0.1 + 3 * (0.1 / 700) ** 0.5)
