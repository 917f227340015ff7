"""The labeling page's autosaved working copies (issue 22: a reload loses no edit).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04

Written out by hand, like 0001, so that it stays what it was when the models change.
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "label_drafts",
        sa.Column("case_id", sa.String(128), sa.ForeignKey("cases.case_id"), primary_key=True),
        sa.Column("structure", sa.String(32), primary_key=True),
        sa.Column("annotator", sa.String(128), primary_key=True),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("label_drafts")
