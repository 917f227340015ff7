"""Why a run failed (its step and error), shown in the case list (issue 22: live status).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04

Written out by hand, like 0001, so that it stays what it was when the models change.
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("reason", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("reason")
