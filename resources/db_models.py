"""Tables of the metadata DB (SQLAlchemy Core), the single source for alembic's autogenerate.

The schema itself is created only by the alembic migrations in ``resources/migrations``;
these definitions are what the code queries against. Times are timezone-aware UTC.
"""
from __future__ import annotations

from sqlalchemy import (JSON, Boolean, Column, DateTime, Float, ForeignKey, Integer, MetaData,
                        String, Table, Text, UniqueConstraint)

__all__ = ["metadata", "cases", "runs", "artifacts", "metrics", "qc_results", "labels",
           "reviews", "users", "audit_log", "ui_sessions", "sign_in_failures", "subject_map",
           "service_tokens", "ROLES",
           "REVIEW_DECISIONS", "SIGN_IN_SCOPES"]

ROLES = ("Researcher", "Tech", "Labeler", "ML Engineer", "Admin")
REVIEW_DECISIONS = ("approve", "reject")
SIGN_IN_SCOPES = ("user", "client")

metadata = MetaData(naming_convention={
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})


def _ts(name: str, **kw) -> Column:
    return Column(name, DateTime(timezone=True), **kw)


cases = Table(
    "cases", metadata,
    Column("case_id", String(128), primary_key=True),
    Column("subject_id", String(128), index=True),
    Column("eye", String(2), index=True),
    Column("location_h_deg", Float),
    Column("location_v_deg", Float),
    Column("eccentricity_deg", Float),
    Column("axial_length_mm", Float),
    Column("acquired_at", String(64)),
    Column("status", String(32), nullable=False, default="new", index=True),
    Column("content_hash", String(64)),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
)

runs = Table(
    "runs", metadata,
    Column("run_id", String(64), primary_key=True),
    Column("case_id", String(128), ForeignKey("cases.case_id"), index=True),
    Column("dagster_run_id", String(64), index=True),
    Column("status", String(32), nullable=False),
    _ts("started_at"),
    _ts("finished_at"),
    Column("code_version", String(64)),
    Column("model_versions", JSON),
    Column("reason", Text),   # why a failed run failed (step and error), for the case list
)

artifacts = Table(
    "artifacts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("case_id", String(128), ForeignKey("cases.case_id"), index=True, nullable=False),
    Column("asset_key", String(128), nullable=False),
    Column("uri", Text, nullable=False),
    Column("content_hash", String(64)),
    Column("size_bytes", Integer),
    Column("run_id", String(64)),
    _ts("created_at", nullable=False),
)

metrics = Table(
    "metrics", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("case_id", String(128), ForeignKey("cases.case_id"), index=True, nullable=False),
    Column("structure", String(32), nullable=False),
    Column("metric", String(64), nullable=False),
    Column("value", Float),
    Column("unit", String(32)),
    Column("ci_low", Float),
    Column("ci_high", Float),
    Column("method", Text),
    Column("model_version", String(128)),
    Column("code_version", String(64)),
    Column("run_id", String(64)),
    _ts("created_at", nullable=False),
)

qc_results = Table(
    "qc_results", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("case_id", String(128), ForeignKey("cases.case_id"), index=True, nullable=False),
    Column("check_name", String(64), nullable=False),
    Column("passed", Boolean, nullable=False),
    Column("severity", String(8)),
    Column("value", Float),
    Column("threshold", Float),
    Column("detail", JSON),
    _ts("created_at", nullable=False),
)

labels = Table(
    "labels", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("case_id", String(128), ForeignKey("cases.case_id"), index=True, nullable=False),
    Column("structure", String(32), nullable=False),
    Column("annotator", String(128), nullable=False),
    Column("version", Integer, nullable=False),
    Column("payload", JSON, nullable=False),
    _ts("created_at", nullable=False),
    UniqueConstraint("case_id", "structure", "annotator", "version",
                     name="uq_labels_case_structure_annotator_version"),
)

#: The labeling page's autosaved working copy, one per (case, structure, annotator): what a
#: reload or a lost tab would otherwise drop. Replaced on every edit, deleted on save/discard.
label_drafts = Table(
    "label_drafts", metadata,
    Column("case_id", String(128), ForeignKey("cases.case_id"), primary_key=True),
    Column("structure", String(32), primary_key=True),
    Column("annotator", String(128), primary_key=True),
    Column("payload", JSON, nullable=False),
    _ts("updated_at", nullable=False),
)

reviews = Table(
    "reviews", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("case_id", String(128), ForeignKey("cases.case_id"), index=True, nullable=False),
    Column("reviewer", String(128), nullable=False),
    Column("decision", String(16), nullable=False),
    Column("comment", Text),
    Column("run_id", String(64)),   # the run whose results were decided on
    _ts("created_at", nullable=False),
)

users = Table(
    "users", metadata,
    Column("username", String(128), primary_key=True),
    Column("name", String(256)),
    Column("email", String(256)),
    Column("password_hash", String(256), nullable=False),
    Column("role", String(32), nullable=False),
    Column("active", Boolean, nullable=False, default=True),
    _ts("created_at", nullable=False),
)

audit_log = Table(
    "audit_log", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    _ts("ts", nullable=False, index=True),
    Column("actor", String(128), nullable=False, index=True),
    Column("action", String(64), nullable=False, index=True),
    Column("case_id", String(128), index=True),
    Column("model_version", String(128)),
    Column("detail", JSON),
    Column("allowed", Boolean, nullable=False, default=True),
)

# Review-app sessions: only a SHA-256 of the random token is stored, so a copy of the DB
# cannot be replayed as cookies. A session ends when revoked_at is set (sign-out, role
# change, deactivation) or at expires_at; handoff_* is the one-time code that lets the
# browser fetch its HttpOnly cookie (ui/http_security.py).
ui_sessions = Table(
    "ui_sessions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("username", String(128), nullable=False, index=True),
    Column("via", String(16), nullable=False),
    Column("client", String(64)),
    _ts("created_at", nullable=False),
    _ts("expires_at", nullable=False),
    _ts("last_seen_at", nullable=False),
    _ts("revoked_at"),
    Column("revoked_reason", String(32)),
    Column("handoff_hash", String(64), unique=True),
    _ts("handoff_expires_at"),
)

# Consecutive failed sign-ins per username (scope "user", whether or not the user exists)
# and per client address (scope "client"), and the lock they earned.
sign_in_failures = Table(
    "sign_in_failures", metadata,
    Column("scope", String(8), primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("failures", Integer, nullable=False),
    _ts("last_failure_at", nullable=False, index=True),
    _ts("locked_until"),
)

# The one place a subject's original identifier is kept: pseudonym (what every other table,
# the object store and the reports hold) → subject_id as received. Read only through the
# Admin-only lookup of the review app (audited); see aooct_core/io/deid.py.
subject_map = Table(
    "subject_map", metadata,
    Column("pseudonym", String(32), primary_key=True),
    Column("subject_id", String(128), nullable=False, unique=True),
    _ts("first_seen_at", nullable=False),
)

# Tokens for scanners and scripts (the gateway's ``aooct_st_...`` bearer tokens): only a
# SHA-256 of the token is kept; scopes are permission names (api/policy.py), comma-separated;
# a token ends when revoked_at is set.
service_tokens = Table(
    "service_tokens", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("scopes", String(512), nullable=False),
    Column("created_by", String(128), nullable=False),
    _ts("created_at", nullable=False),
    _ts("last_used_at"),
    _ts("revoked_at"),
    Column("revoked_by", String(128)),
)
