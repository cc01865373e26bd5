"""Prior Notification records (stored QuestionnaireResponses), their form links' contexts, and the export.

Storing is idempotent: a resubmission of the same response (same EHR, same content) finds the record
already stored and gets it back. A form link files one record: a different submission from it is refused
(AlreadyFiled) unless it is sent as a correction, which amends the record in place (its version counted,
each earlier version kept in prior_notification_versions), so everything that reads the record reads the
latest version. Reads on a hook call's path never wait long on a database that is
down: after a failure the store answers "unavailable" at once for a few seconds (the hook call then
says the records could not be checked), instead of every call waiting for a connection timeout.
"""

from __future__ import annotations

import csv
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime
from typing import Any, TextIO

from sqlalchemy import Select, and_, delete, func, insert, select, update
from sqlalchemy.engine import Row

from cds_service.errors import StorageUnavailable
from cds_service.storage.database import (
    Storage,
    pn_form_contexts,
    prior_notification_versions,
    prior_notifications,
    unavailable,
)
from cds_service.storage.report import day_range, inert, within
from hooks.notifications import PriorNotificationOnFile

log = logging.getLogger("lbp_cds")
# Rows fetched at a time: a search's rows may each hold megabytes of attachments; the export's are small.
SEARCH_ROWS_PER_FETCH = 2
EXPORT_ROWS_PER_FETCH = 1000
BACK_OFF_SECONDS = 10.0  # after a failed read on the hook path, how long to answer "unavailable" at once
CONTEXT_CLEANUP_EVERY_SECONDS = 600.0
# The columns of the export, in order (CSV header = these names).
EXPORT_COLUMNS = (
    "id",
    "submitted_at",
    "filed_on",
    "submitted_via",
    "issuer",
    "tenant",
    "patient_id",
    "appointment_id",
    "member_name",
    "member_birth_date",
    "member_id",
    "practice_name",
    "practice_npi",
    "surgeon_name",
    "surgeon_npi",
    "visit_date",
    "diagnosis_code",
    "msc_done",
    "msc_date",
    "msc_not_done_reason",
    "attester_name",
    "status",
    "version",  # 1, or how many versions corrections have made
    "amended_on",  # the program's day of the latest correction (empty: never corrected)
)


@dataclass(frozen=True)
class Scope:
    """The EHR a patient id belongs to: its JWT issuer and tenant (None, None without JWTs)."""

    issuer: str | None = None
    tenant: str | None = None


@dataclass(frozen=True)
class FormContext:
    """What a form link refers to: the patient and appointment it was opened for, and the pre-filled answers."""

    id: str
    scope: Scope
    patient_id: str
    appointment_id: str | None
    prefill: Mapping[str, Any]  # linkId → answer value (str, bool or a Coding)
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class PriorNotificationRecord:
    """One Prior Notification: the QuestionnaireResponse and the answers the service reads."""

    id: str
    submission_key: str
    questionnaire: str
    status: str
    scope: Scope
    patient_id: str
    appointment_id: str | None
    form_context_id: str | None
    submitted_via: str  # api | web-form
    submitted_at: datetime  # the instant it was stored (UTC)
    filed_on: date  # the program's day (the clinical clock's today): what the 90-day window counts
    response: Mapping[str, Any]
    fields: Mapping[str, Any] = field(default_factory=dict)  # member_name, practice_npi, visit_date, ...

    def row(self) -> dict[str, Any]:
        """Its columns; the response is stored as it is (asdict would deep-copy it, attachments and all)."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("scope", "fields")}
        return {**values, **self.fields, "issuer": self.scope.issuer, "tenant": self.scope.tenant}


class AlreadyFiled(Exception):
    """The form link already filed a Prior Notification (another one): correct that one instead."""

    def __init__(self, record_id: str) -> None:
        super().__init__(record_id)
        self.record_id = record_id


class CorrectedMeanwhile(Exception):
    """The record was corrected since the correction being sent was started from it."""

    def __init__(self, version: int) -> None:
        super().__init__(version)
        self.version = version


@dataclass(frozen=True)
class Correction:
    """A correction to a record: the amended response, its answers in columns, and the version it corrects."""

    record_id: str
    scope: Scope
    corrects_version: int
    response: Mapping[str, Any]
    fields: Mapping[str, Any]
    stored_at: datetime
    stored_on: date  # the program's day


@dataclass(frozen=True)
class EarlierVersion:
    version: int
    status: str
    stored_at: datetime
    stored_on: date


class PriorNotificationStore:
    def __init__(self, storage: Storage, back_off_seconds: float = BACK_OFF_SECONDS) -> None:
        self._storage = storage
        self._back_off = back_off_seconds
        self._down_until = 0.0
        self._next_cleanup = 0.0
        self._lock = threading.Lock()

    # --- the hook call's path: fail fast ---------------------------------------------------------

    def on_file(self, scope: Scope, patient_id: str, since: date) -> list[PriorNotificationOnFile]:
        """The patient's PNs filed since that day, in this EHR. Raises StorageUnavailable."""
        query = (
            select(
                prior_notifications.c.id,
                prior_notifications.c.filed_on,
                prior_notifications.c.practice_npi,
                prior_notifications.c.surgeon_npi,
                prior_notifications.c.appointment_id,
            )
            .where(in_scope(scope), prior_notifications.c.patient_id == patient_id)
            .where(prior_notifications.c.filed_on >= since)
        )
        with self.fast_fail("Prior Notifications could not be read."), self._storage.engine.connect() as connection:
            rows = connection.execute(query).all()
        return [
            PriorNotificationOnFile(
                record_id=row.id,
                filed_on=row.filed_on,
                practice_npi=row.practice_npi,
                clinician_npi=row.surgeon_npi,
                appointment_id=row.appointment_id,
            )
            for row in rows
        ]

    def save_form_context(self, context: FormContext) -> None:
        row = {
            "id": context.id,
            "issuer": context.scope.issuer,
            "tenant": context.scope.tenant,
            "patient_id": context.patient_id,
            "appointment_id": context.appointment_id,
            "prefill": dict(context.prefill),
            "created_at": context.created_at,
            "expires_at": context.expires_at,
        }
        with self.fast_fail("The form link could not be stored."), self._storage.engine.begin() as connection:
            if time.monotonic() >= self._next_cleanup:
                connection.execute(delete(pn_form_contexts).where(pn_form_contexts.c.expires_at < context.created_at))
                self._next_cleanup = time.monotonic() + CONTEXT_CLEANUP_EVERY_SECONDS
            connection.execute(insert(pn_form_contexts), row)

    # --- the form and the API: the caller answers 503 when the database is down --------------------

    def form_context(self, context_id: str, now: datetime) -> FormContext | None:
        query = select(pn_form_contexts).where(
            pn_form_contexts.c.id == context_id, pn_form_contexts.c.expires_at >= now
        )
        with unavailable("The form cannot be opened right now. Retry later."), self._storage.engine.connect() as c:
            row = c.execute(query).first()
        if row is None:
            return None
        return FormContext(
            id=row.id,
            scope=Scope(row.issuer, row.tenant),
            patient_id=row.patient_id,
            appointment_id=row.appointment_id,
            prefill=row.prefill,
            created_at=row.created_at,
            expires_at=row.expires_at,
        )

    def record(self, record: PriorNotificationRecord) -> tuple[Mapping[str, Any], bool]:
        """Store it unless the same submission is already stored; (the stored response, whether it is new).

        Raises AlreadyFiled when its form link has filed another record (one record per link: the unique
        index decides, so two concurrent submissions cannot both be stored). Returns only once committed;
        raises StorageUnavailable when it could not be.
        """
        message = "The Prior Notification could not be stored right now; it was not recorded. Retry later."
        with unavailable(message), self._storage.engine.begin() as connection:
            statement = self._storage.insert_ignoring_duplicates(prior_notifications).returning(
                prior_notifications.c.id
            )
            created = connection.execute(statement, record.row()).first() is not None
            if created:
                return record.response, True
            stored = connection.execute(
                select(prior_notifications.c.response).where(
                    prior_notifications.c.submission_key == record.submission_key
                )
            ).scalar_one_or_none()
            if stored is None:  # not this submission: the link's earlier one
                filed = connection.execute(
                    select(prior_notifications.c.id).where(
                        prior_notifications.c.form_context_id == record.form_context_id
                    )
                ).scalar_one()
                raise AlreadyFiled(filed)
        return stored, False

    def filed_from(self, context_id: str) -> Row[Any] | None:
        """The record a form link filed, if it has."""
        query = select(prior_notifications).where(prior_notifications.c.form_context_id == context_id)
        return self.read_one(query)

    def amend(
        self, correction: Correction, same_answers: Callable[[Mapping[str, Any], Mapping[str, Any]], bool]
    ) -> tuple[Mapping[str, Any], bool] | None:
        """Replace the record's answers with the correction's, keeping the version it replaces; (the stored
        response, whether it changed); None when there is no such record in that scope.

        A correction whose answers are those stored already (`same_answers(stored, corrected)`: a form sent
        twice) changes nothing. Raises CorrectedMeanwhile when the record is no longer at the version the
        correction started from, and StorageUnavailable when it could not be committed.
        """
        record = and_(prior_notifications.c.id == correction.record_id, in_scope(correction.scope))
        message = "The correction could not be stored right now; nothing was changed. Retry later."
        with unavailable(message), self._storage.engine.begin() as connection:
            # A write first: it locks the row (PostgreSQL) or the database (SQLite) for this transaction, so
            # that two corrections are applied one after the other, each to the version the other left.
            touched = connection.execute(
                update(prior_notifications).where(record).values(version=prior_notifications.c.version)
            )
            if touched.rowcount == 0:
                return None
            current = connection.execute(select(prior_notifications).where(record)).one()
            if same_answers(current.response, correction.response):
                return current.response, False
            if current.version != correction.corrects_version:
                raise CorrectedMeanwhile(current.version)
            connection.execute(
                insert(prior_notification_versions),
                {
                    "record_id": current.id,
                    "version": current.version,
                    "status": current.status,
                    "stored_at": current.amended_at or current.submitted_at,
                    "stored_on": current.amended_on or current.filed_on,
                    "response": current.response,
                },
            )
            connection.execute(
                update(prior_notifications)
                .where(record)
                .values(
                    **correction.fields,
                    status=str(correction.response["status"]),
                    response=dict(correction.response),
                    version=current.version + 1,
                    amended_at=correction.stored_at,
                    amended_on=correction.stored_on,
                )
            )
        return correction.response, True

    def earlier_versions(self, record_id: str) -> list[EarlierVersion]:
        """The versions a record had before its latest, oldest first."""
        query = (
            select(
                prior_notification_versions.c.version,
                prior_notification_versions.c.status,
                prior_notification_versions.c.stored_at,
                prior_notification_versions.c.stored_on,
            )
            .where(prior_notification_versions.c.record_id == record_id)
            .order_by(prior_notification_versions.c.version)
        )
        return [EarlierVersion(r.version, r.status, r.stored_at, r.stored_on) for r in self.read(query)]

    def earlier_version(self, record_id: str, version: int) -> Row[Any] | None:
        """One earlier version of a record (its response as it was then)."""
        query = select(prior_notification_versions).where(
            prior_notification_versions.c.record_id == record_id, prior_notification_versions.c.version == version
        )
        return self.read_one(query)

    def get(self, record_id: str, scope: Scope | None) -> Row[Any] | None:
        """A stored record; `scope` None: any EHR's (plan staff), else only that EHR's."""
        if not is_record_id(record_id):
            return None  # never stored, so never asked of the database
        query = select(prior_notifications).where(prior_notifications.c.id == record_id)
        if scope is not None:
            query = query.where(in_scope(scope))
        with (
            unavailable("Prior Notifications cannot be read right now. Retry later."),
            self._storage.engine.connect() as c,
        ):
            return c.execute(query).first()

    @contextmanager
    def search(
        self, scope: Scope | None, criteria: SearchCriteria, *, offset: int = 0, limit: int | None = None
    ) -> Iterator[Iterator[Row[Any]]]:
        """Records, newest first (then by id, so pages never overlap); dates are whole UTC days, both included.

        The rows are read a few at a time while the caller consumes them: a record may hold megabytes of
        attachments, so a search never holds them all at once.
        """
        query = matching(scope, criteria).order_by(prior_notifications.c.submitted_at.desc(), prior_notifications.c.id)
        with self.stream(query.offset(offset).limit(limit), SEARCH_ROWS_PER_FETCH) as rows:
            yield rows

    def count(self, scope: Scope | None, criteria: SearchCriteria) -> int:
        query = matching(scope, criteria).with_only_columns(func.count()).select_from(prior_notifications)
        return int(self.read(query)[0][0])

    def read_one(self, query: Select[Any]) -> Row[Any] | None:
        with (
            unavailable("Prior Notifications cannot be read right now. Retry later."),
            self._storage.engine.connect() as c,
        ):
            return c.execute(query).first()

    def read(self, query: Select[Any]) -> list[Row[Any]]:
        with (
            unavailable("Prior Notifications cannot be read right now. Retry later."),
            self._storage.engine.connect() as c,
        ):
            return list(c.execute(query).all())

    @contextmanager
    def stream(self, query: Select[Any], rows_per_fetch: int) -> Iterator[Iterator[Row[Any]]]:
        """The rows of `query`, fetched `rows_per_fetch` at a time (a server-side cursor on PostgreSQL)."""
        with (
            unavailable("Prior Notifications cannot be read right now. Retry later."),
            self._storage.engine.connect() as c,
        ):
            yield iter(c.execution_options(yield_per=rows_per_fetch).execute(query))

    @contextmanager
    def fast_fail(self, message: str) -> Iterator[None]:
        """StorageUnavailable at once while a recent failure is fresh; a new failure starts the back-off."""
        if time.monotonic() < self._down_until:
            raise StorageUnavailable(message)
        try:
            with unavailable(message):
                yield
        except StorageUnavailable:
            with self._lock:
                self._down_until = time.monotonic() + self._back_off
            raise


@dataclass(frozen=True)
class SearchCriteria:
    """What a records search asks for (None: any)."""

    patient_id: str | None = None
    since: date | None = None
    until: date | None = None


def matching(scope: Scope | None, criteria: SearchCriteria) -> Select[Any]:
    query = filtered(select(prior_notifications), criteria.since, criteria.until)
    if scope is not None:
        query = query.where(in_scope(scope))
    if criteria.patient_id is not None:
        query = query.where(prior_notifications.c.patient_id == criteria.patient_id)
    return query


def is_record_id(text: str) -> bool:
    """Record ids are UUIDs in their canonical form."""
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


def in_scope(scope: Scope) -> Any:
    """Null-safe equality on issuer and tenant (development, without JWTs, has neither)."""
    return and_(
        prior_notifications.c.issuer.is_not_distinct_from(scope.issuer),
        prior_notifications.c.tenant.is_not_distinct_from(scope.tenant),
    )


def filtered(query: Select[Any], since: date | None, until: date | None) -> Select[Any]:
    return query.where(within(prior_notifications.c.submitted_at, *day_range(since, until)))


def export_csv(storage: Storage, out: TextIO, since: date | None = None, until: date | None = None) -> int:
    """Write every Prior Notification (of every EHR) filed in the date range (filing days in the program's time
    zone) as CSV; returns how many.

    The one function behind the `pn-export` command, so that any command-line front end can call it.
    Raises StorageUnavailable when the database cannot be read.
    """
    columns = [prior_notifications.c[name] for name in EXPORT_COLUMNS]  # not the stored response itself
    # By filing day (filed_on: the program's day, the one the record page and the coverage information state).
    query = select(*columns)
    if since is not None:
        query = query.where(prior_notifications.c.filed_on >= since)
    if until is not None:
        query = query.where(prior_notifications.c.filed_on <= until)
    query = query.order_by(prior_notifications.c.submitted_at)  # as a register
    writer = csv.writer(out, lineterminator="\n")
    written = 0
    with PriorNotificationStore(storage).stream(query, EXPORT_ROWS_PER_FETCH) as rows:
        writer.writerow(EXPORT_COLUMNS)  # once the database answers
        for row in rows:  # written as read: the register may be long
            writer.writerow([cell(value) for value in row])
            written += 1
    return written


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, (date, bool)):
        return str(value).lower() if isinstance(value, bool) else value.isoformat()
    return inert(str(value))
