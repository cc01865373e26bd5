"""The analytics dashboard's aggregates, computed in the database (SQLite or PostgreSQL).

Counts of calls and cards come from the daily count tables (card_days, call_days, clinician_days: thousands
of rows for a year of a large plan); outcomes, reasons, comments and times from the feedback table alone
(it carries its card's issue time and content version). The indexes these read are declared in database.py.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, delete, exists, func, literal, or_, select, true, update
from sqlalchemy.engine import Connection

from cds_service.observability.statistics import BASELINE_DAYS, Alarm, Day, alarms, control_chart
from cds_service.storage.database import (
    NO_EHR,
    Storage,
    call_days,
    card_days,
    clinician_days,
    feedback,
    issued_cards,
)

DEMO_ISSUER_SUFFIX = ".demo.invalid"  # demo-data's EHRs: never a real host (RFC 6761)
COMMENT_PAGE = 50
RECENT_DAYS = 28  # the alarms of the metrics look at the last four weeks (and their baseline)
NO_SUGGESTION = "no suggestion taken"  # accepted cards that offer none (PN, red flags), or none recorded
# Time from card to action, and cards per clinician per day: the buckets of their distributions.
ACTION_BUCKETS = ((60, "< 1 min"), (600, "1–10 min"), (3600, "10–60 min"), (86400, "1–24 h"), (604800, "1–7 days"))
ACTION_LAST = "> 7 days"
BURDEN_BUCKETS = ((1, "1"), (2, "2"), (3, "3"), (5, "4–5"), (10, "6–10"), (20, "11–20"))
BURDEN_LAST = "> 20"


@dataclass(frozen=True)
class Filters:
    """What the dashboard shows: whole UTC days from `first` to `last`, optionally one EHR, service, topic, version."""

    first: date
    last: date
    ehr: tuple[str, str] | None = None  # (issuer, tenant), "" for none
    service: str | None = None
    topic: str | None = None
    version: str | None = None

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first, time.min, UTC)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.last + timedelta(days=1), time.min, UTC)


def where(table: Any, filters: Filters, *, topic: bool = True, version: bool = True) -> ColumnElement[bool]:
    """The filters on one of the daily count tables (or on feedback, whose EHR columns may be NULL)."""
    conditions: list[ColumnElement[bool]] = []
    if filters.ehr is not None:
        issuer, tenant = filters.ehr
        if table is feedback:
            conditions += [
                func.coalesce(table.c.issuer, NO_EHR) == issuer,
                func.coalesce(table.c.tenant, NO_EHR) == tenant,
            ]
        else:
            conditions += [table.c.issuer == issuer, table.c.tenant == tenant]
    if filters.service:
        conditions.append(table.c.service_id == filters.service)
    if filters.topic and topic:
        conditions.append(table.c.topic == filters.topic)
    if filters.version and version:
        conditions.append(table.c.content_version == filters.version)
    return and_(true(), *conditions)


@dataclass(frozen=True)
class Choices:
    """What the filters offer: every EHR, service, topic and content version with cards on record."""

    ehrs: list[tuple[str, str]]
    services: list[str]
    topics: list[str]
    versions: list[tuple[str, date, date]]  # version, first and last day it issued cards
    first_day: date | None
    last_day: date | None


def choices(storage: Storage) -> Choices:
    c = card_days.c
    with storage.engine.connect() as connection:
        ehrs = [
            (i, t) for i, t in connection.execute(select(c.issuer, c.tenant).distinct().order_by(c.issuer, c.tenant))
        ]
        services = list(connection.scalars(select(c.service_id).distinct().order_by(c.service_id)))
        topics = list(connection.scalars(select(c.topic).distinct().order_by(c.topic)))
        versions_query = (
            select(c.content_version, func.min(c.day), func.max(c.day))
            .group_by(c.content_version)
            .order_by(func.min(c.day))
        )
        versions = [(v, first, last) for v, first, last in connection.execute(versions_query)]
        first, last = connection.execute(select(func.min(c.day), func.max(c.day))).one()
    return Choices(ehrs, services, topics, versions, first, last)


# --------------------------------------------------------------------------
# Firing: cards and calls per day
# --------------------------------------------------------------------------


def firing(storage: Storage, filters: Filters) -> dict[tuple[str, str], list[Day]]:
    """Per service × topic, every day with calls of that service (and BASELINE_DAYS before the first day):
    its cards and calls. A topic with no card on a day with calls is a 0 (that is what a stopped topic looks like)."""
    since = filters.first - timedelta(days=BASELINE_DAYS)
    cards_query = (
        select(card_days.c.service_id, card_days.c.topic, card_days.c.day, func.sum(card_days.c.cards))
        .where(card_days.c.day.between(since, filters.last), where(card_days, filters))
        .group_by(card_days.c.service_id, card_days.c.topic, card_days.c.day)
    )
    calls_query = (
        select(call_days.c.service_id, call_days.c.day, func.sum(call_days.c.calls))
        .where(call_days.c.day.between(since, filters.last), where(call_days, filters, topic=False))
        .group_by(call_days.c.service_id, call_days.c.day)
    )
    with storage.engine.connect() as connection:
        cards = {(s, t, d): int(n) for s, t, d, n in connection.execute(cards_query)}
        calls: dict[str, dict[date, int]] = defaultdict(dict)
        for service, day, n in connection.execute(calls_query):
            calls[service][day] = int(n)
    series: dict[tuple[str, str], list[Day]] = {}
    for service, topic in sorted({(s, t) for s, t, _d in cards}):
        series[(service, topic)] = [
            Day(day, cards.get((service, topic, day), 0), n) for day, n in sorted(calls[service].items())
        ]
    return series


def ongoing_alarms(storage: Storage, today: date) -> dict[tuple[str, str], list[Alarm]]:
    """Per service × topic with cards in the last weeks, the alarms that hold on its latest day with calls."""
    found: dict[tuple[str, str], list[Alarm]] = {}
    recent = Filters(today - timedelta(days=RECENT_DAYS), today)
    for key, days in firing(storage, recent).items():
        points = control_chart(days)
        latest = points[-1].day if points else None
        found[key] = [a for a in alarms(points) if a.until == latest]
    return found


# --------------------------------------------------------------------------
# Outcomes
# --------------------------------------------------------------------------


@dataclass
class OutcomeRow:
    service_id: str
    topic: str
    issued: int = 0
    accepted: int = 0
    overridden: int = 0
    with_feedback: int = 0

    @property
    def no_feedback(self) -> int:
        return max(0, self.issued - self.with_feedback)


def issued_cards_in(filters: Filters, *group: str) -> Any:
    c = card_days.c
    columns = [c[name] for name in group]
    return (
        select(*columns, func.sum(c.cards))
        .where(c.day.between(filters.first, filters.last), where(card_days, filters))
        .group_by(*columns)
    )


def feedback_on_cards_issued_in(filters: Filters) -> ColumnElement[bool]:
    """Feedback about the cards issued in the period (by its card's issue time)."""
    f = feedback.c
    return and_(f.card_issued_at >= filters.start, f.card_issued_at < filters.end, where(feedback, filters))


@dataclass(frozen=True)
class FeedbackGroup:
    """Feedback on the period's cards, counted by card (each card once, and once per outcome)."""

    service_id: str
    topic: str
    issuer: str
    tenant: str
    accepted_kind: str | None
    accepted: int
    overridden: int
    with_feedback: int


def counted(condition: ColumnElement[bool]) -> Any:
    return func.sum(case((condition, 1), else_=0))


def feedback_groups(storage: Storage, filters: Filters) -> list[FeedbackGroup]:
    """One pass over the feedback on the cards issued in the period (no DISTINCT: each entry knows whether it
    is its card's first, and the first of its outcome), grouped finely enough for the outcome mix, the
    suggestion kinds and the coverage per EHR."""
    f = feedback.c
    first = f.first_of_outcome.is_(True)
    issuer, tenant = func.coalesce(f.issuer, NO_EHR), func.coalesce(f.tenant, NO_EHR)
    keys = (f.service_id, func.coalesce(f.topic, "unknown"), issuer, tenant, f.accepted_kind)
    query = (
        select(
            *keys,
            counted(and_(f.outcome == "accepted", first)),
            counted(and_(f.outcome == "overridden", first)),
            counted(f.first_of_card.is_(True)),
        )
        .where(feedback_on_cards_issued_in(filters))
        .group_by(*keys)
    )
    with storage.engine.connect() as connection:
        return [FeedbackGroup(*row[:5], int(row[5]), int(row[6]), int(row[7])) for row in connection.execute(query)]


def outcomes(storage: Storage, filters: Filters, groups: list[FeedbackGroup]) -> list[OutcomeRow]:
    """Per service × topic: cards issued in the period, and how many of them were accepted, overridden, or got
    no feedback at all."""
    rows: dict[tuple[str, str], OutcomeRow] = {}
    with storage.engine.connect() as connection:
        for service, topic, n in connection.execute(issued_cards_in(filters, "service_id", "topic")):
            rows[(service, topic)] = OutcomeRow(service, topic, issued=int(n))
    for group in groups:
        row = rows.setdefault((group.service_id, group.topic), OutcomeRow(group.service_id, group.topic))
        row.accepted += group.accepted
        row.overridden += group.overridden
        row.with_feedback += group.with_feedback
    return sorted(rows.values(), key=lambda r: (r.service_id, r.topic))


def acceptance_by_kind(groups: list[FeedbackGroup]) -> tuple[list[tuple[str, int]], int]:
    """Accepted cards by the kind of suggestion taken (msc-swap, pt-referral…), most first, and all accepted."""
    kinds: dict[str, int] = defaultdict(int)
    for group in groups:
        if group.accepted:
            kinds[group.accepted_kind or NO_SUGGESTION] += group.accepted
    ranked = sorted(kinds.items(), key=lambda item: (-item[1], item[0]))
    return ranked, sum(kinds.values())


def override_reasons(storage: Storage, filters: Filters) -> list[tuple[str, str, int]]:
    """Override reasons, most frequent first: (code, display, count); no reason given is a row too."""
    f = feedback.c
    code = func.coalesce(f.override_code, "")
    display = func.coalesce(func.max(f.override_display), "")
    query = (
        select(code, display, func.count())
        .where(feedback_on_cards_issued_in(filters), f.outcome == "overridden")
        .group_by(code)
        .order_by(func.count().desc(), code)
    )
    with storage.engine.connect() as connection:
        return [(c or "(none given)", d, int(n)) for c, d, n in connection.execute(query)]


@dataclass(frozen=True)
class Comment:
    id: int
    at: datetime
    service_id: str
    topic: str
    reason: str
    comment: str
    read_at: datetime | None


def comments(storage: Storage, filters: Filters, unread_only: bool) -> tuple[list[Comment], int]:
    """Override comments to read, newest first (a page of them), and how many are unread in all."""
    f = feedback.c
    base = and_(f.user_comment.is_not(None), f.outcome_timestamp >= filters.start, f.outcome_timestamp < filters.end)
    base = and_(base, where(feedback, filters))
    shown = and_(base, f.comment_read_at.is_(None)) if unread_only else base
    query = (
        select(f.id, f.outcome_timestamp, f.service_id, f.topic, f.override_code, f.override_display, f.user_comment)
        .add_columns(f.comment_read_at)
        .where(shown)
        .order_by(f.outcome_timestamp.desc(), f.id.desc())
        .limit(COMMENT_PAGE)
    )
    with storage.engine.connect() as connection:
        found = [
            Comment(i, at, s, t or "unknown", d or c or "", text, read)
            for i, at, s, t, c, d, text, read in connection.execute(query)
        ]
        unread = connection.scalar(select(func.count()).where(base, f.comment_read_at.is_(None))) or 0
    return found, int(unread)


def mark_read(storage: Storage, comment_ids: list[int], at: datetime) -> int:
    """Mark these comments read (those not already); returns how many were."""
    if not comment_ids:
        return 0
    f = feedback.c
    statement = update(feedback).where(f.id.in_(comment_ids), f.comment_read_at.is_(None)).values(comment_read_at=at)
    with storage.engine.begin() as connection:
        return connection.execute(statement).rowcount


@dataclass(frozen=True)
class Coverage:
    issuer: str
    tenant: str
    issued: int
    with_feedback: int


def coverage(storage: Storage, filters: Filters, groups: list[FeedbackGroup]) -> list[Coverage]:
    """Per EHR: cards issued, and how many of them got any feedback (an EHR that sends none shows 0)."""
    got: dict[tuple[str, str], int] = defaultdict(int)
    for group in groups:
        got[(group.issuer, group.tenant)] += group.with_feedback
    with storage.engine.connect() as connection:
        issued = {(i, t): int(n) for i, t, n in connection.execute(issued_cards_in(filters, "issuer", "tenant"))}
    return [Coverage(i, t, n, got.get((i, t), 0)) for (i, t), n in sorted(issued.items())]


def seconds_between(later: Any, earlier: Any, dialect: str) -> Any:
    if dialect == "postgresql":
        return func.extract("epoch", later - earlier)
    return (func.julianday(later) - func.julianday(earlier)) * 86400.0


def time_to_action(storage: Storage, filters: Filters) -> list[tuple[str, int, int]]:
    """How long after the card the clinician acted: (bucket, accepted, overridden) for each bucket."""
    f = feedback.c
    seconds = seconds_between(f.outcome_timestamp, f.card_issued_at, storage.dialect)
    bucket = case(*((seconds < limit, literal(label)) for limit, label in ACTION_BUCKETS), else_=literal(ACTION_LAST))
    query = (
        select(bucket, f.outcome, func.count()).where(feedback_on_cards_issued_in(filters)).group_by(bucket, f.outcome)
    )
    counts: dict[tuple[str, str], int] = {}
    with storage.engine.connect() as connection:
        for label, outcome, n in connection.execute(query):
            counts[(label, outcome)] = int(n)
    labels = [label for _limit, label in ACTION_BUCKETS] + [ACTION_LAST]
    return [(label, counts.get((label, "accepted"), 0), counts.get((label, "overridden"), 0)) for label in labels]


@dataclass(frozen=True)
class Burden:
    buckets: list[tuple[str, int]]  # cards a clinician saw in a day → clinician-days
    clinician_days: int
    median: int | None
    p90: int | None


def burden(storage: Storage, filters: Filters) -> Burden:
    """Cards per clinician per day (days a clinician saw at least one card), filtered by period and EHR only."""
    c = clinician_days.c
    ehr = and_(c.issuer == filters.ehr[0], c.tenant == filters.ehr[1]) if filters.ehr else true()
    per_day = (
        select(c.day, c.clinician_key, func.sum(c.cards).label("cards"))
        .where(c.day.between(filters.first, filters.last), ehr)
        .group_by(c.day, c.clinician_key)
        .subquery()
    )
    query = select(per_day.c.cards, func.count()).group_by(per_day.c.cards).order_by(per_day.c.cards)
    with storage.engine.connect() as connection:
        histogram = [(int(cards), int(n)) for cards, n in connection.execute(query)]
    total = sum(n for _cards, n in histogram)
    buckets: dict[str, int] = {label: 0 for _limit, label in BURDEN_BUCKETS} | {BURDEN_LAST: 0}
    for cards, n in histogram:
        label = next((label for limit, label in BURDEN_BUCKETS if cards <= limit), BURDEN_LAST)
        buckets[label] += n
    return Burden(list(buckets.items()), total, quantile(histogram, total, 0.5), quantile(histogram, total, 0.9))


def quantile(histogram: list[tuple[int, int]], total: int, q: float) -> int | None:
    seen = 0
    for value, n in histogram:
        seen += n
        if seen >= q * total:
            return value
    return None


@dataclass
class VersionRow:
    version: str
    first_day: date | None = None
    last_day: date | None = None
    issued: int = 0
    accepted: int = 0
    overridden: int = 0


def versions(storage: Storage, filters: Filters) -> list[VersionRow]:
    """Per content version: the days it issued cards, the cards, and how many were accepted or overridden."""
    f, c = feedback.c, card_days.c
    by_version = (
        select(c.content_version, func.min(c.day), func.max(c.day), func.sum(c.cards))
        .where(c.day.between(filters.first, filters.last), where(card_days, filters))
        .group_by(c.content_version)
    )
    first = f.first_of_outcome.is_(True)
    acted = (
        select(
            f.content_version,
            counted(and_(f.outcome == "accepted", first)),
            counted(and_(f.outcome == "overridden", first)),
        )
        .where(feedback_on_cards_issued_in(filters))
        .group_by(f.content_version)
    )
    rows: dict[str, VersionRow] = {}
    with storage.engine.connect() as connection:
        for version, first, last, n in connection.execute(by_version):
            rows[version] = VersionRow(version, first, last, int(n))
        for version, accepted, overridden in connection.execute(acted):
            if version in rows:
                rows[version].accepted, rows[version].overridden = int(accepted), int(overridden)
    return sorted(rows.values(), key=lambda r: (r.first_day or date.min, r.version))


# --------------------------------------------------------------------------
# Retention and demo data
# --------------------------------------------------------------------------


def enforce_retention(storage: Storage, keep_days: int, now: datetime) -> dict[str, int]:
    """Delete issued cards, feedback and daily counts older than `keep_days` (by issue, outcome or count day)."""
    cutoff = now - timedelta(days=keep_days)
    statements = {
        "issued cards": delete(issued_cards).where(issued_cards.c.issued_at < cutoff),
        "feedback entries": delete(feedback).where(feedback.c.outcome_timestamp < cutoff),
        "daily card counts": delete(card_days).where(card_days.c.day < cutoff.date()),
        "daily call counts": delete(call_days).where(call_days.c.day < cutoff.date()),
        "daily clinician counts": delete(clinician_days).where(clinician_days.c.day < cutoff.date()),
    }
    with storage.engine.begin() as connection:
        return {what: connection.execute(statement).rowcount for what, statement in statements.items()}


def holds_real_cards(connection: Connection) -> bool:
    """Whether any issued card (or daily count) came from an EHR other than demo-data's."""
    not_demo = or_(issued_cards.c.issuer.is_(None), ~issued_cards.c.issuer.endswith(DEMO_ISSUER_SUFFIX))
    counted = or_(call_days.c.issuer == NO_EHR, ~call_days.c.issuer.endswith(DEMO_ISSUER_SUFFIX))
    return bool(
        connection.scalar(select(exists().where(not_demo))) or connection.scalar(select(exists().where(counted)))
    )
