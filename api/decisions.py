"""Review decisions that hold: when a case may be approved or rejected, and what is recorded.

The one rule, for the review app and the gateway alike:

* a decision is about one **run**'s results: it is refused while the case has no finished
  run or a run is still going (ingest sets the case ``processing``), so a run that ends
  after the decision cannot overwrite it;
* **approve** needs the latest run to have succeeded (every blocking check passed);
  **reject** is allowed for any finished run (failed or QC-failed ones included) and needs
  a comment saying why;
* the decision is recorded with the run it was about, and the case's status is moved
  only from the status the rule read (compare and set, in the same transaction as the
  review row): a run that starts in between wins, and the decision is refused, not lost;
* a later run never rewrites a recorded decision; it sets the case's status for its own
  results, and :func:`decision_state` tells whether the latest decision is about the
  latest finished run or an earlier one (then the case wants review again).
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DecisionRefused", "record_decision", "decision_state", "latest_run"]

#: Run status (``runs.status``) → may the case be approved / rejected on its results.
_FINISHED = {"success": (True, True), "qc_failed": (False, True), "failure": (False, True)}


class DecisionRefused(Exception):
    """The decision cannot be recorded now; ``str()`` says why and what to do."""


@dataclass(frozen=True)
class DecisionState:
    """The latest decision on a case and whether it still covers the latest finished run."""

    decision: str | None
    run_id: str | None
    current: bool


def latest_run(db, case_id: str) -> dict | None:
    """The case's most recently started run record, or None."""
    runs = db.list_runs(case_id)
    return runs[-1] if runs else None


def record_decision(db, case_id: str, *, reviewer: str, decision: str, comment: str = "") -> dict:
    """Record ``decision`` (``"approve"`` / ``"reject"``) on the case's latest finished run.

    Returns ``{"id", "case_id", "decision", "run_id"}``. Raises :class:`DecisionRefused`
    (nothing recorded) when the rule above refuses, :class:`KeyError` for an unknown case.
    """
    if decision not in ("approve", "reject"):
        raise DecisionRefused(f"decision must be 'approve' or 'reject'; got {decision!r}")
    case = db.get_case(case_id)
    if case is None:
        raise KeyError(f"case {case_id!r} is not in the metadata DB")
    if decision == "reject" and not comment.strip():
        raise DecisionRefused("say why the case is rejected in the comment")
    run = latest_run(db, case_id)
    if case["status"] in ("new", "ingested", "processing") or run is None or run["status"] == "running":
        raise DecisionRefused(f"case {case_id} is still processing; decide once its run has finished "
                              "and its checks have run")
    may_approve, may_reject = _FINISHED.get(run["status"], (False, False))
    if decision == "approve" and not may_approve:
        raise DecisionRefused(f"case {case_id}'s latest run ended {run['status']!r}: it can be "
                              "rejected, or approved after a run that passes its checks")
    if not (may_approve or may_reject):
        raise DecisionRefused(f"case {case_id}'s latest run has status {run['status']!r}; "
                              "decide once it has finished")
    new_status = "approved" if decision == "approve" else "rejected"
    review_id = db.add_review(case_id, reviewer, decision, comment, run_id=run["run_id"],
                              case_status=new_status, only_from=case["status"])
    if review_id is None:
        raise DecisionRefused(f"case {case_id} changed while you decided (a run started or another "
                              "decision was recorded); reload it and decide again")
    return {"id": review_id, "case_id": case_id, "decision": decision, "run_id": run["run_id"]}


def decision_state(db, case_id: str, *, runs: list[dict] | None = None) -> DecisionState:
    """The latest decision and whether it covers the latest finished run (``runs``: the
    case's run records when the caller already has them, else read)."""
    reviews = db.get_reviews(case_id)
    if not reviews:
        return DecisionState(None, None, False)
    last = reviews[-1]
    finished = [r for r in (db.list_runs(case_id) if runs is None else runs) if r["status"] in _FINISHED]
    current = bool(finished) and last.get("run_id") == finished[-1]["run_id"]
    return DecisionState(last["decision"], last.get("run_id"), current)
