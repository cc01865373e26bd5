"""The card feedback report: per service and topic, how often cards were issued, accepted and overridden."""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import and_, distinct, func, select, true
from sqlalchemy.sql.elements import ColumnElement

from cds_service.storage.database import Storage, feedback, issued_cards

UNKNOWN_TOPIC = "unknown"  # feedback about a card uuid that was never recorded as issued
TOP_REASONS = 3
Key = tuple[str, str]  # (service id, topic)


@dataclass
class ReportRow:
    service_id: str
    topic: str
    issued: int = 0
    accepted: int = 0
    overridden: int = 0
    reasons: list[tuple[str, int]] = field(default_factory=list)  # most frequent first

    @property
    def acceptance_rate(self) -> float | None:
        """Accepted among the cards a clinician acted on (ignored cards send no feedback)."""
        acted = self.accepted + self.overridden
        return self.accepted / acted if acted else None


def day_range(since: date | None, until: date | None) -> tuple[datetime | None, datetime | None]:
    """Whole UTC days, both ends included (until the last day of the calendar: no end at all)."""
    start = datetime.combine(since, time.min, UTC) if since else None
    end = datetime.combine(until + timedelta(days=1), time.min, UTC) if until and until < date.max else None
    return start, end


def within(column: ColumnElement[datetime], start: datetime | None, end: datetime | None) -> ColumnElement[bool]:
    conditions = [column >= start] if start else []
    conditions += [column < end] if end else []
    return and_(true(), *conditions)


def build_report(
    storage: Storage,
    since: date | None = None,
    until: date | None = None,
    reason_displays: Mapping[Key, str] | None = None,
) -> list[ReportRow]:
    """Feedback is counted by outcomeTimestamp, each card once per outcome, under the service and topic
    the card was issued with; `issued` counts the cards issued in the period and those (issued
    before or after it) that got feedback in it, so a row with feedback is never issued 0 times."""
    start, end = day_range(since, until)
    rows: dict[Key, ReportRow] = {}

    def row(service_id: str, topic: str | None) -> ReportRow:
        key = (service_id, topic or UNKNOWN_TOPIC)
        return rows.setdefault(key, ReportRow(*key))

    # Feedback can arrive before its card's issue record is written (another replica, a background
    # writer): the topic is then looked up at report time.
    with_issue = feedback.outerjoin(issued_cards, issued_cards.c.card_uuid == feedback.c.card_uuid)
    topic = func.coalesce(issued_cards.c.topic, feedback.c.topic, UNKNOWN_TOPIC)
    service = func.coalesce(issued_cards.c.service_id, feedback.c.service_id)
    in_range = within(feedback.c.outcome_timestamp, start, end)
    with_feedback = select(feedback.c.card_uuid).where(in_range)
    with storage.engine.connect() as connection:
        issued = select(issued_cards.c.service_id, issued_cards.c.topic, func.count()).group_by(
            issued_cards.c.service_id, issued_cards.c.topic
        )
        counted_issued = within(issued_cards.c.issued_at, start, end) | issued_cards.c.card_uuid.in_(with_feedback)
        for service_id, card_topic, count in connection.execute(issued.where(counted_issued)):
            row(service_id, card_topic).issued = count
        outcomes = (
            select(service, topic, feedback.c.outcome, func.count(distinct(feedback.c.card_uuid)))
            .select_from(with_issue)
            .where(in_range)
            .group_by(service, topic, feedback.c.outcome)
        )
        for service_id, card_topic, outcome, count in connection.execute(outcomes):
            setattr(row(service_id, card_topic), outcome, count)
        reasons = (
            select(
                service,
                topic,
                feedback.c.override_system,
                feedback.c.override_code,
                func.max(feedback.c.override_display),
                func.count(),
            )
            .select_from(with_issue)
            .where(in_range, feedback.c.outcome == "overridden", feedback.c.override_code.is_not(None))
            .group_by(service, topic, feedback.c.override_system, feedback.c.override_code)
        )
        counted: dict[Key, list[tuple[str, int]]] = defaultdict(list)
        for service_id, card_topic, system, code, display, count in connection.execute(reasons):
            label = display or (reason_displays or {}).get((system, code)) or code
            counted[(service_id, card_topic)].append((label, count))
    for key, found in counted.items():
        row(*key).reasons = sorted(found, key=lambda item: (-item[1], item[0]))[:TOP_REASONS]
    return sorted(rows.values(), key=lambda r: (r.service_id, r.topic))


HEADERS = ("service", "topic", "issued", "accepted", "overridden", "acceptance rate", "top override reasons")


def cells(row: ReportRow) -> tuple[str, ...]:
    rate = "-" if row.acceptance_rate is None else f"{row.acceptance_rate:.0%}"
    reasons = "; ".join(f"{label} ({count})" for label, count in row.reasons)
    return (row.service_id, row.topic, str(row.issued), str(row.accepted), str(row.overridden), rate, reasons)


def as_text(rows: Iterable[ReportRow]) -> str:
    table = [HEADERS, *(cells(row) for row in rows)]
    if len(table) == 1:
        return "No cards issued and no feedback in this period.\n"
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADERS))]
    numeric = {2, 3, 4, 5}

    def line(values: tuple[str, ...]) -> str:
        padded = (
            v.rjust(w) if i in numeric else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths, strict=True))
        )
        return "  ".join(padded).rstrip()

    ruler = "  ".join("-" * w for w in widths)
    return "\n".join([line(HEADERS), ruler, *(line(values) for values in table[1:])]) + "\n"


def as_csv(rows: Iterable[ReportRow]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["service", "topic", "issued", "accepted", "overridden", "acceptance_rate", "top_override_reasons"])
    for row in rows:
        rate = "" if row.acceptance_rate is None else f"{row.acceptance_rate:.4f}"
        reasons = "; ".join(f"{label} ({count})" for label, count in row.reasons)
        writer.writerow([row.service_id, row.topic, row.issued, row.accepted, row.overridden, rate, inert(reasons)])
    return out.getvalue()


# A spreadsheet opening the CSV would run a cell starting with one of these as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# A spreadsheet splits each line on its own list separator (a comma, a semicolon where the decimal mark is a
# comma, a tab, a bar, a space...), not the file's, and then the file's quotes protect nothing: text after any
# such character inside a cell may become a cell of its own, so a formula start there is made text too.
FORMULA_AFTER_SEPARATOR = re.compile(r"([,;|\s])(?=[=+\-@])")


def inert(text: str) -> str:
    """Text an EHR or a form sent, made safe to open in a spreadsheet, whatever its list separator: never read
    as a formula (a `'` before each formula start that begins the cell or follows a possible separator)."""
    text = FORMULA_AFTER_SEPARATOR.sub(r"\1'", text)
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text
