"""Coverage Information (Da Vinci CRD) as the rules decide it: what the program requires of a resource.

The program's money rule is Prior Notification: the spine surgical practice files a PN form before the
initial office visit for low back pain, or the visit claim is denied to provider liability. It is not
prior authorization. A CoverageAssertion says which resource the requirement is written on, against
which Coverage, and whether a PN is on file; cards/coverage.py turns it into the CRD
`ext-coverage-information` extension with the wording of guideline_data/crd.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import Enum

from hooks.model import Resource
from hooks.notifications import PriorNotificationOnFile, on_file_for


class PnState(Enum):
    """Where the Prior Notification requirement stands for one visit (or referral)."""

    REQUIRED = "pn-required"  # none on file: the practice must file one before the visit
    ON_FILE = "pn-on-file"  # filed within the window: nothing more is needed for this program
    UNCHECKED = "pn-unchecked"  # the records could not be read: CRD asks for "indeterminate"


@dataclass(frozen=True)
class CoverageAssertion:
    target: Resource  # the resource the extension is added to, as the EHR sent it
    coverage: str  # 'Coverage/id' the assertion is made against
    state: PnState
    on_file: PriorNotificationOnFile | None = None
    msc_expected: bool = False  # no MSC evaluation on record and the member is not exempt


def pn_state(
    notifications: tuple[PriorNotificationOnFile, ...] | None,
    *,
    appointment_id: str | None,
    npis: frozenset[str],
    today: date,
    window_days: int,
) -> tuple[PnState, PriorNotificationOnFile | None]:
    """REQUIRED, ON_FILE (with the PN that covers it) or UNCHECKED when the records are unknown."""
    if notifications is None:
        return PnState.UNCHECKED, None
    found = on_file_for(notifications, appointment_id=appointment_id, npis=npis, today=today, window_days=window_days)
    return (PnState.ON_FILE, found) if found is not None else (PnState.REQUIRED, None)
