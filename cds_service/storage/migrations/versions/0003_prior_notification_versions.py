"""Corrections to Prior Notifications: one record per form link, a version count, and the earlier versions.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Before this revision a form link could file several records. Each stays in the register, but only the
# earliest keeps its link, so that a link names one record (what the unique index below requires).
UNLINK_LATER_RECORDS_OF_A_LINK = """
UPDATE prior_notifications SET form_context_id = NULL
WHERE form_context_id IS NOT NULL AND EXISTS (
    SELECT 1 FROM prior_notifications AS earlier
    WHERE earlier.form_context_id = prior_notifications.form_context_id
    AND (earlier.submitted_at < prior_notifications.submitted_at
         OR (earlier.submitted_at = prior_notifications.submitted_at AND earlier.id < prior_notifications.id))
)
"""


def upgrade() -> None:
    op.add_column("prior_notifications", sa.Column("version", sa.Integer(), nullable=False, server_default="1"))
    op.add_column("prior_notifications", sa.Column("amended_at", sa.DateTime(), nullable=True))
    op.add_column("prior_notifications", sa.Column("amended_on", sa.Date(), nullable=True))
    op.execute(UNLINK_LATER_RECORDS_OF_A_LINK)
    op.create_index("uq_prior_notifications_form_context", "prior_notifications", ["form_context_id"], unique=True)
    op.create_table(
        "prior_notification_versions",
        sa.Column("record_id", sa.String(36), primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("stored_at", sa.DateTime(), nullable=False),
        sa.Column("stored_on", sa.Date(), nullable=False),
        sa.Column("response", sa.JSON(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("prior_notification_versions")
    op.drop_index("uq_prior_notifications_form_context", "prior_notifications")
    with op.batch_alter_table("prior_notifications") as batch:  # SQLite drops columns by copying the table
        batch.drop_column("amended_on")
        batch.drop_column("amended_at")
        batch.drop_column("version")
