"""The analytics dashboard for the program's informatics staff (/analytics): is each card firing as it should,
and do clinicians act on it?

Server-rendered pages (no script: the strict CSP of the other pages), each a few sections: a chart (SVG made
on the server, described for screen readers) beside a table of the same numbers, the table exportable as
CSV with counts from 1 to 10 suppressed. Who may see it is web/staff.py's business (the guard runs first).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, abort, redirect, render_template, request, url_for
from markupsafe import Markup

from cds_service.observability.statistics import (
    SIGMAS,
    SUPPRESSED,
    Alarm,
    Point,
    alarms,
    control_chart,
    suppress,
    wilson,
)
from cds_service.storage import analytics as queries
from cds_service.storage.analytics import Choices, Filters
from cds_service.storage.database import Storage
from cds_service.web import charts
from cds_service.wiring import current_services

blueprint = Blueprint("analytics", __name__, url_prefix="/analytics")
DEFAULT_DAYS = 90
SMALL_N = 20  # shares over fewer cards are greyed: their intervals are wide
FILTER_KEYS = ("from", "to", "ehr", "service", "topic", "version")
EHR_SEPARATOR = " | "


# --------------------------------------------------------------------------
# Tables: shown whole on the page, exported with small cells suppressed
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    title: str
    kind: str = "text"  # text | count | share | interval | number
    of: tuple[int, int] | None = None  # share and interval: the (part, whole) count columns they come from


@dataclass
class Table:
    name: str
    caption: str
    columns: Sequence[Column]
    rows: list[list[Any]] = field(default_factory=list)
    small: list[bool] = field(default_factory=list)  # rows greyed: n < SMALL_N

    def add(self, row: list[Any], small: bool = False) -> None:
        self.rows.append(row)
        self.small.append(small)


def shown(value: Any, column: Column) -> str:
    if value is None:
        return "—"
    if column.kind == "count":
        return f"{value:,}"
    if column.kind == "share":
        return f"{value:.1%}"
    if column.kind == "interval":
        return f"{value[0]:.1%}–{value[1]:.1%}"
    if column.kind == "number":
        return f"{value:,.1f}"
    return str(value)


def exported(row: Sequence[Any], column: Column, value: Any) -> str:
    """A cell as the CSV holds it: a count of 1 to 10, and any share or interval computed from one, suppressed."""
    if column.kind == "count":
        return suppress(int(value))
    if column.of is not None and any(suppress(int(row[i])) == SUPPRESSED for i in column.of):
        return SUPPRESSED
    if value is None:
        return ""
    if column.kind == "share":
        return f"{value:.4f}"
    if column.kind == "interval":
        return f"{value[0]:.4f}–{value[1]:.4f}"
    if column.kind == "number":
        return f"{value:.2f}"
    return str(value)


def as_csv(table: Table) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([c.title for c in table.columns])
    for row in table.rows:
        writer.writerow([exported(row, c, v) for c, v in zip(table.columns, row, strict=True)])
    return out.getvalue()


@dataclass
class Section:
    id: str
    heading: str
    explains: str  # what the section answers and how to read it
    table: Table
    chart: Markup | None = None
    chart_label: str = ""  # the chart described in words (its accessible name)
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------
# Filters
# --------------------------------------------------------------------------


def ehr_label(issuer: str, tenant: str) -> str:
    return f"{issuer}{EHR_SEPARATOR}{tenant}" if tenant else issuer


def read_filters(choices: Choices) -> Filters:
    """The filters asked for in the query string; 400 for a date or value the dashboard does not know."""
    last_default = choices.last_day or current_services().clock.today()
    last = read_date("to", last_default)
    first = read_date("from", last - timedelta(days=DEFAULT_DAYS - 1))
    if first > last:
        abort(400, description="The first day (from) is after the last day (to).")
    ehrs = {ehr_label(i, t): (i, t) for i, t in choices.ehrs}
    return Filters(
        first,
        last,
        ehr=ehrs[ehr] if (ehr := chosen("ehr", set(ehrs))) else None,
        service=chosen("service", set(choices.services)),
        topic=chosen("topic", set(choices.topics)),
        version=chosen("version", {v for v, _first, _last in choices.versions}),
    )


def read_date(key: str, default: date) -> date:
    raw = request.args.get(key, "")
    if not raw:
        return default
    try:
        return date.fromisoformat(raw)
    except ValueError:
        abort(400, description=f"'{key}' must be a date written YYYY-MM-DD.")


def chosen(key: str, known: set[str]) -> str | None:
    value = request.args.get(key, "")
    if value and value not in known:
        abort(400, description=f"There is no {key} '{value}' on record; choose one from the list.")
    return value or None


def filter_query(filters: Filters) -> dict[str, str]:
    query = {"from": filters.first.isoformat(), "to": filters.last.isoformat()}
    if filters.ehr:
        query["ehr"] = ehr_label(*filters.ehr)
    for key in ("service", "topic", "version"):
        if value := getattr(filters, key):
            query[key] = value
    return query


# --------------------------------------------------------------------------
# The pages
# --------------------------------------------------------------------------


def firing_sections(storage: Storage, filters: Filters) -> list[Section]:
    rows: list[dict[str, Any]] = []
    weekly: dict[tuple[str, date], tuple[int, int, float]] = {}
    found: list[tuple[str, Alarm]] = []
    by_day = (filters.last - filters.first).days < DAILY_CHART_DAYS
    for (service, topic), days in queries.firing(storage, filters).items():
        series = f"{service} · {topic}"
        points = control_chart(days)
        shown_points = [p for p in points if p.day >= filters.first]
        series_alarms = alarms(points)
        found += [(series, a) for a in series_alarms if a.until >= filters.first]
        flagged = flagged_days(series_alarms)
        by_week = weeks(shown_points)
        if by_day:
            rows += [chart_row(series, p, p.day in flagged) for p in shown_points]
        else:
            rows += [chart_row(series, p, bool(flagged_in_week(p.day, flagged))) for p in by_week]
        weekly |= {(series, p.day): (p.cards, p.calls, p.expected or 0.0) for p in by_week}
    alarm_table = Table(
        "alarms",
        "Alarms, most recent first",
        [
            Column("Service · topic"),
            Column("Alarm"),
            Column("Since"),
            Column("Until"),
            Column("Cards", "count"),
            Column("Expected", "number"),
            Column("What changed"),
        ],
    )
    for series, alarm in sorted(found, key=lambda item: item[1].until, reverse=True):
        alarm_table.add(
            [series, ALARM_NAMES[alarm.kind], alarm.since, alarm.until, alarm.cards, alarm.expected, alarm.message]
        )
    week_table = Table(
        "weekly",
        "Cards and hook calls per week",
        [
            Column("Service · topic"),
            Column("Week of"),
            Column("Cards", "count"),
            Column("Hook calls", "count"),
            Column("Expected cards", "number"),
        ],
    )
    for (series, week), (cards, calls, expected) in sorted(weekly.items()):
        week_table.add([series, week, cards, calls, expected])
    stopped = [f"{series}: {a.message}" for series, a in found if a.kind == "stopped"]
    chart = charts.control_charts(rows) if rows else None
    label = (
        f"Control charts of cards per 100 hook calls {'a day' if by_day else 'a week'}, "
        f"{len({series for series, _week in weekly})} service and topic pairs, {filters.first} to {filters.last}; "
        f"{len(found)} alarms"
        + (f", among them: {'; '.join(stopped)}" if stopped else "")
        + ". The weekly numbers are in the table beside it."
    )
    return [
        Section(
            "alarms",
            "Alarms",
            "Each alarm says what changed: a day beyond the 3-sigma limits, 8 days in a row on one side of the "
            "centre line (a shift), or a topic that stopped firing (days with hook calls and no card, while its "
            "usual rate makes that less likely than 1 in 1,000). Most flagged changes are changes in practice or "
            "in an EHR, not faults: read the message, then look at the chart.",
            alarm_table,
        ),
        Section(
            "firing",
            "Daily firing per service and topic (u-chart)",
            "Cards per 100 hook calls of the service, day by day. The dashed line is the centre: the same weekday's "
            "rate over the 8 weeks before (weekends differ from weekdays). The band is the 3-sigma limits for that "
            "day's number of calls. Red points are days with an alarm. Over more than "
            f"{DAILY_CHART_DAYS} days the chart draws weeks (the week's cards per 100 calls, against the sum of its "
            "days' expected cards); the alarms are still found day by day.",
            week_table,
            chart,
            label,
        ),
    ]


DAILY_CHART_DAYS = 120  # longer periods are drawn by week: a year of days per panel is slow to draw and to read


def weeks(points: Sequence[Point]) -> list[Point]:
    """The days summed by week (Monday first): cards, calls, and centre and limits from the expected cards."""
    summed: dict[date, tuple[int, int, float, bool]] = {}
    for p in points:
        week = p.day - timedelta(days=p.day.weekday())
        cards, calls, expected, known = summed.get(week, (0, 0, 0.0, True))
        summed[week] = (
            cards + p.cards,
            calls + p.calls,
            expected + (p.expected or 0.0),
            known and p.centre is not None,
        )
    found = []
    for week, (cards, calls, expected, known) in sorted(summed.items()):
        if not known or not calls:
            found.append(Point(week, cards, calls, None, None, None))
            continue
        centre = expected / calls
        sigma = math.sqrt(centre / calls)
        found.append(Point(week, cards, calls, centre, max(0.0, centre - SIGMAS * sigma), centre + SIGMAS * sigma))
    return found


def flagged_in_week(monday: date, flagged: set[date]) -> set[date]:
    return {monday + timedelta(days=n) for n in range(7)} & flagged


ALARM_NAMES = {"beyond-limits": "beyond 3 sigma", "run": "8 in a row", "stopped": "stopped firing"}


def flagged_days(found: Sequence[Alarm]) -> set[date]:
    days: set[date] = set()
    for alarm in found:
        day = alarm.since
        while day <= alarm.until:
            days.add(day)
            day += timedelta(days=1)
    return days


def chart_row(series: str, point: Point, alarm: bool) -> dict[str, Any]:
    def per_100(value: float | None) -> float | None:
        return None if value is None else round(value * 100, 3)

    return {
        "series": series,
        "day": point.day.isoformat(),
        "rate": per_100(point.rate),
        "centre": per_100(point.centre),
        "lower": per_100(point.lower),
        "upper": per_100(point.upper),
        "alarm": alarm,
    }


def outcome_sections(storage: Storage, filters: Filters) -> list[Section]:
    mix = Table(
        "outcomes",
        "Outcome of the cards issued in the period",
        [
            Column("Service"),
            Column("Topic"),
            Column("Issued", "count"),
            Column("Accepted", "count"),
            Column("Accepted share", "share", (3, 2)),
            Column("95 % interval", "interval", (3, 2)),
            Column("Overridden", "count"),
            Column("Overridden share", "share", (6, 2)),
            Column("95 % interval", "interval", (6, 2)),
            Column("No feedback", "count"),
        ],
    )
    bars = []
    groups = queries.feedback_groups(storage, filters)
    for row in queries.outcomes(storage, filters, groups):
        n = row.issued
        mix.add(
            [
                row.service_id,
                row.topic,
                n,
                row.accepted,
                share(row.accepted, n),
                wilson(row.accepted, n),
                row.overridden,
                share(row.overridden, n),
                wilson(row.overridden, n),
                row.no_feedback,
            ],
            small=n < SMALL_N,
        )
        for order, (part, count) in enumerate(
            (("accepted", row.accepted), ("overridden", row.overridden), ("no feedback", row.no_feedback))
        ):
            bars.append(
                {"card": f"{row.service_id} · {row.topic}", "part": part, "share": share(count, n) or 0, "order": order}
            )
    kinds, accepted_total = queries.acceptance_by_kind(groups)
    by_kind = Table(
        "suggestions",
        "Accepted cards by the suggestion taken",
        [
            Column("Suggestion kind"),
            Column("Accepted cards", "count"),
            Column("All accepted cards", "count"),
            Column("Share", "share", (1, 2)),
            Column("95 % interval", "interval", (1, 2)),
        ],
    )
    for kind, n in kinds:
        by_kind.add(
            [kind, n, accepted_total, share(n, accepted_total), wilson(n, accepted_total)], accepted_total < SMALL_N
        )
    coverage = Table(
        "coverage",
        "Feedback coverage per EHR",
        [
            Column("EHR (issuer | tenant)"),
            Column("Cards issued", "count"),
            Column("With any feedback", "count"),
            Column("Coverage", "share", (2, 1)),
            Column("95 % interval", "interval", (2, 1)),
        ],
    )
    silent = []
    for ehr in queries.coverage(storage, filters, groups):
        label = ehr_label(ehr.issuer, ehr.tenant) or "(no JWT: development)"
        coverage.add(
            [
                label,
                ehr.issued,
                ehr.with_feedback,
                share(ehr.with_feedback, ehr.issued),
                wilson(ehr.with_feedback, ehr.issued),
            ],
            ehr.issued < SMALL_N,
        )
        if ehr.issued >= SMALL_N and ehr.with_feedback == 0:
            silent.append(label)
    return [
        Section(
            "outcomes",
            "Outcome mix: accepted, overridden, no feedback",
            "Of the cards issued in the period, the share a clinician accepted, overrode, or sent no feedback "
            "about (an EHR that sends no feedback makes every card 'no feedback'). Intervals are 95 % Wilson "
            f"intervals; rows over fewer than {SMALL_N} cards are greyed: too few to read.",
            mix,
            charts.stacked_bars(bars, "card", "share of cards issued") if bars else None,
            "Stacked bars per service and topic: share of issued cards accepted, overridden and without feedback.",
        ),
        Section(
            "suggestions",
            "Acceptance by suggestion kind",
            "Which suggestion clinicians took when they accepted a card: the one-click swap to the MSC "
            "(msc-swap), a physical therapy referral (pt-referral)… 'no suggestion taken' is an accepted card "
            "that offers none (Prior Notification, red flags).",
            by_kind,
            charts.interval_chart(
                [interval_row(r[0], r[1], r[2]) for r in by_kind.rows], "kind", "share of accepted cards"
            )
            if by_kind.rows
            else None,
            "Share of accepted cards by suggestion kind, with 95 % intervals.",
        ),
        Section(
            "coverage",
            "Feedback coverage per EHR",
            "The share of issued cards that got any feedback, per EHR (its JWT issuer and tenant). An EHR at 0 % "
            "sends no feedback at all: its clinicians' actions are invisible here.",
            coverage,
            charts.interval_chart(
                [interval_row(r[0], r[2], r[1]) for r in coverage.rows], "kind", "share of cards with feedback"
            )
            if coverage.rows
            else None,
            "Feedback coverage per EHR with 95 % intervals"
            + (f"; no feedback at all from: {', '.join(silent)}." if silent else "."),
        ),
    ]


def share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def interval_row(kind: str, part: int, whole: int) -> dict[str, Any]:
    low, high = wilson(part, whole) or (0.0, 0.0)
    return {"kind": kind, "share": share(part, whole) or 0.0, "low": low, "high": high, "small": whole < SMALL_N}


def override_sections(storage: Storage, filters: Filters) -> list[Section]:
    reasons = queries.override_reasons(storage, filters)
    total = sum(n for _c, _d, n in reasons)
    table = Table(
        "reasons",
        "Override reasons, most frequent first",
        [
            Column("Code"),
            Column("Reason"),
            Column("Overrides", "count"),
            Column("All overrides", "count"),
            Column("Share", "share", (2, 3)),
        ],
    )
    for code, display, n in reasons:
        table.add([code, display, n, total, share(n, total)])
    rows = [{"reason": display or code, "overrides": n} for code, display, n in reasons]
    return [
        Section(
            "reasons",
            "Override reasons ranked",
            "Why clinicians overrode the cards issued in the period. A reason that grows after a content change, "
            "or 'does not apply' on one topic, is where to read the comments.",
            table,
            charts.bars(rows, "reason", "overrides", "overrides") if rows else None,
            "Bar chart of override counts by reason, most frequent first.",
        )
    ]


def timing_sections(storage: Storage, filters: Filters) -> list[Section]:
    timing = Table(
        "time-to-action",
        "Time from card to action",
        [Column("After the card"), Column("Accepted", "count"), Column("Overridden", "count")],
    )
    chart_rows = []
    for label, accepted, overridden in queries.time_to_action(storage, filters):
        timing.add([label, accepted, overridden])
        chart_rows += [
            {"after": label, "outcome": "accepted", "n": accepted},
            {"after": label, "outcome": "overridden", "n": overridden},
        ]
    load = queries.burden(storage, filters)
    burden = Table(
        "burden",
        "Cards a clinician saw in a day",
        [
            Column("Cards in the day"),
            Column("Clinician-days", "count"),
            Column("All clinician-days", "count"),
            Column("Share", "share", (1, 2)),
        ],
    )
    for label, n in load.buckets:
        burden.add([label, n, load.clinician_days, share(n, load.clinician_days)])
    return [
        Section(
            "time-to-action",
            "Time from card to action",
            "How long after the card was issued the clinician accepted or overrode it (the feedback's "
            "outcomeTimestamp). Most actions within a minute mean the card is read while ordering; late ones are "
            "often an EHR sending feedback in batches.",
            timing,
            charts.bars(chart_rows, "after", "n", "feedback entries", colour="outcome"),
            "Grouped bars: accepted and overridden cards by time from card to action.",
        ),
        Section(
            "burden",
            "Cards per clinician per day",
            "The distribution, over the days a clinician saw at least one card, of how many cards they saw that "
            "day (clinicians are counted by a keyed pseudonym, never by name; calls without a user id are not "
            "counted). Filtered by period and EHR only.",
            burden,
            charts.bars([{"cards": label, "days": n} for label, n in load.buckets], "cards", "days", "clinician-days"),
            f"Bar chart of clinician-days by cards seen that day; median {load.median}, 90th percentile {load.p90}.",
            [
                f"Median {load.median if load.median is not None else '—'} card(s) a day; 90th percentile "
                f"{load.p90 if load.p90 is not None else '—'}; {load.clinician_days:,} clinician-days."
            ],
        ),
    ]


def version_sections(storage: Storage, filters: Filters) -> list[Section]:
    table = Table(
        "versions",
        "Acceptance per content version",
        [
            Column("Content version"),
            Column("First day"),
            Column("Last day"),
            Column("Issued", "count"),
            Column("Accepted", "count"),
            Column("Overridden", "count"),
            Column("Acted on", "count"),
            Column("Accepted of acted on", "share", (4, 6)),
            Column("95 % interval", "interval", (4, 6)),
        ],
    )
    rows = []
    for v in queries.versions(storage, filters):
        acted = v.accepted + v.overridden
        table.add(
            [
                v.version,
                v.first_day,
                v.last_day,
                v.issued,
                v.accepted,
                v.overridden,
                acted,
                share(v.accepted, acted),
                wilson(v.accepted, acted),
            ],
            acted < SMALL_N,
        )
        rows.append(interval_row(v.version, v.accepted, acted))
    return [
        Section(
            "versions",
            "Before and after a content change",
            "Acceptance among the cards acted on, per content version, in the order the versions were served. "
            "Choose a topic to compare one card's wording. Overlapping intervals mean no difference can be told.",
            table,
            charts.interval_chart(rows, "kind", "accepted of acted on") if rows else None,
            "Share accepted among cards acted on, per content version, with 95 % intervals.",
            [
                "Caveat: versions follow one another in time, so a difference may come from the season, a change "
                "in an EHR or in practice, not from the content. Compare neighbouring versions over similar "
                "periods, and look at the firing chart for other changes at the same time."
            ],
        )
    ]


PAGES: dict[str, tuple[str, Callable[[Storage, Filters], list[Section]]]] = {
    "firing": ("Firing and alarms", firing_sections),
    "outcomes": ("Outcomes", outcome_sections),
    "overrides": ("Overrides and comments", override_sections),
    "timing": ("Timing and burden", timing_sections),
    "versions": ("Content versions", version_sections),
}


def page_context(page: str) -> tuple[Filters, Choices, list[Section]]:
    storage = current_services().storage
    choices = queries.choices(storage)
    filters = read_filters(choices)
    return filters, choices, PAGES[page][1](storage, filters)


@blueprint.get("", defaults={"page": "firing"})
@blueprint.get("/<page>")
def show(page: str) -> str:
    if page not in PAGES:
        abort(404)
    filters, choices, sections = page_context(page)
    extra: dict[str, Any] = {}
    if page == "overrides":
        unread_only = request.args.get("comments", "unread") != "all"
        found, unread = queries.comments(current_services().storage, filters, unread_only)
        extra = {"comments": found, "unread": unread, "unread_only": unread_only}
    return render_template(
        "analytics.html",
        page=page,
        pages=PAGES,
        title=PAGES[page][0],
        sections=sections,
        filters=filters,
        choices=choices,
        query=filter_query(filters),
        ehr_label=ehr_label,
        shown=shown,
        **extra,
    )


@blueprint.get("/<page>.csv")
def export(page: str) -> Response:
    if page not in PAGES:
        abort(404)
    filters, _choices, sections = page_context(page)
    name = request.args.get("table", "")
    table = next((s.table for s in sections if s.table.name == name), None)
    if table is None:
        abort(404, description=f"The page '{page}' has no table '{name}'.")
    filename = f"lbp-cds-{page}-{name}-{filters.first}-{filters.last}.csv"
    return Response(
        as_csv(table),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@blueprint.post("/comments/read")
def mark_read() -> Response:
    """Mark the checked comments read (the form carries the CSRF token: web/staff.py checks it)."""
    try:
        ids = [int(value) for value in request.form.getlist("comment")]
    except ValueError:
        abort(400, description="A comment to mark read is named by its number.")
    queries.mark_read(current_services().storage, ids, datetime.now(UTC))
    back = {key: request.args[key] for key in (*FILTER_KEYS, "comments") if request.args.get(key)}
    target = url_for("analytics.show", page="overrides") + ("?" + urlencode(back) if back else "") + "#comments"
    return redirect(target, code=303)  # type: ignore[return-value]
