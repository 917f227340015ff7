"""Review-app sessions and sign-in failure counters in the metadata DB, on SQLite and PostgreSQL."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import create_engine, inspect, text

from resources.metadata_db import HEAD_REVISION, SqlMetadataDB, hash_password, make_test_metadata_db

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request, tmp_path):
    if request.param == "sqlite":
        database = make_test_metadata_db(tmp_path)
    else:
        database = SqlMetadataDB(request.getfixturevalue("pg_url"))
    database.create_user("ann", name="Ann", email="ann@x", password_hash=hash_password("pw"),
                         role="Admin")
    yield database
    database.close()


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


def test_sessions_are_stored_hashed_swapped_once_and_revoked(db):
    db.create_session("h1", "ann", via="password", expires_at=T0 + timedelta(hours=8),
                      handoff_hash="c1", handoff_expires_at=T0 + timedelta(seconds=60), now=T0)
    row = db.get_session("h1")
    assert (row["username"], row["via"], row["revoked_at"]) == ("ann", "password", None)
    assert _ts(row["last_seen_at"]) == T0 and _ts(row["expires_at"]) == T0 + timedelta(hours=8)
    assert db.redeem_session_handoff("c1", "h2", now=T0 + timedelta(seconds=61)) is None  # too late
    assert db.redeem_session_handoff("c1", "h2", now=T0 + timedelta(seconds=5))["username"] == "ann"
    assert db.get_session("h1") is None and db.get_session("h2")["handoff_hash"] is None
    assert db.redeem_session_handoff("c1", "h3", now=T0 + timedelta(seconds=6)) is None  # once only
    db.touch_session("h2", now=T0 + timedelta(minutes=5))
    assert _ts(db.get_session("h2")["last_seen_at"]) == T0 + timedelta(minutes=5)
    assert db.revoke_sessions(token_hash="h2", reason="sign_out") == 1
    assert db.revoke_sessions(token_hash="h2", reason="again") == 0  # the first reason stays
    assert db.get_session("h2")["revoked_reason"] == "sign_out"
    with pytest.raises(ValueError, match="exactly one"):
        db.revoke_sessions(reason="x")


def test_a_revoked_session_cannot_redeem_its_handoff(db):
    db.create_session("h1", "ann", via="password", expires_at=T0 + timedelta(hours=8),
                      handoff_hash="c1", handoff_expires_at=T0 + timedelta(seconds=60), now=T0)
    db.revoke_sessions(username="ann", reason="sign_out")
    assert db.redeem_session_handoff("c1", "h2", now=T0) is None


def test_role_change_and_deactivation_revoke_open_sessions(db):
    for h in ("a", "b"):
        db.create_session(h, "ann", via="password", expires_at=T0 + timedelta(hours=8), now=T0)
    db.set_role("ann", "Admin")  # no change: sessions stay
    assert db.get_session("a")["revoked_at"] is None
    db.set_role("ann", "Researcher")
    assert {db.get_session(h)["revoked_reason"] for h in ("a", "b")} == {"role_changed"}
    db.create_session("c", "ann", via="oidc", expires_at=T0 + timedelta(hours=8), now=T0)
    db.set_active("ann", False)
    assert db.get_session("c")["revoked_reason"] == "deactivated"
    assert db.get_user("ann")["active"] is False
    with pytest.raises(KeyError):
        db.set_active("nobody", False)
    with pytest.raises(KeyError):
        db.set_role("nobody", "Tech")


def test_failure_counters_count_lock_reset_and_clear(db):
    def lock(n):
        return 0 if n < 3 else 30 * 2 ** (n - 3)

    rows = [db.record_sign_in_failure("user", "ann", now=T0 + timedelta(seconds=i),
                                      reset_after_s=3600, lock_seconds=lock) for i in range(4)]
    assert [(r["failures"], r["lock_s"]) for r in rows] == [(1, 0), (2, 0), (3, 30), (4, 60)]
    stored = db.get_sign_in_failures([("user", "ann"), ("client", "10.0.0.1")])
    assert len(stored) == 1 and _ts(stored[0]["locked_until"]) == T0 + timedelta(seconds=63)
    # A counter idle for longer than reset_after_s starts again.
    again = db.record_sign_in_failure("user", "ann", now=T0 + timedelta(hours=2),
                                      reset_after_s=3600, lock_seconds=lock)
    assert again["failures"] == 1 and db.get_sign_in_failures([("user", "ann")])[0]["locked_until"] is None
    db.record_sign_in_failure("client", "10.0.0.1", now=T0 + timedelta(hours=2), reset_after_s=3600,
                              lock_seconds=lock)
    db.clear_sign_in_failures("user", "ann")
    assert [r["scope"] for r in db.get_sign_in_failures([("user", "ann"), ("client", "10.0.0.1")])] \
        == ["client"]
    with pytest.raises(ValueError, match="scope"):
        db.record_sign_in_failure("ip", "x", now=T0, reset_after_s=1, lock_seconds=lock)


def test_made_up_usernames_do_not_pile_up(db):
    for i in range(20):
        db.record_sign_in_failure("user", f"guess-{i}", now=T0, reset_after_s=3600, lock_seconds=lambda n: 0)
    db.record_sign_in_failure("user", "later", now=T0 + timedelta(days=2), reset_after_s=3600,
                              lock_seconds=lambda n: 0)
    keys = [("user", f"guess-{i}") for i in range(20)] + [("user", "later")]
    assert [r["key"] for r in db.get_sign_in_failures(keys)] == ["later"]


def test_a_0001_database_is_upgraded_to_head(tmp_path):
    from alembic import command
    from alembic.config import Config

    from resources.metadata_db import MIGRATIONS_DIR

    url = f"sqlite:///{tmp_path / 'old.db'}"
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url)
    command.upgrade(cfg, "0001")  # a deployment from before sessions existed
    engine = create_engine(url)
    assert "ui_sessions" not in inspect(engine).get_table_names()
    engine.dispose()
    SqlMetadataDB(url).close()
    engine = create_engine(url)
    assert {"ui_sessions", "sign_in_failures", "subject_map"} <= set(inspect(engine).get_table_names())
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == HEAD_REVISION
    engine.dispose()
