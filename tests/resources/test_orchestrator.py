"""The daemon check behind the review app's "queued" (issue 22: no daemon, say so)."""
from __future__ import annotations

import time

from dagster import DagsterInstance
from dagster._core.instance.ref import InstanceRef
from dagster._daemon.types import DaemonHeartbeat

from resources.orchestrator import sensor_daemon_state


def test_no_instance_no_daemon_a_stale_one_and_a_running_one(tmp_path):
    home = tmp_path / "dagster"
    state = sensor_daemon_state(home)
    assert not state.running and "no Dagster instance" in state.detail and "aooct process" in state.detail
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        instance.get_daemon_heartbeats()   # creates the storage
    assert "no Dagster daemon has run" in sensor_daemon_state(home).detail
    with DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        instance.add_daemon_heartbeat(DaemonHeartbeat(time.time() - 600, "SENSOR", "d1"))
    stale = sensor_daemon_state(home)
    assert not stale.running and "10 min ago" in stale.detail
    with DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        instance.add_daemon_heartbeat(DaemonHeartbeat(time.time(), "SENSOR", "d1"))
    assert sensor_daemon_state(home).running
