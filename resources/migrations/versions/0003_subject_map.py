"""The Admin-only subject map: pseudonym → subject_id as received.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03

Written out by hand, like 0001, so that it stays what it was when the models change.
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subject_map",
        sa.Column("pseudonym", sa.String(32), primary_key=True),
        sa.Column("subject_id", sa.String(128), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("subject_id", name="uq_subject_map_subject_id"),
    )


def downgrade() -> None:
    op.drop_table("subject_map")
