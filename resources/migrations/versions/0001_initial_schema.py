"""Initial schema: cases, runs, artifacts, metrics, QC, labels, reviews, users, audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-26

Written out by hand (not imported from db_models) so that this migration stays
what it was when later revisions change the models. ``audit_log`` is append-only
and ``labels`` rows are never overwritten: triggers refuse UPDATE and DELETE on
both, in SQLite and PostgreSQL alike.
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)
_APPEND_ONLY = ("audit_log", "labels")


def upgrade() -> None:
    op.create_table(
        "cases",
        sa.Column("case_id", sa.String(128), primary_key=True),
        sa.Column("subject_id", sa.String(128), index=True),
        sa.Column("eye", sa.String(2), index=True),
        sa.Column("location_h_deg", sa.Float),
        sa.Column("location_v_deg", sa.Float),
        sa.Column("eccentricity_deg", sa.Float),
        sa.Column("axial_length_mm", sa.Float),
        sa.Column("acquired_at", sa.String(64)),
        sa.Column("status", sa.String(32), nullable=False, index=True),
        sa.Column("content_hash", sa.String(64)),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
    )
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("case_id", sa.String(128), sa.ForeignKey("cases.case_id"), index=True),
        sa.Column("dagster_run_id", sa.String(64), index=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("started_at", _TS),
        sa.Column("finished_at", _TS),
        sa.Column("code_version", sa.String(64)),
        sa.Column("model_versions", sa.JSON),
    )
    op.create_table(
        "artifacts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.String(128), sa.ForeignKey("cases.case_id"), nullable=False, index=True),
        sa.Column("asset_key", sa.String(128), nullable=False),
        sa.Column("uri", sa.Text, nullable=False),
        sa.Column("content_hash", sa.String(64)),
        sa.Column("size_bytes", sa.Integer),
        sa.Column("run_id", sa.String(64)),
        sa.Column("created_at", _TS, nullable=False),
    )
    op.create_table(
        "metrics",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.String(128), sa.ForeignKey("cases.case_id"), nullable=False, index=True),
        sa.Column("structure", sa.String(32), nullable=False),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("value", sa.Float),
        sa.Column("unit", sa.String(32)),
        sa.Column("ci_low", sa.Float),
        sa.Column("ci_high", sa.Float),
        sa.Column("method", sa.Text),
        sa.Column("model_version", sa.String(128)),
        sa.Column("code_version", sa.String(64)),
        sa.Column("run_id", sa.String(64)),
        sa.Column("created_at", _TS, nullable=False),
    )
    op.create_table(
        "qc_results",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.String(128), sa.ForeignKey("cases.case_id"), nullable=False, index=True),
        sa.Column("check_name", sa.String(64), nullable=False),
        sa.Column("passed", sa.Boolean, nullable=False),
        sa.Column("severity", sa.String(8)),
        sa.Column("value", sa.Float),
        sa.Column("threshold", sa.Float),
        sa.Column("detail", sa.JSON),
        sa.Column("created_at", _TS, nullable=False),
    )
    op.create_table(
        "labels",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.String(128), sa.ForeignKey("cases.case_id"), nullable=False, index=True),
        sa.Column("structure", sa.String(32), nullable=False),
        sa.Column("annotator", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.UniqueConstraint("case_id", "structure", "annotator", "version",
                            name="uq_labels_case_structure_annotator_version"),
    )
    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.String(128), sa.ForeignKey("cases.case_id"), nullable=False, index=True),
        sa.Column("reviewer", sa.String(128), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("comment", sa.Text),
        sa.Column("created_at", _TS, nullable=False),
    )
    op.create_table(
        "users",
        sa.Column("username", sa.String(128), primary_key=True),
        sa.Column("name", sa.String(256)),
        sa.Column("email", sa.String(256)),
        sa.Column("password_hash", sa.String(256), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ts", _TS, nullable=False, index=True),
        sa.Column("actor", sa.String(128), nullable=False, index=True),
        sa.Column("action", sa.String(64), nullable=False, index=True),
        sa.Column("case_id", sa.String(128), index=True),
        sa.Column("model_version", sa.String(128)),
        sa.Column("detail", sa.JSON),
        sa.Column("allowed", sa.Boolean, nullable=False),
    )
    dialect = op.get_bind().dialect.name
    for table in _APPEND_ONLY:
        if dialect == "sqlite":
            for verb in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
                )
        elif dialect == "postgresql":
            op.execute(
                f"CREATE FUNCTION {table}_append_only() RETURNS trigger AS $$ BEGIN "
                f"RAISE EXCEPTION '{table} is append-only'; END; $$ LANGUAGE plpgsql"
            )
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                f"FOR EACH ROW EXECUTE FUNCTION {table}_append_only()"
            )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table in _APPEND_ONLY:
        if dialect == "postgresql":
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            op.execute(f"DROP FUNCTION IF EXISTS {table}_append_only()")
    for table in ("audit_log", "users", "reviews", "labels", "qc_results", "metrics",
                  "artifacts", "runs", "cases"):
        op.drop_table(table)
