"""Run hygiene: a run whose process died is failed and its pool slot freed (issue 17 finding 2)."""
from __future__ import annotations

import subprocess

from dagster import DagsterInstance, DagsterRunStatus
from dagster._core.test_utils import create_run_for_test, instance_for_test

from aooct_assets.run_hygiene import process_tags, reap_runs


def _dead_pid_tags() -> dict:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return {**process_tags(), "aooct/pid": str(proc.pid), "aooct/pid_start": "1"}


class _instance:
    """A test instance whose ``gpu`` pool has one slot, as in the embedded dagster.yaml."""

    def __enter__(self):
        self._cm = instance_for_test(overrides={"concurrency": {"pools": {"default_limit": 1}}})
        instance = self._cm.__enter__()
        instance.event_log_storage.set_concurrency_slots("gpu", 1)
        return instance

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)


def test_dead_in_process_run_is_failed_and_its_slot_freed():
    with _instance() as instance:
        instance: DagsterInstance
        run = create_run_for_test(instance, job_name="case_pipeline", status=DagsterRunStatus.STARTED,
                                  tags=_dead_pid_tags())
        storage = instance.event_log_storage
        assert storage.claim_concurrency_slot("gpu", run.run_id, "preprocess_case").is_claimed
        other = create_run_for_test(instance, job_name="case_pipeline", status=DagsterRunStatus.STARTED)
        assert not storage.claim_concurrency_slot("gpu", other.run_id, "preprocess_case").is_claimed
        failed = []
        done = reap_runs(instance, on_failed=lambda r, why: failed.append((r.run_id, why)))
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.FAILURE
        assert [r for r, _ in failed] == [run.run_id] and "gone" in failed[0][1]
        assert any("freed" in what for _, what in done)
        # the waiting run now gets the slot; the live run (no tags) is left alone
        assert storage.claim_concurrency_slot("gpu", other.run_id, "preprocess_case").is_claimed
        assert instance.get_run_by_id(other.run_id).status == DagsterRunStatus.STARTED


def test_live_process_and_reused_pid_are_told_apart():
    with _instance() as instance:
        alive = create_run_for_test(instance, job_name="j", status=DagsterRunStatus.STARTED,
                                    tags=process_tags())
        reused = create_run_for_test(instance, job_name="j", status=DagsterRunStatus.STARTED,
                                     tags={**process_tags(), "aooct/pid_start": "1"})
        reap_runs(instance)
        assert instance.get_run_by_id(alive.run_id).status == DagsterRunStatus.STARTED
        assert instance.get_run_by_id(reused.run_id).status == DagsterRunStatus.FAILURE


def test_slot_of_a_run_marked_failed_by_hand_is_freed():
    with _instance() as instance:
        run = create_run_for_test(instance, job_name="j", status=DagsterRunStatus.STARTED)
        instance.event_log_storage.claim_concurrency_slot("gpu", run.run_id, "masks")
        instance.report_run_failed(run, "marked failed by a person")
        assert instance.event_log_storage.get_concurrency_info("gpu").claimed_slots
        reap_runs(instance)
        assert not instance.event_log_storage.get_concurrency_info("gpu").claimed_slots


def test_stuck_run_without_process_tags_is_failed_after_the_timeout():
    import time
    with _instance() as instance:
        run = create_run_for_test(instance, job_name="j", status=DagsterRunStatus.STARTED)
        assert not reap_runs(instance, stuck_after_s=3600)
        reap_runs(instance, stuck_after_s=3600, now=time.time() + 7200)
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.FAILURE


def _daemon_launched(instance, worker_pid: int, *, host: str = "localhost"):
    """A run as DefaultRunLauncher leaves it: the code server's address in a tag and the
    worker's pid in its first engine event."""
    import json
    import os

    from dagster._core.events import EngineEventData
    from dagster._core.storage.tags import GRPC_INFO_TAG

    run = create_run_for_test(instance, job_name="case_pipeline", status=DagsterRunStatus.STARTED,
                              tags={GRPC_INFO_TAG: json.dumps({"host": host, "socket": "/tmp/x"}
                                                              if host == "localhost" else
                                                              {"host": host, "port": 4000})})
    instance.report_engine_event(f"Started process for run (pid: {worker_pid}).", run,
                                 EngineEventData.in_process(worker_pid))
    assert os.getpid() != worker_pid
    return run


def test_daemon_launched_run_whose_worker_died_is_failed_and_its_slot_freed():
    import os

    with _instance() as instance:
        dead = _daemon_launched(instance, int(_dead_pid_tags()["aooct/pid"]))
        storage = instance.event_log_storage
        assert storage.claim_concurrency_slot("gpu", dead.run_id, "preprocess_case").is_claimed
        # pid 1 started before the event: alive; a worker on another host: not ours to judge.
        alive = _daemon_launched(instance, 1)
        remote = _daemon_launched(instance, int(_dead_pid_tags()["aooct/pid"]), host="10.0.0.7")
        done = [what for run_id, what in reap_runs(instance) if run_id == dead.run_id]
        assert instance.get_run_by_id(dead.run_id).status == DagsterRunStatus.FAILURE
        assert "run worker" in done[0] and "gone" in done[0] and "freed" in done[1], done
        assert not storage.get_concurrency_info("gpu").claimed_slots
        for run in (alive, remote):
            assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.STARTED
        assert os.path.exists("/proc/1")


def test_daemon_launched_run_whose_worker_pid_was_reused_is_failed():
    import subprocess
    import time

    with _instance() as instance:
        sleeper = subprocess.Popen(["sleep", "30"])   # a process started after the event
        try:
            run = _daemon_launched(instance, sleeper.pid)
            # the event is written now, after the process started: alive
            reap_runs(instance)
            assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.STARTED
            # an event dated before the process started means the pid was reused
            old = _daemon_launched_at(instance, sleeper.pid, time.time() - 60)
            reap_runs(instance)
            assert instance.get_run_by_id(old.run_id).status == DagsterRunStatus.FAILURE
        finally:
            sleeper.kill()
            sleeper.wait()


def _daemon_launched_at(instance, pid: int, timestamp: float):
    from unittest import mock

    with mock.patch("time.time", return_value=timestamp):
        return _daemon_launched(instance, pid)
