"""Is the orchestrator's daemon running? (what turns a drop into a run without ``aooct process``).

A case dropped or uploaded waits in the drop until the drop sensor requests its run, and the
sensor ticks only inside ``dagster-daemon``. The review app and ``aooct ui`` ask this before
saying "queued", so a home without a daemon says what to start instead.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DaemonState", "sensor_daemon_state", "HEARTBEAT_FRESH_S"]

#: A heartbeat older than this is a daemon that stopped (it beats every 30 s).
HEARTBEAT_FRESH_S = 120.0


@dataclass(frozen=True)
class DaemonState:
    running: bool
    detail: str


def sensor_daemon_state(dagster_home: str | Path | None = None, *, now: float | None = None) -> DaemonState:
    """Whether a ``dagster-daemon`` runs the sensors of the instance in ``dagster_home``
    (default: ``$DAGSTER_HOME``, else the platform's ``$AOOCT_HOME/dagster``).

    Reads the instance's daemon heartbeats (its run storage: SQLite in the folder, or the
    PostgreSQL of its ``dagster.yaml``); starts nothing.
    """
    if dagster_home is None:
        import os

        from resources.config import load_config

        dagster_home = os.environ.get("DAGSTER_HOME") or load_config().dagster_home
    home = Path(dagster_home)
    hint = (f"start `DAGSTER_HOME={home} dagster-daemon run` (with `dagster-webserver`), or run "
            "`aooct process` to ingest the drop in this shell")
    if not (home / "dagster.yaml").is_file() and not (home / "storage").exists():
        return DaemonState(False, f"no Dagster instance at {home} yet; {hint}")
    from dagster import DagsterInstance
    from dagster._core.instance.ref import InstanceRef

    with DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        beats = instance.get_daemon_heartbeats()
    beat = beats.get("SENSOR")
    age = None if beat is None else (time.time() if now is None else now) - beat.timestamp
    if age is None:
        return DaemonState(False, f"no Dagster daemon has run for {home}; {hint}")
    if age > HEARTBEAT_FRESH_S:
        return DaemonState(False, f"the Dagster daemon of {home} last beat {age / 60:.0f} min ago; {hint}")
    return DaemonState(True, f"the Dagster daemon of {home} is running (beat {age:.0f} s ago)")
