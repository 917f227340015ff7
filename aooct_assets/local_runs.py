"""Cases through the platform in this process, without a daemon: ``aooct process`` and ``aooct demo``.

The same path as under the daemon: case folders are copied into the drop location, the
drop sensor's own logic judges them (complete, size- and version-stable, content hash,
quarantine, duplicates, case versions), and each requested run materializes the case
partition in process on the configured Dagster instance, stores and DB. Before anything
runs, :func:`aooct_assets.run_hygiene.reap_runs` fails runs whose process died and frees
their pool slots, so one killed run never wedges the next.
"""
from __future__ import annotations

import json
import os
import signal
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["EMBEDDED_DAGSTER_YAML", "prepare_environment", "stage_case_folders", "process_drop",
           "CaseOutcome", "INSTANCE_READY"]

#: Instance config written to ``$DAGSTER_HOME/dagster.yaml`` when there is none: SQLite
#: storage in DAGSTER_HOME, the ``gpu`` pool limited to one step, queued runs for the daemon,
#: run monitoring (the daemon fails runs that do not start or cancel in time and frees the
#: slots of finished runs; ``aooct process`` reaps dead in-process runs itself).
EMBEDDED_DAGSTER_YAML = """\
# Written by aooct: embedded SQLite instance (see docs/PLATFORM.md for PostgreSQL).
telemetry:
  enabled: false
run_coordinator:
  module: dagster._core.run_coordinator
  class: QueuedRunCoordinator
run_monitoring:
  enabled: true
  start_timeout_seconds: 300
  cancel_timeout_seconds: 300
  max_resume_run_attempts: 0
  poll_interval_seconds: 30
  free_slots_after_run_end_seconds: 30
concurrency:
  runs:
    max_concurrent_runs: 2
  pools:
    default_limit: 1
    granularity: op
"""

_CURSOR_FILE = "local_sensor_cursor.json"
_OUTCOME_TAG = "aooct/outcome"


@dataclass(frozen=True)
class CaseOutcome:
    """What happened to one requested case."""

    drop: str
    partition_key: str
    run_id: str | None
    status: str          # "ok", "qc_failed" (a blocking QC check failed), "failed", "skipped"
    seconds: float
    detail: str = ""


def prepare_environment():
    """Resolve the configuration, set DAGSTER_HOME and write the embedded instance config."""
    from resources.config import load_config

    cfg = load_config()
    os.environ.setdefault("DAGSTER_HOME", str(cfg.dagster_home))
    # MLflow draws a progress bar per model download (one per case and task), which buries
    # the command's own output; a user who wants them can set the variable to true.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    home = Path(os.environ["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    _initialize_instance(home)
    for folder in (cfg.home, cfg.mlflow_artifacts):
        folder.mkdir(parents=True, exist_ok=True)
    return cfg


#: Written in DAGSTER_HOME once its instance storage exists (see :func:`prepare_environment`).
INSTANCE_READY = ".aooct-instance-ready"


def _initialize_instance(home: Path) -> None:
    """Write the embedded ``dagster.yaml`` if there is none and create the instance's
    storage, under a lock: Dagster's SQLite storages are created on first use, and two
    processes creating them at once fail ("table jobs already exists") or leave two
    alembic version rows. Other processes (a test, a daemon started by hand) may open the
    instance once :data:`INSTANCE_READY` exists."""
    import fcntl

    if (home / INSTANCE_READY).exists():
        return
    with open(home / ".aooct-instance.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (home / INSTANCE_READY).exists():
            return
        if not (home / "dagster.yaml").exists():
            tmp = home / ".dagster.yaml.tmp"
            tmp.write_text(EMBEDDED_DAGSTER_YAML)
            os.replace(tmp, home / "dagster.yaml")
        from dagster import DagsterInstance

        instance = DagsterInstance.from_config(str(home))
        try:
            instance.get_runs(limit=1)            # run, event-log and schedule storage exist
            instance.event_log_storage.get_concurrency_keys()
            instance.all_instigator_state()       # schedule storage
        finally:
            instance.dispose()
        (home / INSTANCE_READY).write_text("")


def stage_case_folders(drop_store, folders: list[Path]) -> list[str]:
    """Copy case folders into the drop (``case.json`` last); returns their drop names.

    Raises
    ------
    ValueError
        For a folder without ``case.json``, or holding a symlink or a non-regular file
        (nothing outside the case folder is ever pulled into the store).
    """
    names = []
    for folder in folders:
        folder = Path(folder)
        if not (folder / "case.json").is_file() or (folder / "case.json").is_symlink():
            raise ValueError(f"{folder}: not a case folder (no case.json); give folders holding "
                             "case.json and the volumes it lists")
        files = sorted(p for p in folder.rglob("*") if not p.is_dir() or p.is_symlink())
        odd = [p for p in files if p.is_symlink() or not p.is_file()]
        if odd:
            raise ValueError(f"{folder}: {odd[0].name} is a symbolic link or not a regular file; "
                             "copy the file itself into the case folder")
        base = folder.resolve().name
        if _holds_exactly(drop_store, base, folder, files):
            names.append(base)   # a copy left by an earlier, killed call: not staged twice
            continue
        name = base if not drop_store.list_keys(f"{base}/") else f"{base}-{uuid.uuid4().hex[:8]}"
        for path in sorted(files, key=lambda p: p.name == "case.json"):
            drop_store.put_file(f"{name}/{path.relative_to(folder).as_posix()}", path)
        names.append(name)
    return names


def _holds_exactly(drop_store, name: str, folder: Path, files: list[Path]) -> bool:
    """Whether drop ``name`` holds exactly ``folder``'s files, byte for byte."""
    held = drop_store.list_objects(f"{name}/")
    wanted = {f"{name}/{p.relative_to(folder).as_posix()}": p for p in files}
    if not held or set(held) != set(wanted) or any(held[k] != wanted[k].stat().st_size for k in held):
        return False
    return all(drop_store.get_bytes(k) == wanted[k].read_bytes() for k in held)


def _remove_staged(drop_store, names, log) -> None:
    """Remove what :func:`stage_case_folders` staged and no run retired (skipped, failed
    before ingest, interrupted): the case folders themselves are untouched, and a staged
    DICOM copy, not yet de-identified, must not stay in the drop."""
    for name in names:
        keys = drop_store.delete_prefix(name)
        if keys:
            log(f"  drop: removed the staged copy {name}/ ({len(keys)} files; the folder itself is kept)")


@contextmanager
def _sigterm_as_interrupt():
    """SIGTERM interrupts the run like Ctrl-C (Dagster then ends it cleanly, freeing its slots)."""
    def _raise(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _mark_failed(cfg):
    from aooct_assets.sensors import mark_case_failed

    return lambda run, reason: mark_case_failed(cfg.db_url, run, reason)


def _failure_text(event) -> str:
    """``<step>: <the error's own message>`` of a STEP_FAILURE event (not Dagster's summary)."""
    data = event.event_specific_data
    error = getattr(data, "error", None)
    cause = error
    while cause is not None and getattr(cause, "cause", None) is not None and \
            "Failure" not in (cause.cls_name or ""):
        cause = cause.cause
    text = (getattr(cause, "message", None) or getattr(error, "message", None) or event.message or "").strip()
    return f"{event.step_key}: {text.splitlines()[0] if text else 'failed'}"


def _already_done(instance, partition_key: str, content_hash: str) -> str | None:
    from dagster import DagsterRunStatus, RunsFilter

    from aooct_assets.case_versions import CONTENT_HASH_TAG

    runs = instance.get_runs(filters=RunsFilter(tags={"dagster/partition": partition_key,
                                                      CONTENT_HASH_TAG: content_hash[:63]}))
    for run in runs:
        if run.status == DagsterRunStatus.SUCCESS or run.tags.get(_OUTCOME_TAG) == "qc_failed":
            return f"already processed by run {run.run_id[:8]}"
        if run.status in (DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED,
                          DagsterRunStatus.STARTING, DagsterRunStatus.STARTED):
            return f"being processed by run {run.run_id[:8]}"
    return None


def process_drop(cfg, *, folders: list[Path] | None = None, settle_s: float = 1.0, log=print,
                 launched_by: str = "aooct process") -> list[CaseOutcome]:
    """Judge the drop (or only ``folders``, staged into it) and run each requested case here.

    Returns one :class:`CaseOutcome` per requested case, in drop-name order. Staged copies
    that no run retired to ``_processed/`` are removed from the drop on the way out
    (skipped as already done, failed, interrupted); one left by a killed call is reused.
    """
    from dagster import DagsterInstance

    from aooct_assets.run_hygiene import reap_runs
    from resources.object_store import make_object_store

    instance = DagsterInstance.get()
    for run_id, what in reap_runs(instance, on_failed=_mark_failed(cfg)):
        log(f"  watchdog: run {run_id[:8]} {what}")
    drop = make_object_store(cfg.drop, **cfg.store_options())
    only = set(stage_case_folders(drop, list(folders))) if folders else None
    try:
        return _judge_and_run(cfg, instance, drop, only, settle_s=settle_s, log=log,
                              launched_by=launched_by)
    finally:
        if only:
            _remove_staged(drop, sorted(only), log)


def _judge_and_run(cfg, instance, drop, only, *, settle_s, log, launched_by) -> list[CaseOutcome]:
    from aooct_assets.definitions import build_definitions
    from aooct_assets.jobs import CASE_JOB_NAME
    from aooct_assets.partitions import cases_partitions
    from aooct_assets.run_hygiene import process_tags
    from aooct_assets.sensors import run_requests_for, scan_drop

    # Named folders are processed unless the instance shows their content done or in flight
    # (below), whatever an earlier look at the drop remembered; the drop-wide look keeps the
    # sensor's cursor, so identical content dropped again is a duplicate there.
    cursor_file = None if only is not None else cfg.home / _CURSOR_FILE
    state = (json.loads(cursor_file.read_text() or "{}")
             if cursor_file is not None and cursor_file.exists() else {})
    requests = []
    for tick in range(2):  # a drop must look the same on two ticks before it is judged
        if tick:
            time.sleep(settle_s)
        found, state, notes = scan_drop(drop, state, stable_ticks=2, only=only)
        requests += found
        for note in notes if tick else []:
            log(f"  drop: {note}")
    if cursor_file is not None:
        tmp = cursor_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, sort_keys=True))
        os.replace(tmp, cursor_file)
    run_requests, new_keys, notes = run_requests_for(instance, drop, requests,
                                                     conflict_policy=cfg.case_id_conflict)
    for note in notes:
        log(f"  drop: {note}")
    if new_keys:
        instance.add_dynamic_partitions(cases_partitions.name, new_keys)
    job = build_definitions(cfg).resolve_job_def(CASE_JOB_NAME)
    outcomes = []
    for req in run_requests:
        drop_name, digest = req.tags["aooct/drop"], req.run_config["ops"]["raw_volume"]["config"]["content_hash"]
        done = _already_done(instance, req.partition_key, digest)
        if done:
            outcomes.append(CaseOutcome(drop_name, req.partition_key, None, "skipped", 0.0, done))
            continue
        t0 = time.perf_counter()
        with _sigterm_as_interrupt():
            res = job.execute_in_process(
                partition_key=req.partition_key, instance=instance, raise_on_error=False,
                run_config={**req.run_config, "loggers": {"console": {"config": {"log_level": "WARNING"}}}},
                tags={**req.tags, **process_tags(), "aooct/launched_by": launched_by})
        blocked = sorted(ev.event_specific_data.check_name for ev in res.all_events
                         if ev.event_type_value == "ASSET_CHECK_EVALUATION"
                         and not ev.event_specific_data.passed
                         and ev.event_specific_data.severity.value == "ERROR")
        failure = next((_failure_text(ev) for ev in res.all_events if ev.event_type_value == "STEP_FAILURE"), "")
        status = "ok" if res.success else "qc_failed" if blocked else "failed"
        if status == "qc_failed":  # the same content gives the same QC: done, like a success
            instance.add_run_tags(res.run_id, {_OUTCOME_TAG: status})
        outcomes.append(CaseOutcome(
            drop_name, req.partition_key, res.run_id, status,
            time.perf_counter() - t0,
            f"blocked by QC: {', '.join(blocked)}" if blocked else (failure or "")[:300]))
    return outcomes
