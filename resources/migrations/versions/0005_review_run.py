"""Each review records the run whose results it decided on (issue 22: decisions that hold).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04

Written out by hand, like 0001, so that it stays what it was when the models change.
Reviews recorded before it keep ``run_id`` NULL: the run they were about is not known.
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("reviews") as batch:
        batch.add_column(sa.Column("run_id", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("reviews") as batch:
        batch.drop_column("run_id")
