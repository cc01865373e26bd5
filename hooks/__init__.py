"""The clinical decisions, one module per CDS service. Nothing here knows about HTTP."""

from hooks import appointment_book, patient_view, referral_select, referral_sign
from hooks.service import ServiceDefinition

SERVICES: tuple[ServiceDefinition, ...] = (
    referral_select.SERVICE,
    referral_sign.SERVICE,
    patient_view.SERVICE,
    appointment_book.SERVICE,
)
