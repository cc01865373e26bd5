"""Prior Notifications (QuestionnaireResponses filed by spine surgical practices) and their form links.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "prior_notifications",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("submission_key", sa.String(64), nullable=False),
        sa.Column("questionnaire", sa.Text(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("issuer", sa.Text(), nullable=True),
        sa.Column("tenant", sa.Text(), nullable=True),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("appointment_id", sa.String(64), nullable=True),
        sa.Column("form_context_id", sa.String(36), nullable=True),
        sa.Column("member_name", sa.Text(), nullable=True),
        sa.Column("member_birth_date", sa.Date(), nullable=True),
        sa.Column("member_id", sa.Text(), nullable=True),
        sa.Column("practice_name", sa.Text(), nullable=True),
        sa.Column("practice_npi", sa.String(10), nullable=True),
        sa.Column("surgeon_name", sa.Text(), nullable=True),
        sa.Column("surgeon_npi", sa.String(10), nullable=True),
        sa.Column("visit_date", sa.Date(), nullable=True),
        sa.Column("diagnosis_code", sa.String(16), nullable=True),
        sa.Column("msc_done", sa.Boolean(), nullable=True),
        sa.Column("msc_date", sa.Date(), nullable=True),
        sa.Column("msc_not_done_reason", sa.String(64), nullable=True),
        sa.Column("attester_name", sa.Text(), nullable=True),
        sa.Column("submitted_via", sa.String(16), nullable=False),
        sa.Column("submitted_at", sa.DateTime(), nullable=False),
        sa.Column("filed_on", sa.Date(), nullable=False),
        sa.Column("response", sa.JSON(), nullable=False),
        sa.UniqueConstraint("submission_key", name="uq_prior_notifications_submission_key"),
    )
    op.create_index("ix_prior_notifications_submitted_at", "prior_notifications", ["submitted_at"])
    op.create_index("ix_prior_notifications_patient", "prior_notifications", ["patient_id", "filed_on"])
    op.create_table(
        "pn_form_contexts",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("issuer", sa.Text(), nullable=True),
        sa.Column("tenant", sa.Text(), nullable=True),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("appointment_id", sa.String(64), nullable=True),
        sa.Column("prefill", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_pn_form_contexts_expires_at", "pn_form_contexts", ["expires_at"])


def downgrade() -> None:
    op.drop_table("pn_form_contexts")
    op.drop_table("prior_notifications")
