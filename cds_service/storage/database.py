"""Durable storage (SQLAlchemy Core): issued cards, card feedback, the JWT replay store, Prior Notifications.

SQLite is the embedded default; PostgreSQL serves deployments with several replicas. The schema is
managed by Alembic (cds_service/migrations) and brought to head at start-up.
"""

from __future__ import annotations

import fcntl
import json
import logging
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import msgspec
import orjson
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    DateTime,
    Dialect,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    select,
    text,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.sql.dml import Insert

from cds_service.errors import BadRequest, StorageUnavailable
from cds_service.settings import DATA_ROOT, SettingsError

log = logging.getLogger("lbp_cds")

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
CONNECT_TIMEOUT_SECONDS = 3  # a hook call must not hang on an unreachable database
REPLAY_CLEANUP_EVERY_SECONDS = 60.0
MIGRATION_LOCK_KEY = 0x1B9C_D500  # pg_advisory_xact_lock key: one migrating process at a time
# Errors that mean "the database cannot be reached or is busy right now", as opposed to a bug.
UNAVAILABLE_ERRORS = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)


class UtcDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out; stored as naive UTC so SQLite and PostgreSQL agree."""

    impl = DateTime(timezone=False)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("UtcDateTime needs a timezone-aware datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


metadata = MetaData()

issued_cards = Table(
    "issued_cards",
    metadata,
    Column("card_uuid", String(36), primary_key=True),
    Column("service_id", String(100), nullable=False),
    Column("topic", String(100), nullable=False),
    Column("content_version", String(64), nullable=False),
    Column("issued_at", UtcDateTime, nullable=False, index=True),
    # For analytics (revision 0004), no PHI: which hook and EHR (JWT issuer and tenant), the judgement the
    # card rests on, a keyed pseudonym of the clinician (and which key made it), each suggestion's kind.
    Column("hook", String(40), nullable=True),
    Column("issuer", Text, nullable=True),
    Column("tenant", Text, nullable=True),
    Column("judgement", String(40), nullable=True),
    Column("clinician_key", String(64), nullable=True),
    Column("clinician_key_id", String(32), nullable=True),
    Column("suggestion_kinds", JSON, nullable=True),  # suggestion uuid → kind (msc-swap, pt-referral…)
)

feedback = Table(
    "feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("service_id", String(100), nullable=False),
    Column("card_uuid", String(36), nullable=False),
    Column("topic", String(100), nullable=True),  # NULL: the card uuid was never recorded as issued
    Column("outcome", String(20), nullable=False),
    Column("accepted_suggestions", JSON, nullable=False),  # list of suggestion uuids
    Column("override_code", Text, nullable=True),
    Column("override_system", Text, nullable=True),
    Column("override_display", Text, nullable=True),
    Column("user_comment", Text, nullable=True),
    Column("outcome_timestamp", UtcDateTime, nullable=False, index=True),
    Column("received_at", UtcDateTime, nullable=False),
    Column("issuer", Text, nullable=True),
    Column("tenant", Text, nullable=True),
    # Revision 0004: copied from the issued card when it is recorded (so analytics reads feedback alone),
    # and when a reviewer marked the comment read.
    Column("accepted_kind", String(40), nullable=True),
    Column("card_issued_at", UtcDateTime, nullable=True),
    Column("content_version", String(64), nullable=True),
    Column("comment_read_at", UtcDateTime, nullable=True),
    # The card's first feedback, and its first of this outcome: analytics counts cards without DISTINCT.
    Column("first_of_card", Boolean, nullable=True),
    Column("first_of_outcome", Boolean, nullable=True),
    UniqueConstraint("card_uuid", "outcome", "outcome_timestamp", name="uq_feedback_card_outcome_time"),
)
Index("ix_feedback_issuer_time", feedback.c.issuer, feedback.c.tenant, feedback.c.outcome_timestamp)
Index("ix_feedback_card_issued_at", feedback.c.card_issued_at)  # analytics: feedback on the cards of a period

# Daily counts kept beside the rows (revision 0004), so that a dashboard over a year of a large plan reads
# thousands of rows, not millions. Absent issuer/tenant are stored as "" (part of the key). Days are UTC.
NO_EHR = ""
card_days = Table(
    "card_days",
    metadata,
    Column("day", Date, primary_key=True),
    Column("service_id", String(100), primary_key=True),
    Column("topic", String(100), primary_key=True),
    Column("hook", String(40), primary_key=True),
    Column("content_version", String(64), primary_key=True),
    Column("judgement", String(40), primary_key=True),
    Column("issuer", String(300), primary_key=True),
    Column("tenant", String(300), primary_key=True),
    Column("cards", Integer, nullable=False),
)
call_days = Table(
    "call_days",
    metadata,
    Column("day", Date, primary_key=True),
    Column("service_id", String(100), primary_key=True),
    Column("hook", String(40), primary_key=True),
    Column("content_version", String(64), primary_key=True),
    Column("issuer", String(300), primary_key=True),
    Column("tenant", String(300), primary_key=True),
    Column("calls", Integer, nullable=False),
)
clinician_days = Table(
    "clinician_days",
    metadata,
    Column("day", Date, primary_key=True),
    Column("clinician_key", String(64), primary_key=True),
    Column("issuer", String(300), primary_key=True),
    Column("tenant", String(300), primary_key=True),
    Column("cards", Integer, nullable=False),
)

jwt_replay = Table(
    "jwt_replay",
    metadata,
    Column("token_id", String(64), primary_key=True),  # sha256 of issuer and jti: bounded size
    Column("expires_at", UtcDateTime, nullable=False, index=True),
)


# Prior Notifications filed by spine surgical practices: each a FHIR QuestionnaireResponse (`response`),
# with the answers the service reads in columns. `issuer`/`tenant` are the EHR's (its JWT), so a patient
# id is only ever compared within the EHR that sent it. `submission_key` makes resubmission idempotent.
prior_notifications = Table(
    "prior_notifications",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("submission_key", String(64), nullable=False),
    Column("questionnaire", Text, nullable=False),
    Column("status", String(20), nullable=False),
    Column("issuer", Text, nullable=True),
    Column("tenant", Text, nullable=True),
    Column("patient_id", String(64), nullable=False),
    Column("appointment_id", String(64), nullable=True),
    Column("form_context_id", String(36), nullable=True),
    Column("member_name", Text, nullable=True),
    Column("member_birth_date", Date, nullable=True),
    Column("member_id", Text, nullable=True),
    Column("practice_name", Text, nullable=True),
    Column("practice_npi", String(10), nullable=True),
    Column("surgeon_name", Text, nullable=True),
    Column("surgeon_npi", String(10), nullable=True),
    Column("visit_date", Date, nullable=True),
    Column("diagnosis_code", String(16), nullable=True),
    Column("msc_done", Boolean, nullable=True),
    Column("msc_date", Date, nullable=True),
    Column("msc_not_done_reason", String(64), nullable=True),
    Column("attester_name", Text, nullable=True),
    Column("submitted_via", String(16), nullable=False),  # api | web-form
    Column("submitted_at", UtcDateTime, nullable=False, index=True),
    Column("filed_on", Date, nullable=False),  # the program's day it was filed (the clinical clock's today)
    Column("response", JSON, nullable=False),  # the latest version
    # Corrections amend the record in place: its version counts them, the earlier versions are kept in
    # prior_notification_versions, and the day of the latest correction is the program's day.
    Column("version", Integer, nullable=False, server_default="1"),
    Column("amended_at", UtcDateTime, nullable=True),
    Column("amended_on", Date, nullable=True),
    UniqueConstraint("submission_key", name="uq_prior_notifications_submission_key"),
    Index("ix_prior_notifications_patient", "patient_id", "filed_on"),
    # One record per form link: a second submission from it is a correction or nothing, never a second
    # record (a unique index, so two concurrent submissions cannot both insert).
    Index("uq_prior_notifications_form_context", "form_context_id", unique=True),
)

# The earlier versions of amended Prior Notifications, each as it was before a correction replaced it.
prior_notification_versions = Table(
    "prior_notification_versions",
    metadata,
    Column("record_id", String(36), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("status", String(20), nullable=False),
    Column("stored_at", UtcDateTime, nullable=False),  # when this version was filed (or its correction stored)
    Column("stored_on", Date, nullable=False),  # the program's day of that
    Column("response", JSON, nullable=False),
)

# What a Prior Notification form link refers to: the pre-filled answers and who the form is for, kept
# here so that the link carries only a signed, expiring id (no patient data in the URL).
pn_form_contexts = Table(
    "pn_form_contexts",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("issuer", Text, nullable=True),
    Column("tenant", Text, nullable=True),
    Column("patient_id", String(64), nullable=False),
    Column("appointment_id", String(64), nullable=True),
    Column("prefill", JSON, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False, index=True),
)


class IssuedCard(msgspec.Struct, frozen=True):
    card_uuid: str
    service_id: str
    topic: str
    content_version: str
    issued_at: datetime
    hook: str | None = None
    issuer: str | None = None
    tenant: str | None = None
    judgement: str | None = None
    clinician_key: str | None = None
    clinician_key_id: str | None = None
    suggestion_kinds: Mapping[str, str] | None = None

    def values(self) -> tuple[Any, ...]:
        """Its columns' values in ISSUED_CARD_COLUMNS' order, the time as UtcDateTime stores it (naive UTC)."""
        at = self.issued_at.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
        return (
            self.card_uuid,
            self.service_id,
            self.topic,
            self.content_version,
            at,
            self.hook,
            self.issuer,
            self.tenant,
            self.judgement,
            self.clinician_key,
            self.clinician_key_id,
            dict(self.suggestion_kinds) if self.suggestion_kinds is not None else None,
        )


class HookCall(msgspec.Struct, frozen=True):
    """One answered hook call, for analytics: counted per day whether or not it issued cards."""

    service_id: str
    hook: str
    content_version: str
    at: datetime
    issuer: str | None = None
    tenant: str | None = None
    clinician_key: str | None = None
    cards: tuple[IssuedCard, ...] = ()


@dataclass(frozen=True)
class FeedbackEntry:
    service_id: str
    card_uuid: str
    outcome: str
    accepted_suggestions: tuple[str, ...]
    override_code: str | None
    override_system: str | None
    override_display: str | None
    user_comment: str | None
    outcome_timestamp: datetime
    received_at: datetime
    issuer: str | None
    tenant: str | None


def resolve_url(raw: str) -> URL:
    """Parse CDS_DATABASE_URL; a relative SQLite path is under DATA_ROOT (the repository root in a checkout,
    the user data folder when installed)."""
    try:
        url = make_url(raw)
    except sa_exc.ArgumentError as error:
        raise SettingsError(f"CDS_DATABASE_URL={raw!r}: {error}") from None
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise SettingsError(f"CDS_DATABASE_URL: {url.get_backend_name()} is not supported (sqlite or postgresql)")
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        path = Path(url.database)
        if not path.is_absolute():
            path = DATA_ROOT / path
        url = url.set(database=str(path))
    return url


def make_engine(raw_url: str) -> Engine:
    url = resolve_url(raw_url)
    # hide_parameters: an error's message and traceback never carry the values bound to a statement
    # (comments, tenants): logs say which statement failed, not with what.
    common: dict[str, Any] = {"hide_parameters": True, "json_serializer": json_text}
    if url.get_backend_name() == "sqlite":
        args: dict[str, Any] = {} if "timeout" in url.query else {"timeout": CONNECT_TIMEOUT_SECONDS}
        engine = create_engine(url, connect_args=args, **common)
        event.listen(engine, "connect", use_wal)
        return engine
    args = {} if "connect_timeout" in url.query else {"connect_timeout": CONNECT_TIMEOUT_SECONDS}
    return create_engine(url, connect_args=args, pool_pre_ping=True, **common)


def json_text(value: Any) -> str:
    """JSON columns' text, by orjson: the standard library's encoder was a sixth of storing an issued card.
    Reading stays the standard library's: orjson.loads copies a str to UTF-8 first, and the records search over
    forms with their attachments then peaked at 77 MiB of memory instead of 19 (tests/test_security_round2.py).
    What orjson declines (an integer beyond 64 bits in a submitted form) is written by the standard library."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value)


def dialect_insert(dialect: str, table: Table) -> sqlite.Insert | postgresql.Insert:
    """An INSERT that can take ON CONFLICT: SQLite's or PostgreSQL's."""
    return sqlite.insert(table) if dialect == "sqlite" else postgresql.insert(table)


@cache
def adding_counts(dialect: str, table: Table, column: str) -> Insert:
    """INSERT a day's count, or add it to the one stored: built once (each batch built it again, a sixth of the
    writer's CPU)."""
    insert = dialect_insert(dialect, table)
    keys = [c.name for c in table.primary_key.columns]
    return insert.on_conflict_do_update(index_elements=keys, set_={column: table.c[column] + insert.excluded[column]})


def issued_cards_json(cards: Sequence[IssuedCard]) -> str:
    """The cards as ISSUED_CARDS_FROM_JSON reads them: each a JSON array of its columns, the time as naive UTC
    (what UtcDateTime stores), the suggestion kinds as JSON (null when there are none, as the JSON column
    stores None)."""
    return orjson.dumps([card.values() for card in cards], option=orjson.OPT_NON_STR_KEYS).decode()


def use_wal(dbapi_connection: Any, _record: Any) -> None:
    # Several workers share the file: WAL lets them read while one writes.
    dbapi_connection.execute("PRAGMA journal_mode=WAL")


# The issued cards of a batch, inserted by one statement from one JSON array (a row per card, the columns in
# ISSUED_CARD_COLUMNS' order), which the database unpacks: a row at a time through the driver, each row's
# parameters were processed by SQLAlchemy and each let go of the GIL, which under load cost the writer about
# twice its CPU and the hook calls a thread switch each (BENCHMARKS.md, "The serving stack", round 5). SQLite
# needs the WHERE to read ON CONFLICT as the upsert clause (its documentation, "Parsing Ambiguity").
ISSUED_CARD_COLUMNS = tuple(column.name for column in issued_cards.columns)
ISSUED_CARDS_FROM_JSON = {
    "sqlite": text(
        f"INSERT INTO issued_cards ({', '.join(ISSUED_CARD_COLUMNS)}) "
        f"SELECT {', '.join(f'value ->> {i}' for i in range(len(ISSUED_CARD_COLUMNS) - 1))}, value -> "
        f"{len(ISSUED_CARD_COLUMNS) - 1} FROM json_each(:rows) WHERE true ON CONFLICT DO NOTHING"
    ),
    "postgresql": text(
        f"INSERT INTO issued_cards ({', '.join(ISSUED_CARD_COLUMNS)}) "
        "SELECT row ->> 0, row ->> 1, row ->> 2, row ->> 3, (row ->> 4)::timestamp, "
        f"{', '.join(f'row ->> {i}' for i in range(5, len(ISSUED_CARD_COLUMNS) - 1))}, "
        f"row -> {len(ISSUED_CARD_COLUMNS) - 1} FROM json_array_elements(CAST(:rows AS json)) AS row "
        "ON CONFLICT DO NOTHING"
    ),
}


class Storage:
    def __init__(self, database_url: str) -> None:
        self.engine = make_engine(database_url)
        self._next_replay_cleanup = 0.0

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def migrate(self) -> None:
        """Bring the schema to the latest Alembic revision (the deploy step); safe when several run at once.

        An SQLite database's folder is created here, the first time: nothing else writes to the disk.
        """
        message = "The database cannot be reached to apply migrations."
        database = self.engine.url.database
        if self.dialect == "sqlite" and database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        with unavailable(message), self.migration_lock(), self.engine.begin() as connection:
            if self.dialect == "postgresql":
                connection.execute(select(text(f"pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")))
            if MigrationContext.configure(connection).get_current_revision() == head_revision():
                return
            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            log.info("database schema upgraded to %s", head_revision())

    @contextmanager
    def migration_lock(self) -> Iterator[None]:
        """SQLite has no advisory locks: a lock file beside the database serialises start-ups."""
        database = self.engine.url.database
        if self.dialect != "sqlite" or not database or database == ":memory:":
            yield
            return
        with open(f"{database}.migrate-lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def record_issued_cards(self, cards: Sequence[IssuedCard]) -> None:
        if not cards:
            return
        with unavailable("Issued cards could not be recorded."), self.engine.begin() as connection:
            self.insert_issued_cards(connection, cards)

    def record_hook_calls(self, calls: Sequence[HookCall]) -> None:
        """The cards of these calls, and the daily counts of calls, cards and cards per clinician, in one
        transaction (the counts added to those already stored)."""
        if not calls:
            return
        cards = [card for call in calls for card in call.cards]
        per_call: Counter[tuple[Any, ...]] = Counter()
        per_card: Counter[tuple[Any, ...]] = Counter()
        per_clinician: Counter[tuple[Any, ...]] = Counter()
        for call in calls:
            day, ehr = call.at.astimezone(UTC).date(), (call.issuer or NO_EHR, call.tenant or NO_EHR)
            per_call[(day, call.service_id, call.hook, call.content_version, *ehr)] += 1
            for card in call.cards:
                per_card[
                    (day, card.service_id, card.topic, call.hook, card.content_version, card.judgement or "", *ehr)
                ] += 1
            if call.clinician_key and call.cards:
                per_clinician[(day, call.clinician_key, *ehr)] += len(call.cards)
        with unavailable("Hook calls could not be recorded."), self.engine.begin() as connection:
            if cards:
                self.insert_issued_cards(connection, cards)
            self.add_counts(connection, call_days, "calls", per_call)
            self.add_counts(connection, card_days, "cards", per_card)
            self.add_counts(connection, clinician_days, "cards", per_clinician)

    def insert_issued_cards(self, connection: Connection, cards: Sequence[IssuedCard]) -> None:
        """One statement for all of them; a card already stored (a uuid seen before) is left as it is."""
        connection.execute(ISSUED_CARDS_FROM_JSON[self.dialect], {"rows": issued_cards_json(cards)})

    def add_counts(self, connection: Connection, table: Table, column: str, counts: Counter[tuple[Any, ...]]) -> None:
        if not counts:
            return
        keys = [c.name for c in table.primary_key.columns]
        rows = [{**dict(zip(keys, key, strict=True)), column: count} for key, count in counts.items()]
        connection.execute(adding_counts(self.dialect, table, column), rows)

    def record_feedback(self, entries: Sequence[FeedbackEntry]) -> list[tuple[str | None, str]]:
        """Store every entry with the topic of its card, in one transaction; duplicates are stored once.

        Returns (topic, outcome) of the entries that were new. Raises StorageUnavailable when nothing
        could be committed, and BadRequest (nothing stored) when an entry is about a card that another
        service issued: its feedback belongs to that service's endpoint.
        """
        message = "Feedback could not be stored right now; it was not recorded. Retry later."
        with unavailable(message), self.engine.begin() as connection:
            issued = self.issuers(connection, {entry.card_uuid for entry in entries})
            refuse_foreign_cards(entries, issued)
            rows = [{**asdict(entry), "accepted_suggestions": list(entry.accepted_suggestions)} for entry in entries]
            cards = self.cards_for_analytics(connection, set(issued))
            for row in rows:
                row["topic"] = issued[row["card_uuid"]][1] if row["card_uuid"] in issued else None
                row.update(analytics_columns(row, cards.get(row["card_uuid"])))
            seen = self.outcomes_on_record(connection, {row["card_uuid"] for row in rows})
            statement = self.insert_ignoring_duplicates(feedback).returning(feedback.c.id)
            new = []
            # One by one: a row returned is a new entry, none a duplicate (rowcount is unreliable for INSERT).
            for row in rows:
                row["first_of_card"] = not any(card == row["card_uuid"] for card, _outcome in seen)
                row["first_of_outcome"] = (row["card_uuid"], row["outcome"]) not in seen
                if connection.execute(statement, row).first():
                    seen.add((row["card_uuid"], row["outcome"]))
                    new.append((row["topic"], row["outcome"]))
            return new

    @staticmethod
    def outcomes_on_record(connection: Connection, card_uuids: set[str]) -> set[tuple[str, str]]:
        """(card, outcome) of the feedback already stored about these cards."""
        query = select(feedback.c.card_uuid, feedback.c.outcome).where(feedback.c.card_uuid.in_(card_uuids))
        return {(row.card_uuid, row.outcome) for row in connection.execute(query)}

    @staticmethod
    def issuers(connection: Connection, card_uuids: set[str]) -> dict[str, tuple[str, str]]:
        """The service and topic each of these cards was issued with (those recorded so far)."""
        query = select(issued_cards.c.card_uuid, issued_cards.c.service_id, issued_cards.c.topic).where(
            issued_cards.c.card_uuid.in_(card_uuids)
        )
        return {row.card_uuid: (row.service_id, row.topic) for row in connection.execute(query)}

    @staticmethod
    def cards_for_analytics(connection: Connection, card_uuids: set[str]) -> dict[str, Any]:
        """When each of these cards was issued, with which content, and the kinds of its suggestions."""
        if not card_uuids:
            return {}
        columns = issued_cards.c
        query = select(columns.card_uuid, columns.issued_at, columns.content_version, columns.suggestion_kinds)
        return {row.card_uuid: row for row in connection.execute(query.where(columns.card_uuid.in_(card_uuids)))}

    def first_use(self, token_id: str, expires_at: datetime) -> bool:
        """Remember a JWT id until it expires; False when it is already remembered (a replay)."""
        now = datetime.now(UTC)
        with unavailable("The JWT replay store cannot be reached."), self.engine.begin() as connection:
            expired = jwt_replay.c.expires_at < now
            if time.monotonic() >= self._next_replay_cleanup:
                connection.execute(delete(jwt_replay).where(expired))
                self._next_replay_cleanup = time.monotonic() + REPLAY_CLEANUP_EVERY_SECONDS
            else:
                connection.execute(delete(jwt_replay).where(jwt_replay.c.token_id == token_id, expired))
            statement = self.insert_ignoring_duplicates(jwt_replay).returning(jwt_replay.c.token_id)
            row = {"token_id": token_id, "expires_at": expires_at}
            return connection.execute(statement, row).first() is not None

    def insert_ignoring_duplicates(self, table: Table) -> Insert:
        return dialect_insert(self.dialect, table).on_conflict_do_nothing()

    def health(self) -> str:
        """ "ok", or what is wrong, for the readiness probe: unreachable, or the schema not migrated."""
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
                revision = self.schema_revision(connection)
        except Exception:  # any failure means "not ready", never an error page
            return "unreachable"
        if revision != head_revision():
            return f"schema at revision {revision or 'none'}, not {head_revision()}: run `flask --app wsgi db upgrade`"
        return "ok"

    @staticmethod
    def schema_revision(connection: Connection) -> str | None:
        """The Alembic revision the schema is at; None before the first migration."""
        try:
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except sa_exc.DatabaseError:  # no alembic_version table: never migrated
            return None

    def close(self) -> None:
        """Close the pooled connections (safe to call twice; a later use reconnects)."""
        self.engine.dispose()


def refuse_foreign_cards(entries: Sequence[FeedbackEntry], issued: dict[str, tuple[str, str]]) -> None:
    for index, entry in enumerate(entries):
        service = issued.get(entry.card_uuid, (entry.service_id, ""))[0]
        if service != entry.service_id:
            raise BadRequest(
                f"feedback/{index}/card: this card was issued by the service '{service}'; "
                f"send its feedback to /cds-services/{service}/feedback.",
                where=f"feedback/{index}/card (another service's card)",
            )


def analytics_columns(row: Mapping[str, Any], card: Any) -> dict[str, Any]:
    """What analytics reads from a feedback row alone: the kind of the first accepted suggestion, when and
    with which content its card was issued (None when the card was not recorded, or before revision 0004)."""
    if card is None:
        return {"accepted_kind": None, "card_issued_at": None, "content_version": None}
    kinds = card.suggestion_kinds or {}
    accepted = [kinds[uuid] for uuid in row["accepted_suggestions"] if uuid in kinds]
    return {
        "accepted_kind": accepted[0] if accepted else None,
        "card_issued_at": card.issued_at,
        "content_version": card.content_version,
    }


@contextmanager
def unavailable(message: str) -> Iterator[None]:
    """Turn "cannot reach the database" into a 503 the client retries; other database errors stay bugs."""
    try:
        yield
    except UNAVAILABLE_ERRORS as error:
        log.warning("database unavailable: %s (%s)", message, type(getattr(error, "orig", None) or error).__name__)
        raise StorageUnavailable(message) from error


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


@cache
def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()
