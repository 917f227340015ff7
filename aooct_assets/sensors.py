"""Drop sensor: turn complete case folders in a drop location into partitioned runs.

A *drop* is a top-level folder (local) or prefix (S3) of the drop location holding
``case.json`` and the volumes it lists. Names starting with ``_`` or ``.`` are the
sensor's own (``_quarantine/``, ``_duplicates/``, ``_processed/``) and are ignored.

Per tick, for each drop:

1. its listing (keys and sizes) must be identical on two consecutive ticks — a drop
   that is still being copied is left alone (state is kept in the cursor, so a sensor
   restart only delays, never loses, a drop);
2. ``case.json`` must exist and every volume it lists must be present — otherwise the
   drop is *partial* and waits;
3. an invalid ``case.json`` or an empty volume is *malformed*: the drop is moved to
   ``_quarantine/<name>/`` next to a ``REASON.txt`` that says what is wrong;
4. the content hash (canonical ``case.json`` + volume bytes) is the run key, so the same
   content dropped twice gives one run (the second copy goes to ``_duplicates/``);
5. the partition is added and the run requested in one ``SensorResult``.

The run's ``raw_volume`` step copies the drop into the object store and only then moves
it to ``_processed/``, so no drop is ever lost; the run key makes it processed once.
"""

import hashlib
import json
from collections import defaultdict

from dagster import (DefaultSensorStatus, RunRequest, SensorEvaluationContext, SensorResult,
                     SkipReason, sensor)

from aooct_assets.partitions import cases_partitions
from aooct_core.io import content_hash_of_case
from resources.object_store import ObjectStore, make_object_store

__all__ = ["make_drop_sensor", "scan_drop", "content_hash_of_drop", "RESERVED_PREFIXES"]

RESERVED_PREFIXES = ("_", ".")
QUARANTINE = "_quarantine"
DUPLICATES = "_duplicates"


def content_hash_of_drop(store: ObjectStore, name: str, case_dict: dict) -> str:
    """:func:`aooct_core.io.case_content_hash` of a drop read through its object store.

    Folder name, key order/whitespace in ``case.json`` and unlisted files do not count, and
    the same case gives the same hash in a local folder and in any drop location.
    """
    def read_volume_bytes(vol: str) -> tuple[int, list[bytes]]:
        data = store.get_bytes(f"{name}/{vol}")
        return len(data), [data]

    return content_hash_of_case(case_dict, read_volume_bytes)


def _signature(listing: dict[str, int]) -> str:
    return hashlib.sha256(json.dumps(sorted(listing.items())).encode()).hexdigest()[:16]


def quarantine(store: ObjectStore, name: str, reason: str, sig: str) -> str:
    """Move drop ``name`` under ``_quarantine/`` with ``REASON.txt``; returns the new prefix."""
    dest = f"{QUARANTINE}/{name}"
    if store.list_keys(dest + "/"):
        dest = f"{dest}-{sig[:8]}"
    # The reason is written first: if the move is interrupted, the half-moved drop is
    # still explained, and every file exists in exactly one of the two places.
    store.put_bytes(f"{dest}/REASON.txt", (reason.rstrip() + "\n").encode())
    store.move_prefix(name, dest)
    return dest


def scan_drop(store: ObjectStore, state: dict, *, stable_ticks: int = 2) -> tuple[list[dict], dict, list[str]]:
    """One sensor tick over ``store`` (pure apart from quarantine/duplicate moves).

    Parameters
    ----------
    store : ObjectStore
        The drop location.
    state : dict
        The previous cursor state (``{}`` at first).
    stable_ticks : int
        Ticks a drop's listing must stay unchanged before it is judged.

    Returns
    -------
    requests : list of dict
        ``{"drop": name, "case_id", "content_hash", "case": case.json dict}`` per new case.
    state : dict
        The new cursor state.
    notes : list of str
        One line per drop that is waiting, quarantined or a duplicate (for the skip reason / log).
    """
    from aooct_core.casefile import validate_case_dict
    from aooct_core.io import InputError

    seen = dict(state.get("seen", {}))
    requested: dict[str, str] = dict(state.get("requested", {}))  # content_hash -> drop name
    groups: dict[str, dict[str, int]] = defaultdict(dict)
    for key, size in store.list_objects("").items():
        top, sep, _rest = key.partition("/")
        if sep and not top.startswith(RESERVED_PREFIXES):
            groups[top][key] = size
    requests, notes = [], []
    for name in sorted(groups):
        listing = groups[name]
        sig = _signature(listing)
        prev = seen.get(name, {})
        count = prev.get("count", 0) + 1 if prev.get("sig") == sig else 1
        seen[name] = {"sig": sig, "count": count, "hash": prev.get("hash") if prev.get("sig") == sig else None}
        if count < stable_ticks:
            notes.append(f"{name}: waiting for sizes to stay unchanged ({count}/{stable_ticks} ticks)")
            continue
        if f"{name}/case.json" not in listing:
            notes.append(f"{name}: waiting for case.json")
            continue
        try:
            case_dict = json.loads(store.get_bytes(f"{name}/case.json").decode("utf-8"))
            validate_case_dict(case_dict, source=store.uri(f"{name}/case.json"))
        except (UnicodeDecodeError, json.JSONDecodeError, InputError) as exc:
            dest = quarantine(store, name, f"case.json is invalid: {exc}", sig)
            notes.append(f"{name}: quarantined to {dest} (invalid case.json)")
            seen.pop(name)
            continue
        missing = [v for v in case_dict["volumes"] if f"{name}/{v}" not in listing]
        if missing:
            notes.append(f"{name}: waiting for volumes {missing}")
            continue
        empty = [v for v in case_dict["volumes"] if listing[f"{name}/{v}"] == 0]
        if empty:
            dest = quarantine(store, name, f"volumes {empty} are empty (0 bytes)", sig)
            notes.append(f"{name}: quarantined to {dest} (empty volumes)")
            seen.pop(name)
            continue
        digest = seen[name]["hash"] or content_hash_of_drop(store, name, case_dict)
        seen[name]["hash"] = digest
        if digest in requested:
            if requested[digest] != name:
                dest = f"{DUPLICATES}/{name}-{digest[:8]}"
                store.put_bytes(f"{dest}/REASON.txt", (
                    f"same content (sha256 {digest}) as drop {requested[digest]!r}, "
                    f"case {case_dict['case_id']!r}, which was already requested\n").encode())
                store.move_prefix(name, dest)
                notes.append(f"{name}: duplicate of {requested[digest]}, moved to {dest}")
                seen.pop(name)
            continue  # same drop still waiting for its run to move it: already requested
        requested[digest] = name
        requests.append({"drop": name, "case_id": case_dict["case_id"], "content_hash": digest,
                         "case": case_dict})
    for name in list(seen):
        if name not in groups:  # moved to _processed/ by its run (or removed by a person)
            seen.pop(name)
            for digest, drop_name in requested.items():
                if drop_name == name:
                    requested[digest] = f"{name} (processed)"
    return requests, {"seen": seen, "requested": requested}, notes


def make_drop_sensor(drop: str | ObjectStore, *, job_name: str, name: str = "case_drop_sensor",
                     endpoint_url: str | None = None, minimum_interval_seconds: int = 15,
                     stable_ticks: int = 2, default_running: bool = True):
    """Build the drop sensor for ``drop`` (a folder, ``s3://bucket/prefix`` or an ObjectStore).

    The sensor requests ``job_name`` for partition ``case_id`` with run key = content hash,
    and passes the drop name to the ``raw_volume`` step through run config.
    """

    def _store() -> ObjectStore:
        return drop if isinstance(drop, ObjectStore) else make_object_store(drop, endpoint_url=endpoint_url)

    @sensor(name=name, job_name=job_name, minimum_interval_seconds=minimum_interval_seconds,
            default_status=DefaultSensorStatus.RUNNING if default_running else DefaultSensorStatus.STOPPED,
            description=f"New complete case folders in {drop!r} → one partitioned run each")
    def _drop_sensor(context: SensorEvaluationContext):
        state = json.loads(context.cursor) if context.cursor else {}
        requests, new_state, notes = scan_drop(_store(), state, stable_ticks=stable_ticks)
        for note in notes:
            context.log.info(note)
        new_partitions = sorted({r["case_id"] for r in requests
                                 if not context.instance.has_dynamic_partition(cases_partitions.name, r["case_id"])})
        run_requests = [
            RunRequest(
                run_key=r["content_hash"],
                partition_key=r["case_id"],
                run_config={"ops": {"raw_volume": {"config": {
                    "drop_prefix": r["drop"], "content_hash": r["content_hash"]}}}},
                tags={"aooct/drop": r["drop"], "aooct/content_hash": r["content_hash"][:63]},
            )
            for r in requests
        ]
        cursor = json.dumps(new_state, sort_keys=True)
        if not run_requests:
            return SensorResult(skip_reason=SkipReason("; ".join(notes) or "no new drops"),
                                cursor=cursor)
        return SensorResult(
            run_requests=run_requests,
            dynamic_partitions_requests=[cases_partitions.build_add_request(new_partitions)]
            if new_partitions else [],
            cursor=cursor,
        )

    return _drop_sensor


def make_failure_sensor(db_url: str, *, name: str = "case_failure_sensor"):
    """Mark the case of a failed run as ``failed`` in the metadata DB (the review app shows it)."""
    from dagster import RunFailureSensorContext, run_failure_sensor

    @run_failure_sensor(name=name, default_status=DefaultSensorStatus.RUNNING,
                        description="Failed case runs → case status 'failed' in the metadata DB")
    def _failure_sensor(context: RunFailureSensorContext):
        from resources.metadata_db import SqlMetadataDB

        case_id = context.dagster_run.tags.get("dagster/partition")
        if not case_id:
            return
        db = SqlMetadataDB(db_url)
        try:
            if db.get_case(case_id) is not None:
                db.set_case_status(case_id, "failed")
                db.record_run(context.dagster_run.run_id, case_id, status="failure",
                              dagster_run_id=context.dagster_run.run_id)
        finally:
            db.close()

    return _failure_sensor
