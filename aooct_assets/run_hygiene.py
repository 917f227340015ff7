"""Run hygiene: a run whose process died is failed, and no finished run keeps a pool slot.

A step of the ``gpu`` pool holds one of the pool's slots (``dagster.yaml``: one locally).
When the process running it is killed (``kill -9``, OOM killer, a reboot), Dagster never
learns that the run ended: it stays ``STARTED`` and keeps its slot, and every later run
waits for that slot for ever. Marking the run failed by hand does not free it either.

:func:`reap_runs` is the watchdog that puts this right. It runs at the start of every
``aooct process`` / ``aooct demo`` and as the ``run_watchdog`` sensor under the daemon:

1. a run launched in process by ``aooct process`` carries :data:`PROCESS_TAGS` (host, pid
   and the process's start time, so a reused pid is not mistaken for it); when that
   process is gone, the run is reported failed;
1b. a run launched by the daemon's ``DefaultRunLauncher`` runs in a worker process that
   the code server starts; the worker writes its pid in the run's first engine event
   ("Started process for run (pid: N)") and the launcher tags the run with the code
   server's address (``dagster/grpc_info``). When that address is on this host (loopback
   or a unix socket) and the worker's pid is gone, or now belongs to a process started
   after that event, the run is reported failed — a daemon killed with its code server
   and run worker (a crash, a reboot) otherwise leaves the run ``STARTED`` with its slot
   held for ever, since Dagster's run monitoring has no worker health check for this
   launcher;
2. a run from any launcher that has written no event for ``stuck_after_s`` is reported
   failed (``None`` switches this off; the daemon's run monitoring, on in both
   ``dagster.yaml`` variants, also fails runs that do not start or cancel in time);
3. every slot or pending claim held by a finished (or vanished) run is freed, at once
   (the daemon's ``free_slots_after_run_end_seconds`` does the same after a delay).
"""
from __future__ import annotations

import os
import socket
import time

from dagster import DagsterEventType, DefaultSensorStatus, RunsFilter, SkipReason, sensor
from dagster._core.storage.dagster_run import FINISHED_STATUSES, DagsterRunStatus
from dagster._core.storage.tags import GRPC_INFO_TAG

__all__ = ["PROCESS_TAGS", "process_tags", "reap_runs", "make_run_watchdog"]

PROCESS_TAGS = ("aooct/host", "aooct/pid", "aooct/pid_start")
_ACTIVE = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]


def _start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    except PermissionError:
        return "unknown"
    return fields[19] if len(fields) > 19 else "unknown"


def process_tags() -> dict[str, str]:
    """Tags that identify the current process, for runs executed in it."""
    pid = os.getpid()
    return {"aooct/host": socket.gethostname(), "aooct/pid": str(pid),
            "aooct/pid_start": _start_time(pid) or "unknown"}


def _dead(tags: dict) -> bool | None:
    """True when the tagged process is gone, False when alive, None when it cannot be told."""
    if tags.get("aooct/host") != socket.gethostname() or not tags.get("aooct/pid", "").isdigit():
        return None
    start = _start_time(int(tags["aooct/pid"]))
    if start is None:
        return True
    if "unknown" in (start, tags.get("aooct/pid_start")):
        return False
    return start != tags["aooct/pid_start"]


_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "", None)
_WORKER_EVENT = "Started process for run (pid: "


def _started_at(pid: int) -> float | None:
    """Unix time at which ``pid`` started (None: gone or unreadable)."""
    ticks = _start_time(pid)
    if ticks in (None, "unknown"):
        return None
    try:
        with open("/proc/stat") as fh:
            btime = next(int(line.split()[1]) for line in fh if line.startswith("btime "))
    except (OSError, StopIteration, ValueError):
        return None
    return btime + int(ticks) / os.sysconf("SC_CLK_TCK")


def _worker_dead(instance, run) -> tuple[bool, str]:
    """Whether the run worker of a daemon-launched run on this host is gone (and its pid)."""
    import json

    try:
        grpc = json.loads(run.tags.get(GRPC_INFO_TAG) or "null")
    except ValueError:
        return False, ""
    if not isinstance(grpc, dict) or (grpc.get("host") not in _LOCAL_HOSTS and not grpc.get("socket")):
        return False, ""
    for entry in instance.all_logs(run.run_id, of_type=DagsterEventType.ENGINE_EVENT):
        event = entry.dagster_event
        data = event.engine_event_data if event is not None else None
        pid_text = getattr((data.metadata if data else {}).get("pid"), "text", "")
        if (event.message or "").startswith(_WORKER_EVENT) and pid_text.isdigit():
            pid = int(pid_text)
            if _start_time(pid) == "unknown":
                return False, str(pid)          # not ours to read: cannot tell
            started = _started_at(pid)
            # A pid reused by a process started after the worker reported it is not the worker
            # (one second for the clock ticks' rounding).
            return started is None or started > entry.timestamp + 1.0, str(pid)
    return False, ""


def _slot_holders(storage) -> set[str]:
    run_ids = set(storage.get_concurrency_run_ids())
    for key in storage.get_concurrency_keys():
        info = storage.get_concurrency_info(key)
        run_ids |= {s.run_id for s in info.claimed_slots} | {p.run_id for p in info.pending_steps}
    return run_ids


def reap_runs(instance, *, stuck_after_s: float | None = None, now: float | None = None,
              on_failed=None) -> list[tuple[str, str]]:
    """Fail runs whose process is gone (or that are stuck); free slots of finished runs.

    Parameters
    ----------
    instance : DagsterInstance
    stuck_after_s : float, optional
        Fail active runs without any event for this many seconds (None: only dead processes).
    now : float, optional
        Unix time (tests).
    on_failed : callable, optional
        ``on_failed(run, reason)`` after a run is reported failed (e.g. to mark its case
        failed in the metadata DB where no daemon runs the failure sensor).

    Returns
    -------
    list of (run_id, what was done)
    """
    now = time.time() if now is None else now
    done: list[tuple[str, str]] = []
    for record in instance.get_run_records(filters=RunsFilter(statuses=_ACTIVE)):
        run = record.dagster_run
        dead = _dead(run.tags)
        reason = None
        if dead:
            reason = (f"the process that ran it (pid {run.tags['aooct/pid']} on "
                      f"{run.tags['aooct/host']}) is gone: killed or crashed")
        elif dead is None and (worker := _worker_dead(instance, run))[0]:
            reason = (f"its run worker (pid {worker[1]} on {socket.gethostname()}, started by the "
                      f"code server) is gone: killed or crashed with the daemon")
        elif stuck_after_s is not None and dead is None:
            last = max(record.update_timestamp.timestamp(), record.create_timestamp.timestamp())
            events = instance.all_logs(run.run_id)
            if events:
                last = max(last, events[-1].timestamp)
            if now - last > stuck_after_s:
                reason = f"no event for {now - last:.0f} s (stuck_after_s={stuck_after_s:.0f})"
        if reason:
            instance.report_run_failed(run, f"aooct run watchdog: {reason}")
            if on_failed is not None:
                on_failed(run, reason)
            done.append((run.run_id, f"failed: {reason}"))
    storage = instance.event_log_storage
    if storage.supports_global_concurrency_limits:
        for run_id in sorted(_slot_holders(storage)):
            run = instance.get_run_by_id(run_id)
            if run is None or run.status in FINISHED_STATUSES:
                storage.free_concurrency_slots_for_run(run_id)
                done.append((run_id, f"freed pool slots ({'vanished' if run is None else run.status.value})"))
    return done


def make_run_watchdog(*, name: str = "run_watchdog", interval_s: int = 60,
                      stuck_after_s: float | None = None, on_failed=None):
    """A sensor that calls :func:`reap_runs` every ``interval_s`` under the daemon
    (``on_failed``: as for :func:`reap_runs`)."""

    @sensor(name=name, minimum_interval_seconds=interval_s, default_status=DefaultSensorStatus.RUNNING,
            description="Fails runs whose process died and frees pool slots held by finished runs")
    def _watchdog(context):
        done = reap_runs(context.instance, stuck_after_s=stuck_after_s, on_failed=on_failed)
        for run_id, what in done:
            context.log.warning(f"run {run_id}: {what}")
        return SkipReason("; ".join(f"{r[:8]} {w}" for r, w in done) or "all runs healthy")

    return _watchdog
