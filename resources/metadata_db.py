"""Metadata DB: cases, runs, artifacts, metrics, QC, labels, reviews, users and the audit log.

One abstract interface (:class:`MetadataDB`), one SQLAlchemy implementation for both
embedded SQLite (``sqlite:///...``) and PostgreSQL (``postgresql+psycopg2://...``),
and :func:`make_test_metadata_db` (SQLite in a temporary folder). The schema is created
and upgraded only by the alembic migrations in ``resources/migrations``, run on first
connection under a lock so that parallel step processes do not race.

Every method returns plain dicts/lists; times are ISO-8601 UTC strings.
"""
from __future__ import annotations

import abc
import contextlib
import fcntl
import tempfile
from pathlib import Path

from sqlalchemy import and_, case, create_engine, delete, event, func, insert, select, update
from sqlalchemy.engine import Engine

from resources import db_models as m
from resources.metadata_people import PeopleRecords
from resources.metadata_people import plain_row as _plain
from resources.metadata_people import utc_now as _now

__all__ = ["MetadataDB", "SqlMetadataDB", "make_test_metadata_db", "upgrade", "hash_password",
           "verify_password", "CASE_STATUSES"]

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
#: Newest alembic revision; a DB already there skips the (slow to load) alembic machinery.
HEAD_REVISION = "0007"
CASE_STATUSES = ("new", "ingested", "processing", "processed", "failed", "qc_failed",
                 "approved", "rejected")
_QC_LEVEL = {2: "fail", 1: "warn", 0: "pass"}


def hash_password(password: str) -> str:
    """bcrypt hash of ``password`` (for :meth:`MetadataDB.create_user`)."""
    import bcrypt

    return bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()


def verify_password(password: str, password_hash: str) -> bool:
    import bcrypt

    return bcrypt.checkpw(password.encode(), password_hash.encode())


def current_revision(engine: Engine) -> str | None:
    """The alembic revision of the DB, or None for an empty DB."""
    from sqlalchemy import inspect, text

    with engine.connect() as conn:
        if "alembic_version" not in inspect(conn).get_table_names():
            return None
        rows = [r[0] for r in conn.execute(text("SELECT version_num FROM alembic_version"))]
    # More than one row (seen once after a killed process): report "not current" so that
    # upgrade() repairs the table under its lock.
    return rows[0] if len(rows) == 1 else (None if not rows else "<several>")


def upgrade(engine: Engine) -> None:
    """Bring the schema of ``engine``'s database to the newest alembic revision."""
    if current_revision(engine) == HEAD_REVISION:
        return  # every step process connects; most find the schema current
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    with _migration_lock(engine), engine.begin() as connection:
        _drop_superseded_version_rows(connection)
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")


def _drop_superseded_version_rows(connection) -> None:
    """Keep only the newest of several alembic_version rows when they are one linear history.

    Alembic refuses to run with two rows (two "heads"); rows that are ancestors of another
    (``0001`` beside ``0002``) say nothing more than the newest one, so they are removed.
    Rows on different branches are left for a person (alembic then says so).
    """
    from sqlalchemy import inspect, text

    if "alembic_version" not in inspect(connection).get_table_names():
        return
    rows = [r[0] for r in connection.execute(text("SELECT version_num FROM alembic_version"))]
    if len(rows) < 2:
        return
    order = sorted(p.name.split("_", 1)[0] for p in (MIGRATIONS_DIR / "versions").glob("[0-9]*_*.py"))
    if all(r in order for r in rows):
        newest = max(rows, key=order.index)
        connection.execute(text("DELETE FROM alembic_version WHERE version_num != :v"), {"v": newest})


@contextlib.contextmanager
def _migration_lock(engine: Engine):
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT pg_advisory_lock(7441)")
            try:
                yield
            finally:
                conn.exec_driver_sql("SELECT pg_advisory_unlock(7441)")
                conn.commit()
    elif engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        lock_path = Path(engine.url.database).with_suffix(".migrate.lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
    else:
        yield


class MetadataDB(abc.ABC):
    """What the pipeline and the review app store about cases, people and decisions."""

    # cases -----------------------------------------------------------------
    @abc.abstractmethod
    def upsert_case(self, **fields) -> dict: ...
    @abc.abstractmethod
    def get_case(self, case_id: str) -> dict | None: ...
    @abc.abstractmethod
    def list_cases(self, *, status=None, subject_id=None, eye=None, qc_status=None,
                   limit: int = 50, offset: int = 0) -> list[dict]: ...
    @abc.abstractmethod
    def count_cases(self, *, status=None, subject_id=None, eye=None, qc_status=None) -> int: ...
    @abc.abstractmethod
    def set_case_status(self, case_id: str, status: str) -> None: ...
    # pipeline records ----------------------------------------------------------
    @abc.abstractmethod
    def record_run(self, run_id: str, case_id: str, *, status: str, dagster_run_id=None,
                   started_at=None, finished_at=None, code_version=None,
                   model_versions=None, reason=None) -> None: ...
    @abc.abstractmethod
    def record_artifact(self, case_id: str, asset_key: str, uri: str, *, content_hash=None,
                        size_bytes=None, run_id=None) -> int: ...
    def record_artifacts(self, case_id: str, rows: list[dict]) -> None:
        """Several artifacts at once (implementations may use one transaction)."""
        for r in rows:
            self.record_artifact(case_id, r["asset_key"], r["uri"], content_hash=r.get("content_hash"),
                                 size_bytes=r.get("size_bytes"), run_id=r.get("run_id"))

    @abc.abstractmethod
    def list_artifacts(self, case_id: str) -> list[dict]: ...
    @abc.abstractmethod
    def record_metrics(self, case_id: str, rows: list[dict]) -> None: ...
    @abc.abstractmethod
    def get_metrics(self, case_id: str | None = None, *, limit: int | None = None,
                    offset: int = 0) -> list[dict]: ...
    @abc.abstractmethod
    def count_metrics(self, case_id: str | None = None) -> int: ...
    @abc.abstractmethod
    def record_qc(self, case_id: str, results: list[dict]) -> None: ...
    @abc.abstractmethod
    def get_qc(self, case_id: str) -> list[dict]: ...
    # people --------------------------------------------------------------------
    @abc.abstractmethod
    def add_label(self, case_id: str, structure: str, annotator: str, payload: dict) -> int: ...
    @abc.abstractmethod
    def save_label_draft(self, case_id: str, structure: str, annotator: str, payload: dict) -> None: ...
    @abc.abstractmethod
    def get_label_draft(self, case_id: str, structure: str, annotator: str) -> dict | None: ...
    @abc.abstractmethod
    def delete_label_draft(self, case_id: str, structure: str, annotator: str) -> None: ...
    @abc.abstractmethod
    def get_labels(self, case_id: str, *, structure=None, annotator=None,
                   latest_only: bool = False) -> list[dict]: ...
    @abc.abstractmethod
    def add_review(self, case_id: str, reviewer: str, decision: str, comment: str = "", *,
                   run_id: str | None = None, case_status: str | None = None,
                   only_from: str | None = None) -> int | None: ...
    @abc.abstractmethod
    def get_reviews(self, case_id: str) -> list[dict]: ...
    @abc.abstractmethod
    def create_user(self, username: str, *, name: str, email: str, password_hash: str,
                    role: str) -> None: ...
    @abc.abstractmethod
    def get_user(self, username: str) -> dict | None: ...
    @abc.abstractmethod
    def list_users(self) -> list[dict]: ...
    @abc.abstractmethod
    def set_role(self, username: str, role: str) -> None: ...
    @abc.abstractmethod
    def audit(self, actor: str, action: str, *, case_id=None, model_version=None, detail=None,
              allowed: bool = True) -> int: ...
    @abc.abstractmethod
    def list_audit(self, *, actor=None, action=None, case_id=None, limit: int = 200) -> list[dict]: ...
    # review-app sessions and sign-in lockout (policy in api/sessions.py) --------
    @abc.abstractmethod
    def set_active(self, username: str, active: bool) -> None: ...
    @abc.abstractmethod
    def create_session(self, token_hash: str, username: str, *, via: str, expires_at,
                       client=None, handoff_hash=None, handoff_expires_at=None,
                       now=None) -> None: ...
    @abc.abstractmethod
    def get_session(self, token_hash: str) -> dict | None: ...
    @abc.abstractmethod
    def touch_session(self, token_hash: str, *, now) -> None: ...
    @abc.abstractmethod
    def redeem_session_handoff(self, handoff_hash: str, new_token_hash: str, *, now) -> dict | None: ...
    @abc.abstractmethod
    def revoke_sessions(self, *, reason: str, username=None, token_hash=None) -> int: ...
    @abc.abstractmethod
    def get_sign_in_failures(self, keys: list[tuple[str, str]]) -> list[dict]: ...
    @abc.abstractmethod
    def record_sign_in_failure(self, scope: str, key: str, *, now, reset_after_s: float,
                               lock_seconds) -> dict: ...
    @abc.abstractmethod
    def clear_sign_in_failures(self, scope: str, key: str) -> None: ...
    @abc.abstractmethod
    def map_subject(self, subject_id: str, *, pseudonym: str) -> str: ...
    @abc.abstractmethod
    def subject_for(self, pseudonym: str) -> str | None: ...
    # gateway service tokens (policy in api/service_tokens.py) ------------------------
    @abc.abstractmethod
    def create_service_token(self, name: str, token_hash: str, *, scopes: list[str], created_by: str) -> int: ...
    @abc.abstractmethod
    def get_service_token(self, token_hash: str) -> dict | None: ...
    @abc.abstractmethod
    def list_service_tokens(self) -> list[dict]: ...
    @abc.abstractmethod
    def revoke_service_token(self, token_id: int, *, by: str) -> bool: ...
    @abc.abstractmethod
    def touch_service_token(self, token_id: int, *, now: datetime) -> None: ...


class SqlMetadataDB(PeopleRecords, MetadataDB):
    """:class:`MetadataDB` on SQLAlchemy; ``url`` is ``sqlite:///path`` or ``postgresql+psycopg2://...``."""

    def __init__(self, url: str, *, migrate: bool = True):
        if url.startswith("postgresql://"):
            raise ValueError(
                f"database URL {url!r} names no driver; SQLAlchemy 2.1 would pick psycopg 3, "
                "which is not installed — use 'postgresql+psycopg2://...'"
            )
        if url.startswith("sqlite:///"):
            Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
            self.engine = create_engine(url, connect_args={"timeout": 30})
            event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            self.engine = create_engine(url, pool_pre_ping=True)
        self.url = url
        if migrate:
            upgrade(self.engine)

    def __repr__(self) -> str:
        return f"SqlMetadataDB({self.engine.url.render_as_string(hide_password=True)!r})"

    def close(self) -> None:
        self.engine.dispose()

    # cases -----------------------------------------------------------------
    def upsert_case(self, **fields) -> dict:
        if not fields.get("case_id"):
            raise ValueError("upsert_case needs case_id=...")
        unknown = set(fields) - set(m.cases.c.keys())
        if unknown:
            raise ValueError(f"upsert_case got unknown fields {sorted(unknown)}; "
                             f"known: {sorted(m.cases.c.keys())}")
        if "status" in fields:
            _check_status(fields["status"])
        now = _now()
        with self.engine.begin() as conn:
            exists = conn.execute(select(m.cases.c.case_id)
                                  .where(m.cases.c.case_id == fields["case_id"])).first()
            values = {k: v for k, v in fields.items() if k not in ("created_at", "updated_at")}
            if exists:
                conn.execute(update(m.cases).where(m.cases.c.case_id == fields["case_id"])
                             .values(**values, updated_at=now))
            else:
                values.setdefault("status", "new")
                conn.execute(insert(m.cases).values(**values, created_at=now, updated_at=now))
        return self.get_case(fields["case_id"])

    def _cases_query(self, status, subject_id, eye, qc_status):
        q = m.qc_results.c
        level = func.max(case((and_(q.passed.is_(False), q.severity == "fail"), 2),
                              (q.passed.is_(False), 1), else_=0))
        qc_sub = select(q.case_id, level.label("qc_level")).group_by(q.case_id).subquery()
        qc_status_col = case((qc_sub.c.qc_level == 2, "fail"), (qc_sub.c.qc_level == 1, "warn"),
                             (qc_sub.c.qc_level == 0, "pass"), else_=None).label("qc_status")
        stmt = select(m.cases, qc_status_col).select_from(
            m.cases.outerjoin(qc_sub, qc_sub.c.case_id == m.cases.c.case_id))
        if status is not None:
            stmt = stmt.where(m.cases.c.status == status)
        if subject_id is not None:
            stmt = stmt.where(m.cases.c.subject_id == subject_id)
        if eye is not None:
            stmt = stmt.where(m.cases.c.eye == eye)
        if qc_status is not None:
            if qc_status not in ("pass", "warn", "fail"):
                raise ValueError(f"qc_status must be 'pass', 'warn' or 'fail'; got {qc_status!r}")
            stmt = stmt.where(qc_status_col == qc_status)
        return stmt

    def get_case(self, case_id: str) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(self._cases_query(None, None, None, None)
                               .where(m.cases.c.case_id == case_id)).first()
        return _plain(row) if row else None

    def list_cases(self, *, status=None, subject_id=None, eye=None, qc_status=None,
                   limit: int = 50, offset: int = 0) -> list[dict]:
        stmt = (self._cases_query(status, subject_id, eye, qc_status)
                .order_by(m.cases.c.case_id).limit(limit).offset(offset))
        with self.engine.connect() as conn:
            return [_plain(r) for r in conn.execute(stmt)]

    def count_cases(self, *, status=None, subject_id=None, eye=None, qc_status=None) -> int:
        sub = self._cases_query(status, subject_id, eye, qc_status).subquery()
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(sub)).scalar_one())

    def set_case_status(self, case_id: str, status: str) -> None:
        _check_status(status)
        with self.engine.begin() as conn:
            res = conn.execute(update(m.cases).where(m.cases.c.case_id == case_id)
                               .values(status=status, updated_at=_now()))
            if res.rowcount == 0:
                raise KeyError(f"case {case_id!r} is not in the metadata DB")

    # pipeline records ----------------------------------------------------------
    def record_run(self, run_id: str, case_id: str, *, status: str, dagster_run_id=None,
                   started_at=None, finished_at=None, code_version=None,
                   model_versions=None, reason=None) -> None:
        values = {"case_id": case_id, "status": status, "dagster_run_id": dagster_run_id,
                  "started_at": started_at, "finished_at": finished_at,
                  "code_version": code_version, "model_versions": model_versions,
                  "reason": None if reason is None else str(reason)[:500]}
        values = {k: v for k, v in values.items() if v is not None}
        with self.engine.begin() as conn:
            if conn.execute(select(m.runs.c.run_id).where(m.runs.c.run_id == run_id)).first():
                conn.execute(update(m.runs).where(m.runs.c.run_id == run_id).values(**values))
            else:
                conn.execute(insert(m.runs).values(run_id=run_id, **values))

    def list_runs(self, case_id: str) -> list[dict]:
        with self.engine.connect() as conn:
            return [_plain(r) for r in conn.execute(
                select(m.runs).where(m.runs.c.case_id == case_id).order_by(m.runs.c.started_at))]

    def record_artifact(self, case_id: str, asset_key: str, uri: str, *, content_hash=None,
                        size_bytes=None, run_id=None) -> int:
        with self.engine.begin() as conn:
            res = conn.execute(insert(m.artifacts).values(
                case_id=case_id, asset_key=asset_key, uri=uri, content_hash=content_hash,
                size_bytes=size_bytes, run_id=run_id, created_at=_now()))
            return int(res.inserted_primary_key[0])

    def record_artifacts(self, case_id: str, rows: list[dict]) -> None:
        """Many :meth:`record_artifact` rows (``asset_key, uri, content_hash, size_bytes, run_id``)
        in one transaction."""
        now = _now()
        if rows:
            with self.engine.begin() as conn:
                conn.execute(insert(m.artifacts), [
                    {"case_id": case_id, "asset_key": r["asset_key"], "uri": r["uri"],
                     "content_hash": r.get("content_hash"), "size_bytes": r.get("size_bytes"),
                     "run_id": r.get("run_id"), "created_at": now} for r in rows])

    def list_artifacts(self, case_id: str) -> list[dict]:
        with self.engine.connect() as conn:
            return [_plain(r) for r in conn.execute(
                select(m.artifacts).where(m.artifacts.c.case_id == case_id)
                .order_by(m.artifacts.c.id))]

    def record_metrics(self, case_id: str, rows: list[dict]) -> None:
        """Replace the case's metrics by ``rows`` (one re-analysis supersedes the last)."""
        now = _now()
        allowed = {"structure", "metric", "value", "unit", "ci_low", "ci_high", "method",
                   "model_version", "code_version", "run_id"}
        clean = []
        for row in rows:
            extra = set(row) - allowed - {"case_id"}
            if extra:
                raise ValueError(f"metric rows take only {sorted(allowed)}; got extra {sorted(extra)}")
            clean.append({**{k: row.get(k) for k in allowed}, "case_id": case_id, "created_at": now})
        with self.engine.begin() as conn:
            conn.execute(delete(m.metrics).where(m.metrics.c.case_id == case_id))
            if clean:
                conn.execute(insert(m.metrics), clean)

    def get_metrics(self, case_id: str | None = None, *, limit: int | None = None,
                    offset: int = 0) -> list[dict]:
        """Metric rows ordered by case and insertion; ``limit`` / ``offset`` page them."""
        stmt = select(m.metrics).order_by(m.metrics.c.case_id, m.metrics.c.id)
        if case_id is not None:
            stmt = stmt.where(m.metrics.c.case_id == case_id)
        if limit is not None:
            stmt = stmt.limit(int(limit)).offset(int(offset))
        with self.engine.connect() as conn:
            return [_plain(r) for r in conn.execute(stmt)]

    def count_metrics(self, case_id: str | None = None) -> int:
        stmt = select(func.count()).select_from(m.metrics)
        if case_id is not None:
            stmt = stmt.where(m.metrics.c.case_id == case_id)
        with self.engine.connect() as conn:
            return int(conn.execute(stmt).scalar_one())

    def record_qc(self, case_id: str, results: list[dict]) -> None:
        """Store QC results; a new result for a check replaces the case's previous one."""
        now = _now()
        rows = []
        for r in results:
            if "check_name" not in r or "passed" not in r:
                raise ValueError(f"QC results need 'check_name' and 'passed'; got {sorted(r)}")
            rows.append({"case_id": case_id, "check_name": r["check_name"],
                         "passed": bool(r["passed"]), "severity": r.get("severity"),
                         "value": r.get("value"), "threshold": r.get("threshold"),
                         "detail": r.get("detail"), "created_at": now})
        with self.engine.begin() as conn:
            names = [r["check_name"] for r in rows]
            if names:
                conn.execute(delete(m.qc_results).where(and_(
                    m.qc_results.c.case_id == case_id, m.qc_results.c.check_name.in_(names))))
                conn.execute(insert(m.qc_results), rows)

    def get_qc(self, case_id: str) -> list[dict]:
        with self.engine.connect() as conn:
            return [_plain(r) for r in conn.execute(
                select(m.qc_results).where(m.qc_results.c.case_id == case_id)
                .order_by(m.qc_results.c.check_name))]

def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # WAL lets the webserver, the UI and step processes read while one writes.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _check_status(status: str) -> None:
    if status not in CASE_STATUSES:
        raise ValueError(f"case status must be one of {CASE_STATUSES}; got {status!r}")


def make_test_metadata_db(folder: str | Path | None = None) -> SqlMetadataDB:
    """A migrated SQLite DB in ``folder`` (a fresh temporary folder by default), for tests."""
    folder = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="aooct-db-"))
    return SqlMetadataDB(f"sqlite:///{folder / 'aooct-test.db'}")
