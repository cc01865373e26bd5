"""Prior Notifications on file, as the rules see them: a fact the pipeline reads from storage.

The rules never query the database: the pipeline reads the patient's PN records and hands them over
in PatientFacts (None when they could not be read, so a rule can tell "none on file" from "unknown").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta


@dataclass(frozen=True)
class PriorNotificationOnFile:
    """A Prior Notification the spine surgical practice filed (a stored QuestionnaireResponse)."""

    record_id: str
    filed_on: date  # the day it was stored (UTC)
    practice_npi: str | None = None
    clinician_npi: str | None = None
    appointment_id: str | None = None  # the Appointment the form was opened for, when filed from a card link


def on_file_for(
    notifications: Iterable[PriorNotificationOnFile],
    *,
    appointment_id: str | None,
    npis: frozenset[str],
    today: date,
    window_days: int,
) -> PriorNotificationOnFile | None:
    """The latest PN that covers this visit: filed within the window, for this appointment or practice.

    A PN filed from this appointment's own link always counts. Otherwise, when the visit names its
    practice or clinician by NPI, the PN must name one of them; when it names none, any PN of this
    patient (in this EHR) filed within the window counts: the practice cannot be told apart.
    """
    earliest = today - timedelta(days=window_days)
    candidates = [n for n in notifications if earliest <= n.filed_on <= today + timedelta(days=1)]
    matching = [n for n in candidates if covers(n, appointment_id, npis)]
    return max(matching, key=lambda n: n.filed_on, default=None)


def covers(notification: PriorNotificationOnFile, appointment_id: str | None, npis: frozenset[str]) -> bool:
    if appointment_id is not None and notification.appointment_id == appointment_id:
        return True
    if not npis:
        return True
    return bool({notification.practice_npi, notification.clinician_npi} & npis)
