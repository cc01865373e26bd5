"""Analytics (issue 19): what each issued card rests on, without PHI; feedback's accepted suggestion kind and
its card's issue time, whether it is the card's first (of its outcome); comments marked read; daily counts of
hook calls, cards and cards per clinician.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def ehr() -> tuple[sa.Column[str], sa.Column[str]]:
    """The EHR part of a daily count's key ("" when absent)."""
    return sa.Column("issuer", sa.String(300), primary_key=True), sa.Column("tenant", sa.String(300), primary_key=True)


def upgrade() -> None:
    with op.batch_alter_table("issued_cards") as table:
        table.add_column(sa.Column("hook", sa.String(40), nullable=True))
        table.add_column(sa.Column("issuer", sa.Text(), nullable=True))
        table.add_column(sa.Column("tenant", sa.Text(), nullable=True))
        table.add_column(sa.Column("judgement", sa.String(40), nullable=True))
        table.add_column(sa.Column("clinician_key", sa.String(64), nullable=True))
        table.add_column(sa.Column("clinician_key_id", sa.String(32), nullable=True))
        table.add_column(sa.Column("suggestion_kinds", sa.JSON(), nullable=True))
    with op.batch_alter_table("feedback") as table:
        table.add_column(sa.Column("accepted_kind", sa.String(40), nullable=True))
        table.add_column(sa.Column("card_issued_at", sa.DateTime(), nullable=True))
        table.add_column(sa.Column("content_version", sa.String(64), nullable=True))
        table.add_column(sa.Column("comment_read_at", sa.DateTime(), nullable=True))
        table.add_column(sa.Column("first_of_card", sa.Boolean(), nullable=True))
        table.add_column(sa.Column("first_of_outcome", sa.Boolean(), nullable=True))
    op.create_index("ix_feedback_issuer_time", "feedback", ["issuer", "tenant", "outcome_timestamp"])
    op.create_index("ix_feedback_card_issued_at", "feedback", ["card_issued_at"])
    op.create_table(
        "card_days",
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("service_id", sa.String(100), primary_key=True),
        sa.Column("topic", sa.String(100), primary_key=True),
        sa.Column("hook", sa.String(40), primary_key=True),
        sa.Column("content_version", sa.String(64), primary_key=True),
        sa.Column("judgement", sa.String(40), primary_key=True),
        *ehr(),
        sa.Column("cards", sa.Integer(), nullable=False),
    )
    op.create_table(
        "call_days",
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("service_id", sa.String(100), primary_key=True),
        sa.Column("hook", sa.String(40), primary_key=True),
        sa.Column("content_version", sa.String(64), primary_key=True),
        *ehr(),
        sa.Column("calls", sa.Integer(), nullable=False),
    )
    op.create_table(
        "clinician_days",
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("clinician_key", sa.String(64), primary_key=True),
        *ehr(),
        sa.Column("cards", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("clinician_days")
    op.drop_table("call_days")
    op.drop_table("card_days")
    op.drop_index("ix_feedback_card_issued_at", "feedback")
    op.drop_index("ix_feedback_issuer_time", "feedback")
    with op.batch_alter_table("feedback") as table:
        for name in (
            "first_of_outcome",
            "first_of_card",
            "comment_read_at",
            "content_version",
            "card_issued_at",
            "accepted_kind",
        ):
            table.drop_column(name)
    with op.batch_alter_table("issued_cards") as table:
        for name in ("suggestion_kinds", "clinician_key_id", "clinician_key", "judgement", "tenant", "issuer", "hook"):
            table.drop_column(name)
