"""Service tokens of the gateway (scanners and scripts): hashed at rest, scoped, revocable.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04

Written out by hand, like 0001, so that it stays what it was when the models change.
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "service_tokens",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("scopes", sa.String(512), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True)),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.Column("revoked_by", sa.String(128)),
        sa.UniqueConstraint("token_hash", name="uq_service_tokens_token_hash"),
    )


def downgrade() -> None:
    op.drop_table("service_tokens")
