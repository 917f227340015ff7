"""Review-app sessions (revocable, token stored hashed) and sign-in failure counters (lockout).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

Written out by hand, like 0001, so that it stays what it was when the models change.
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "ui_sessions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("username", sa.String(128), nullable=False, index=True),
        sa.Column("via", sa.String(16), nullable=False),
        sa.Column("client", sa.String(64)),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
        sa.Column("last_seen_at", _TS, nullable=False),
        sa.Column("revoked_at", _TS),
        sa.Column("revoked_reason", sa.String(32)),
        sa.Column("handoff_hash", sa.String(64)),
        sa.Column("handoff_expires_at", _TS),
        sa.UniqueConstraint("token_hash", name="uq_ui_sessions_token_hash"),
        sa.UniqueConstraint("handoff_hash", name="uq_ui_sessions_handoff_hash"),
    )
    op.create_table(
        "sign_in_failures",
        sa.Column("scope", sa.String(8), primary_key=True),
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("last_failure_at", _TS, nullable=False, index=True),
        sa.Column("locked_until", _TS),
    )


def downgrade() -> None:
    op.drop_table("sign_in_failures")
    op.drop_table("ui_sessions")
