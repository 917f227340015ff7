"""Issue 22 bug 1: a decision is about a finished run and is never overwritten by a later one."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from api.decisions import DecisionRefused, decision_state, record_decision
from resources.metadata_db import make_test_metadata_db

T0 = datetime(2026, 12, 1, tzinfo=timezone.utc)


@pytest.fixture()
def db(tmp_path):
    db = make_test_metadata_db(tmp_path)
    db.upsert_case(case_id="C1", subject_id="P-1", eye="OD", status="processing")
    db.record_run("run-1", "C1", status="running", started_at=T0)
    return db


def _finish(db, run_id, status="success", case_status="processed"):
    db.record_run(run_id, "C1", status=status, finished_at=T0 + timedelta(minutes=5))
    db.set_case_status("C1", case_status)


def test_a_case_still_processing_cannot_be_decided_and_nothing_is_recorded(db):
    for decision, comment in (("approve", ""), ("reject", "blink")):
        with pytest.raises(DecisionRefused, match="still processing"):
            record_decision(db, "C1", reviewer="tech", decision=decision, comment=comment)
    assert db.get_reviews("C1") == [] and db.get_case("C1")["status"] == "processing"


def test_the_run_finishing_after_a_decision_cannot_undo_it(db):
    """The bug as reported: approved while processing, then the run set ``processed``."""
    with pytest.raises(DecisionRefused):
        record_decision(db, "C1", reviewer="tech", decision="approve")
    _finish(db, "run-1")
    made = record_decision(db, "C1", reviewer="tech", decision="approve")
    assert made["run_id"] == "run-1" and db.get_case("C1")["status"] == "approved"
    assert decision_state(db, "C1").current


def test_a_later_run_keeps_the_decision_and_asks_for_review_again(db):
    _finish(db, "run-1")
    record_decision(db, "C1", reviewer="tech", decision="approve")
    db.record_run("run-2", "C1", status="running", started_at=T0 + timedelta(hours=1))
    db.set_case_status("C1", "processing")
    _finish(db, "run-2")
    (review,) = db.get_reviews("C1")
    assert (review["decision"], review["run_id"]) == ("approve", "run-1")
    state = decision_state(db, "C1")
    assert state.decision == "approve" and state.run_id == "run-1" and not state.current
    record_decision(db, "C1", reviewer="tech", decision="reject", comment="motion in run 2")
    assert decision_state(db, "C1").current and db.get_case("C1")["status"] == "rejected"


def test_approval_needs_a_run_that_passed_its_checks(db):
    _finish(db, "run-1", status="qc_failed", case_status="qc_failed")
    with pytest.raises(DecisionRefused, match="'qc_failed'.*rejected"):
        record_decision(db, "C1", reviewer="tech", decision="approve")
    with pytest.raises(DecisionRefused, match="say why"):
        record_decision(db, "C1", reviewer="tech", decision="reject", comment="  ")
    assert record_decision(db, "C1", reviewer="tech", decision="reject", comment="QC")["run_id"] == "run-1"


def test_a_run_starting_while_the_reviewer_decides_wins(db):
    """Compare and set: the status moves only from the one the rule read, in one transaction."""
    _finish(db, "run-1")
    assert db.add_review("C1", "tech", "approve", run_id="run-1", case_status="approved",
                         only_from="ingested") is None
    assert db.get_reviews("C1") == [] and db.get_case("C1")["status"] == "processed"
    assert db.add_review("C1", "tech", "approve", run_id="run-1", case_status="approved",
                         only_from="processed") is not None


def test_unknown_case_and_decision(db):
    with pytest.raises(KeyError):
        record_decision(db, "NOPE", reviewer="tech", decision="approve")
    with pytest.raises(DecisionRefused, match="approve' or 'reject"):
        record_decision(db, "C1", reviewer="tech", decision="maybe")
