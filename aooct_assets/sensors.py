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
   ``_quarantine/<name>/`` next to a ``REASON.txt`` that says what is wrong
   (:mod:`aooct_assets.quarantine`);
4. its names are screened against the identifiers it carries (``subject_id`` as received,
   the DICOM headers' patient names, IDs and birth date; :mod:`aooct_core.io.phi`): a
   ``case_id`` or volume file name holding one quarantines the drop; a folder name holding
   one is replaced by the drop's token (``drop-<keyed hash>``) before anything is requested.
   Until then the drop is named by its token in the cursor and the notes, both of which
   Dagster stores;
5. the content hash (canonical ``case.json`` + volume bytes) is the run key, so the same
   content dropped twice gives one run (the second copy is removed, its files listed
   with their sha256 in ``_duplicates/<name>-<hash>/REASON.txt``);
6. the partition is added and the run requested in one ``SensorResult``.

The run's ``raw_volume`` step copies the drop into the object store and only then moves
it to ``_processed/``, so no drop is ever lost; the run key makes it processed once.
"""

import hashlib
import json
from collections import defaultdict

from dagster import (DefaultSensorStatus, RunRequest, SensorEvaluationContext, SensorResult,
                     SkipReason, sensor)

from aooct_assets.partitions import cases_partitions
from aooct_assets.quarantine import drop_token, quarantine, retire_duplicate, scrub_quarantined
from aooct_core.io import content_hash_of_case
from aooct_core.io.drop_layout import DUPLICATES, RESERVED_PREFIXES
from aooct_core.io.phi import find_identifiers, identifiers_of_case, names_refusal, redact_identifiers
from resources.object_store import ObjectStore, make_object_store

__all__ = ["make_drop_sensor", "mark_case_failed", "scan_drop", "run_requests_for", "content_hash_of_drop",
           "quarantine", "scrub_quarantined"]


def content_hash_of_drop(store: ObjectStore, name: str, case_dict: dict) -> str:
    """:func:`aooct_core.io.case_content_hash` of a drop read through its object store.

    Folder name, key order/whitespace in ``case.json`` and unlisted files do not count, and
    the same case gives the same hash in a local folder and in any drop location.
    """
    def read_volume_bytes(vol: str) -> tuple[int, list[bytes]]:
        data = store.get_bytes(f"{name}/{vol}")
        return len(data), [data]

    return content_hash_of_case(case_dict, read_volume_bytes)


def _hash_and_identifiers(store: ObjectStore, name: str, case_dict: dict):
    """:func:`content_hash_of_drop` and, read on the way, the patient identifiers in the
    DICOM volumes' headers (a volume that cannot be read as DICOM gives none: its ingest
    refuses it with the reason)."""
    import tempfile
    from pathlib import Path

    from aooct_core.io import InputError
    from aooct_core.io.deid import dicom_identifiers, looks_like_dicom

    found = []

    def read_volume_bytes(vol: str) -> tuple[int, list[bytes]]:
        data = store.get_bytes(f"{name}/{vol}")
        if looks_like_dicom(vol, data[:132]):
            with tempfile.TemporaryDirectory(prefix="aooct-screen-") as tmp:
                path = Path(tmp) / "volume.dcm"
                path.write_bytes(data)
                try:
                    found.extend(dicom_identifiers(path))
                except InputError:
                    pass   # refused, with its reason, at de-identification in raw_volume
        return len(data), [data]

    return content_hash_of_case(case_dict, read_volume_bytes), found


def _rename_target(store: ObjectStore, name: str, sig: str) -> str:
    """The neutral name for drop ``name`` (whose name holds an identifier): its keyed token,
    or token-<sig> when that folder holds another drop. An interrupted rename (``case.json``
    moves last) is resumed into the same folder."""
    new = drop_token(name)
    if store.exists(f"{new}/case.json"):
        new = f"{new}-{sig[:8]}"
    return new


def _signature(listing: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(sorted(listing.items())).encode()).hexdigest()[:16]


def _read_case_json(store: ObjectStore, name: str, size: int) -> dict:
    """``case.json`` of drop ``name``, parsed within the read budget and validated.

    The budget (``aooct_core.io.budget``: bytes, nesting depth, number length) is the one
    every reader uses; a file listed larger than it is refused without being read.

    Raises
    ------
    InputError
        Too large, not UTF-8 JSON within the budget, or not a valid case.
    """
    from aooct_core.casefile import parse_case_bytes
    from aooct_core.io import InputError, default_budget

    source = store.uri(f"{name}/case.json")
    limit = default_budget().max_json_bytes
    if size > limit:
        raise InputError(source, f"is {size} bytes; a case description is at most {limit} bytes "
                         "(AOOCT_MAX_JSON_BYTES) — is this the right file?")
    return parse_case_bytes(store.get_bytes(f"{name}/case.json"), source=source)


def _judge(store: ObjectStore, name: str, listing: dict[str, int], refused: dict[str, str],
           entry: dict, requested: dict[str, str]):
    """``(verdict, detail, identifiers)`` for one stable drop; verdict is one of "wait",
    "quarantine", "rename" (its folder name holds an identifier), "duplicate", "request",
    "requested". ``identifiers`` are those read from the drop (held in memory only)."""
    from aooct_core.io import InputError

    if refused:
        return "quarantine", ("not regular files (the drop location never follows links or opens "
                              "FIFOs; copy the files themselves): "
                              + "; ".join(f"{k}: {why}" for k, why in refused.items())), []
    if f"{name}/case.json" not in listing:
        return "wait", "waiting for case.json", []
    try:
        case_dict = _read_case_json(store, name, listing[f"{name}/case.json"])
    except InputError as exc:
        return "quarantine", f"case.json is invalid: {exc}", []
    ids = identifiers_of_case(case_dict)
    if find_identifiers(name, ids):   # before waiting for volumes: resumes an interrupted rename
        return "rename", None, ids
    missing = [v for v in case_dict["volumes"] if f"{name}/{v}" not in listing]
    if missing:
        return "wait", f"waiting for volumes {missing}", ids
    empty = [v for v in case_dict["volumes"] if listing[f"{name}/{v}"] == 0]
    if empty:
        return "quarantine", f"volumes {empty} are empty (0 bytes)", ids
    digest = entry["hash"]   # set only once the drop's names passed the screening below
    if not digest:
        digest, dicom_ids = _hash_and_identifiers(store, name, case_dict)
        ids += dicom_ids
        refusal = names_refusal(case_dict["case_id"], case_dict["volumes"], ids)
        if refusal is not None:
            return "quarantine", refusal, ids
        if find_identifiers(name, ids):
            return "rename", None, ids
        entry["hash"] = digest
    if digest in requested:
        if requested[digest] != name:
            return "duplicate", (digest, case_dict), ids
        return "requested", None, ids  # same drop still waiting for its run to move it
    return "request", (digest, case_dict), ids


def scan_drop(store: ObjectStore, state: dict, *, stable_ticks: int = 2,
              only: set[str] | None = None) -> tuple[list[dict], dict, list[str]]:
    """One sensor tick over ``store`` (pure apart from quarantine/duplicate moves).

    Parameters
    ----------
    store : ObjectStore
        The drop location.
    state : dict
        The previous cursor state (``{}`` at first).
    stable_ticks : int
        Ticks a drop's listing (keys and version tokens: size, mtime) must stay unchanged
        before it is judged; 1 judges every drop at once.
    only : set of str, optional
        Judge only these drops (``aooct process CASE_DIR...``); the others are left as they
        are. A drop renamed because its folder name identifies the patient has its new name
        added to ``only`` (so its caller can clean it up).

    Returns
    -------
    requests : list of dict
        ``{"drop", "case_id", "content_hash", "run_key", "case"}`` per new case.
    state : dict
        The new cursor state.
    notes : list of str
        One line per drop that is waiting, renamed, quarantined or a duplicate (for the skip
        reason / log). A drop is named by its token (``drop-<keyed hash>``) until its names
        have been screened, since the skip reason and the cursor are stored.

    Notes
    -----
    One drop never stalls the others: whatever judging a drop raises (other than a
    transient store error, which is retried on the next tick) quarantines that drop with
    the error as its reason. A requested drop whose content changes before its run took
    it (a copier that preallocates, a file corrupted in place) is judged again, and its
    new content requested under a new run key.
    """
    from resources.config import deid_uid_key
    from resources.object_store import TransientStoreError

    seen = dict(state.get("seen", {}))
    requested: dict[str, str] = dict(state.get("requested", {}))  # content_hash -> drop name
    groups: dict[str, dict[str, str]] = defaultdict(dict)
    refused: dict[str, dict[str, str]] = defaultdict(dict)
    sizes: dict[str, int] = {}
    for key, (size, token) in store.list_versions("").items():  # one listing: sizes and versions
        top, sep, _rest = key.partition("/")
        if sep and not top.startswith(RESERVED_PREFIXES):
            groups[top][key] = f"{size}:{token}"
            sizes[key] = size
    for key, why in store.refused_entries("").items():
        top = key.partition("/")[0]
        if not top.startswith(RESERVED_PREFIXES):
            refused[top][key] = why
            groups[top].setdefault(key, "refused")
    requests, notes = [], []
    key = deid_uid_key()
    present = {drop_token(n, key=key) for n in groups}
    alive = set(groups)
    for name in sorted(groups):
        if only is not None and name not in only:
            continue
        sig = _signature(groups[name])
        token = drop_token(name, key=key)   # the cursor and the notes never hold a folder name
        prev = seen.get(token, {})
        same = prev.get("sig") == sig
        entry = {"sig": sig, "count": prev.get("count", 0) + 1 if same else 1,
                 "hash": prev.get("hash") if same else None, "runs": prev.get("runs", 0)}
        seen[token] = entry
        if not same and prev.get("hash") and requested.get(prev["hash"]) == name:
            requested.pop(prev["hash"])  # requested content changed before its run took it
        if entry["count"] < stable_ticks:
            notes.append(f"{token}: waiting for sizes to stay unchanged ({entry['count']}/{stable_ticks} ticks)")
            continue
        listing = {k: sizes.get(k, 0) for k in groups[name] if k not in refused[name]}
        ids: list = []
        for attempt in range(2):
            try:
                verdict, detail, ids = _judge(store, name, listing, refused[name], entry, requested)
            except TransientStoreError as exc:
                verdict, detail = "retry", f"store error, judged again on the next tick ({exc})"
            except Exception as exc:  # noqa: BLE001 - one drop must never stall the others
                verdict, detail = "quarantine", (f"could not be read ({type(exc).__name__}: {exc}); "
                                                 "fix the drop and copy it in again")
            if verdict != "rename":
                break
            if attempt:   # a token cannot hold an identifier; refuse rather than loop
                verdict, detail = "quarantine", "its folder name still holds an identifier after renaming"
                break
            # The folder name identifies the patient: the drop is renamed to its token and
            # judged again under it (run tags, _processed/ and the DB only see the token).
            new = _rename_target(store, name, sig)
            store.move_prefix(name, new)
            notes.append(f"{new}: the drop folder was renamed to its token; its name held the "
                         f"patient's {', '.join(find_identifiers(name, ids))}")
            seen.pop(token)
            versions = store.list_versions(new + "/")
            listing = {k: size for k, (size, _v) in versions.items()}
            entry["sig"] = _signature({k: f"{size}:{v}" for k, (size, v) in versions.items()})
            name, token = new, drop_token(new, key=key)
            seen[token] = entry
            present.add(token)
            alive.add(new)
            if only is not None:
                only.add(new)
        label = name if entry["hash"] else token   # a folder name is shown once it was screened
        if verdict in ("wait", "retry"):
            notes.append(f"{label}: {redact_identifiers(detail, ids)[0]}")
        elif verdict == "quarantine":
            dest = quarantine(store, name, detail, sig, identifiers=ids)
            notes.append(f"{token}: quarantined to {dest}: {redact_identifiers(detail, ids)[0][:200]}")
            seen.pop(token)
        elif verdict == "duplicate":
            digest, case_dict = detail
            dest = f"{DUPLICATES}/{name}-{digest[:8]}"
            retire_duplicate(store, name, dest, listing, (
                f"same content (sha256 {digest}) as drop {requested[digest]!r}, "
                f"case {case_dict['case_id']!r}, which was already requested"))
            notes.append(f"{name}: duplicate of {requested[digest]}, recorded in {dest}/REASON.txt")
            seen.pop(token)
        elif verdict == "request":
            digest, case_dict = detail
            requested[digest] = name
            entry["runs"] += 1
            run_key = digest if entry["runs"] == 1 else f"{digest}-{entry['runs']}"
            requests.append({"drop": name, "case_id": case_dict["case_id"], "content_hash": digest,
                             "run_key": run_key, "case": case_dict})
    for token in list(seen):
        if token not in present:  # moved to _processed/ by its run (or removed by a person)
            seen.pop(token)
    for digest, drop_name in requested.items():
        if drop_name not in alive and not drop_name.endswith(" (processed)"):
            requested[digest] = f"{drop_name} (processed)"
    return requests, {"seen": seen, "requested": requested}, notes


def run_requests_for(instance, store: ObjectStore, requests: list[dict], *,
                     conflict_policy: str = "version", sig: str = "") -> tuple[list, list[str], list[str]]:
    """Dagster ``RunRequest``s for ``scan_drop``'s requests, each on its case version's partition.

    Returns ``(run_requests, new_partition_keys, notes)``; under the ``quarantine`` policy a
    drop whose ``case_id`` already holds other content is quarantined instead.
    """
    from aooct_assets.case_versions import CONFLICT_POLICIES, CONTENT_HASH_TAG, resolve_partition

    if conflict_policy not in CONFLICT_POLICIES:
        raise ValueError(f"case-id conflict policy must be one of {CONFLICT_POLICIES}; got "
                         f"{conflict_policy!r} (AOOCT_CASE_ID_CONFLICT)")
    existing = set(instance.get_dynamic_partitions(cases_partitions.name))
    pending: dict[str, str] = {}
    out, notes = [], []
    for r in requests:
        key, conflict = resolve_partition(instance, r["case_id"], r["content_hash"], pending=pending,
                                          existing=existing)
        if conflict and conflict_policy == "quarantine":
            dest = quarantine(store, r["drop"], (
                f"case_id {r['case_id']!r} is already stored with other content; this drop "
                f"(sha256 {r['content_hash']}) was refused (AOOCT_CASE_ID_CONFLICT=quarantine). "
                "Give it a new case_id, or set the policy to 'version'"), r["content_hash"])
            notes.append(f"{r['drop']}: quarantined to {dest} (case_id conflict)")
            continue
        if conflict:
            notes.append(f"{r['drop']}: case {r['case_id']!r} already holds other content; "
                         f"stored as new version {key!r}")
        pending[key] = r["content_hash"]
        out.append(RunRequest(
            run_key=r["run_key"], partition_key=key,
            run_config={"ops": {"raw_volume": {"config": {
                "drop_prefix": r["drop"], "content_hash": r["content_hash"]}}}},
            tags={"aooct/drop": r["drop"], CONTENT_HASH_TAG: r["content_hash"][:63]}))
    new_keys = sorted({rr.partition_key for rr in out} - existing)
    return out, new_keys, notes


def make_drop_sensor(drop: str | ObjectStore, *, job_name: str, name: str = "case_drop_sensor",
                     endpoint_url: str | None = None, minimum_interval_seconds: int = 15,
                     stable_ticks: int = 2, default_running: bool = True,
                     conflict_policy: str = "version"):
    """Build the drop sensor for ``drop`` (a folder, ``s3://bucket/prefix`` or an ObjectStore).

    The sensor requests ``job_name`` for the case's partition (``case_id``, or a new version
    ``case_id~vN`` for other content under a known ``case_id``: see
    :mod:`aooct_assets.case_versions`) with run key = content hash, and passes the drop name
    to the ``raw_volume`` step through run config.
    """

    def _store() -> ObjectStore:
        return drop if isinstance(drop, ObjectStore) else make_object_store(drop, endpoint_url=endpoint_url)

    @sensor(name=name, job_name=job_name, minimum_interval_seconds=minimum_interval_seconds,
            default_status=DefaultSensorStatus.RUNNING if default_running else DefaultSensorStatus.STOPPED,
            description=f"New complete case folders in {drop!r} → one partitioned run each")
    def _drop_sensor(context: SensorEvaluationContext):
        state = json.loads(context.cursor) if context.cursor else {}
        store = _store()
        requests, new_state, notes = scan_drop(store, state, stable_ticks=stable_ticks)
        run_requests, new_partitions, more = run_requests_for(context.instance, store, requests,
                                                              conflict_policy=conflict_policy)
        for note in notes + more:
            context.log.info(note)
        cursor = json.dumps(new_state, sort_keys=True)
        if not run_requests:
            return SensorResult(skip_reason=SkipReason("; ".join(notes + more) or "no new drops"),
                                cursor=cursor)
        return SensorResult(
            run_requests=run_requests,
            dynamic_partitions_requests=[cases_partitions.build_add_request(new_partitions)]
            if new_partitions else [],
            cursor=cursor,
        )

    return _drop_sensor


def mark_case_failed(db_url: str, run, reason: str | None = None) -> None:
    """Mark the case of the failed ``run`` (its ``dagster/partition``) as ``failed``; ``reason``
    when given (a dead run worker), else the step's own, recorded by the failure hook, stays."""
    from resources.metadata_db import SqlMetadataDB

    case_id = run.tags.get("dagster/partition")
    if not case_id:
        return
    db = SqlMetadataDB(db_url)
    try:
        if db.get_case(case_id) is not None:
            db.set_case_status(case_id, "failed")
            db.record_run(run.run_id, case_id, status="failure", dagster_run_id=run.run_id, reason=reason)
    finally:
        db.close()


def make_failure_sensor(db_url: str, *, name: str = "case_failure_sensor"):
    """Mark the case of a failed run as ``failed`` in the metadata DB (the review app shows it)."""
    from dagster import RunFailureSensorContext, run_failure_sensor

    @run_failure_sensor(name=name, default_status=DefaultSensorStatus.RUNNING,
                        description="Failed case runs → case status 'failed' in the metadata DB")
    def _failure_sensor(context: RunFailureSensorContext):
        mark_case_failed(db_url, context.dagster_run)

    return _failure_sensor
