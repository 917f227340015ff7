"""``raw_volume``: copy a dropped case into the object store, register it, retire the drop."""

import hashlib
import json
from datetime import datetime, timezone

from dagster import AssetExecutionContext, Config, DataVersion, Failure, MaterializeResult, asset

from aooct_assets.assets._common import (CODE_VERSION, RETRY, artifact_metadata, case_prefix,
                                         db_of, json_bytes, put, record_artifacts, step_errors,
                                         store_of)
from aooct_assets.case_versions import base_case_id
from aooct_assets.partitions import cases_partitions
from aooct_assets.sensors import content_hash_of_drop, quarantine
from aooct_core.io import content_hash_of_case
from aooct_core.io.jsonsafe import loads_bounded
from aooct_core.io.deid import DEID_PROFILE
from aooct_core.io.drop_layout import DEID_RECORD, PROCESSED
from aooct_core.io.phi import find_identifiers, identifiers_of_case, names_refusal, redact_identifiers
from resources.config import deid_uid_key
from resources.dagster_resources import unwrap

__all__ = ["raw_volume", "RawVolumeConfig"]


class RawVolumeConfig(Config):
    """Set by the drop sensor; leave empty to re-run from the copy already in the store."""

    drop_prefix: str = ""
    content_hash: str = ""


def _deidentified(drop, src: str, name: str, data: bytes, uid_key: bytes, deid: dict,
                  ids: list) -> bytes:
    """The bytes to store for volume ``name``: DICOM de-identified, anything else as is.

    The header's patient identifiers are added to ``ids``. A DICOM that cannot be
    de-identified (burned-in annotation, unreadable) quarantines the drop with the reason;
    nothing of it is stored.
    """
    from aooct_core.io import InputError
    from aooct_core.io.deid import deidentify_dicom_bytes, looks_like_dicom

    if not looks_like_dicom(name, data[:132]):
        return data
    try:
        res = deidentify_dicom_bytes(data, uid_key=uid_key, source=drop.uri(f"{src}/{name}"))
    except InputError as exc:
        dest = quarantine(drop, src, f"refused at de-identification: {exc}", hashlib.sha256(data).hexdigest(),
                          identifiers=ids)
        raise Failure(f"{redact_identifiers(str(exc), ids)[0]}; the drop was moved to {dest}",
                      allow_retries=False) from exc
    ids.extend(res.identifiers)
    deid[name] = {"removed": list(res.removed), "replaced_uids": list(res.replaced_uids)}
    return res.data


def _refuse_identifying_names(drop, src: str, case_dict: dict, ids: list, store, written: dict) -> None:
    """Fail (quarantining the drop, deleting what this step wrote) when the ``case_id`` or a
    volume's file name holds one of the case's identifiers: they would become keys,
    partition names and rows. The drop sensor refuses such drops first; this is the step's
    own guard, also for drops it was not given by the sensor."""
    reason = names_refusal(case_dict["case_id"], case_dict["volumes"], ids)
    if reason is None:
        return
    for key in list(written):
        store.delete(key)
        written.pop(key)
    dest = quarantine(drop, src, reason, hashlib.sha256(reason.encode()).hexdigest(), identifiers=ids)
    raise Failure(f"{reason}; the drop was moved to {dest}", allow_retries=False)


def _pseudonymized_case(case_dict: dict, db, key: bytes, ids: list) -> tuple[bytes, list[str]]:
    """case.json as stored, and the kinds of identifier taken out of its ``notes``.

    ``subject_id`` is replaced by the subject's pseudonym; the original is recorded only in
    the metadata DB's Admin-only subject map
    (:meth:`~resources.metadata_db.MetadataDB.map_subject`); a subject already mapped
    keeps its pseudonym. Every token of ``notes`` holding one of ``ids`` (the subject_id
    as received, the DICOM patient names, IDs and birth date) becomes ``[removed]``.
    """
    from aooct_core.io.deid import is_subject_pseudonym, pseudonymize_subject

    subject = case_dict["subject_id"]
    if not is_subject_pseudonym(subject):
        subject = db.map_subject(subject, pseudonym=pseudonymize_subject(subject, key=key))
    stored = {**case_dict, "subject_id": subject}
    kinds: list[str] = []
    if isinstance(stored.get("notes"), str):
        stored["notes"], kinds = redact_identifiers(stored["notes"], ids)
    return json_bytes(stored), kinds


def _merge_earlier_deid(deid: dict, record: dict, source: str) -> dict:
    """Add the attributes removed before the drop was written (``DEID_RECORD``, by the DICOM
    receiver) to ``deid``; returns where and with which profile that happened."""
    files = record.get("files") if isinstance(record, dict) else None
    if not isinstance(files, dict) or not all(
            isinstance(r, dict) and all(isinstance(r.get(k, []), list) for k in ("removed", "replaced_uids"))
            for r in files.values()):
        raise Failure(f"{source} must be {{\"files\": {{volume: {{\"removed\": [...], "
                      "\"replaced_uids\": [...]}}}}; remove it or write it again", allow_retries=False)
    for name, rec in files.items():
        if name in deid:
            for k in ("removed", "replaced_uids"):
                deid[name][k] = sorted(set(deid[name][k]) | {str(v) for v in rec.get(k, [])})
    return {"where": str(record.get("where", "")), "profile": str(record.get("profile", ""))}


def _retire_drop(drop, src: str, dest: str, store, raw: str, deid: dict) -> None:
    """Move the drop to ``dest``; case.json and DICOM originals are replaced by the stored
    de-identified copies (pseudonymized subject, stripped attributes)."""
    for name in [*deid, "case.json"]:
        drop.put_bytes(f"{dest}/{name}", store.get_bytes(f"{raw}/{name}"))
        drop.delete(f"{src}/{name}")
    drop.move_prefix(src, dest)


def _refuse_overwrite(store, db, case_id: str, raw: str, content_hash: str) -> None:
    """Fail when partition ``case_id`` already holds other content: stored data is never
    replaced (the drop sensor gives other content under a known case_id a new version)."""
    held = set()
    if store.exists(f"{raw}/manifest.json"):
        held.add(json.loads(store.get_bytes(f"{raw}/manifest.json")).get("content_hash"))
    row = db.get_case(case_id)
    if row is not None and row.get("content_hash"):
        held.add(row["content_hash"])
    held.discard(None)
    if held and (not content_hash or held != {content_hash}):
        raise Failure(f"case {case_id!r} already holds content sha256 {sorted(held)[0][:12]}; "
                      f"refusing to overwrite it with {content_hash[:12] or 'unhashed content'} — "
                      "drop the new content through the sensor or `aooct process`, which store it "
                      "as a new version", allow_retries=False)


@asset(partitions_def=cases_partitions, group_name="ingest", code_version="raw-1",
       retry_policy=RETRY, kinds={"python", "s3"},
       required_resource_keys={"object_store", "drop_store", "metadata_db"},
       description="The dropped case (case.json + repeated volumes) copied to cases/<id>/raw/.")
def raw_volume(context: AssetExecutionContext, config: RawVolumeConfig) -> MaterializeResult:
    from aooct_core.casefile import validate_case_dict
    from aooct_core.geometry import eccentricity_deg

    case_id = context.partition_key
    store, db = store_of(context), db_of(context)
    raw = f"{case_prefix(case_id)}/raw"
    written: dict = {}
    deid: dict[str, dict] = {}
    earlier: dict = {}
    ids: list = []          # the case's identifiers, in memory only
    notes_redacted: list[str] = []
    with step_errors(f"ingest of case {case_id}"):
        drop = unwrap(context.resources.drop_store)
        src = config.drop_prefix.strip("/")
        from_drop = bool(src and drop.exists(f"{src}/case.json"))
        if from_drop:
            case_bytes = drop.get_bytes(f"{src}/case.json")
            case_dict = loads_bounded(case_bytes, source=drop.uri(f"{src}/case.json"))
            if case_dict.get("case_id") != base_case_id(case_id):
                raise Failure(f"drop {src!r} holds case {case_dict.get('case_id')!r}, not partition "
                              f"{case_id!r}", allow_retries=False)
            # Checked as received, before its subject_id is mapped to a pseudonym.
            validate_case_dict(case_dict, source=drop.uri(f"{src}/case.json"))
            ids += identifiers_of_case(case_dict)
            _refuse_identifying_names(drop, src, case_dict, ids, store, written)
            _refuse_overwrite(store, db, case_id, raw, config.content_hash)
            uid_key = deid_uid_key()

            def ingest_volume(name: str) -> tuple[int, list[bytes]]:
                # Hashed as received (the sensor's hash); stored de-identified, under a
                # name screened against every identifier read so far.
                data = drop.get_bytes(f"{src}/{name}")
                stored = _deidentified(drop, src, name, data, uid_key, deid, ids)
                _refuse_identifying_names(drop, src, case_dict, ids, store, written)
                put(store, f"{raw}/{name}", stored, written)
                return len(data), [data]

            digest = content_hash_of_case(case_dict, ingest_volume)
            if drop.exists(f"{src}/{DEID_RECORD}"):
                record_uri = drop.uri(f"{src}/{DEID_RECORD}")
                earlier = _merge_earlier_deid(
                    deid, loads_bounded(drop.get_bytes(f"{src}/{DEID_RECORD}"), source=record_uri),
                    record_uri)
            case_bytes, notes_redacted = _pseudonymized_case(case_dict, db, uid_key, ids)
            case_dict = json.loads(case_bytes)
            put(store, f"{raw}/case.json", case_bytes, written)
        elif store.exists(f"{raw}/case.json"):
            context.log.info(f"no drop given or it was already retired; using {store.uri(raw)}")
            case_dict = loads_bounded(store.get_bytes(f"{raw}/case.json"),
                                      source=store.uri(f"{raw}/case.json"))
            for name in [*case_dict["volumes"], "case.json"]:
                data = store.get_bytes(f"{raw}/{name}")
                written[f"{raw}/{name}"] = {"sha256": hashlib.sha256(data).hexdigest(),
                                            "size_bytes": len(data)}
            old = (json.loads(store.get_bytes(f"{raw}/manifest.json"))
                   if store.exists(f"{raw}/manifest.json") else {})
            deid = old.get("deidentification", {}).get("files", {})
            earlier = old.get("deidentification", {}).get("before_drop", {})
            notes_redacted = old.get("notes_redacted", [])
            # The content hash is of the case as received; stored DICOM is de-identified.
            digest = old.get("content_hash") or content_hash_of_drop(store, raw, case_dict)
        else:
            raise Failure(f"no data for case {case_id!r}: the drop {src!r} is gone and "
                          f"{store.uri(raw)} is empty — drop the case folder again",
                          allow_retries=False)
        spec = validate_case_dict(case_dict, source=store.uri(f"{raw}/case.json"))
        if config.content_hash and digest != config.content_hash:
            raise Failure(f"drop {src!r} changed after the sensor requested it (sha256 "
                          f"{config.content_hash[:12]} → {digest[:12]}); it will be picked up again",
                          allow_retries=False)
        manifest = {"case_id": case_id, "content_hash": digest,
                    "files": {k.rsplit("/", 1)[1]: v["sha256"] for k, v in written.items()},
                    "subject_id": "pseudonym (the original is in the Admin-only subject map)"}
        if notes_redacted:
            manifest["notes_redacted"] = notes_redacted
        if deid:
            manifest["deidentification"] = {"profile": DEID_PROFILE, "files": deid}
            if earlier:
                manifest["deidentification"]["before_drop"] = earlier
        put(store, f"{raw}/manifest.json", json_bytes(manifest), written)
        if from_drop:
            # Only now, with every byte committed in the store, is the drop retired, its
            # DICOM files replaced by their de-identified copies (no PHI is kept anywhere).
            # A folder name holding an identifier is the sensor's to rename; one given
            # otherwise is retired under the case's partition name instead.
            kept = src if not find_identifiers(src, ids) else case_id
            _retire_drop(drop, src, f"{PROCESSED}/{kept}-{digest[:8]}", store, raw, deid)
        ecc = eccentricity_deg(spec.location_deg)
        db.upsert_case(case_id=case_id, subject_id=spec.subject_id, eye=spec.eye,
                       location_h_deg=spec.location_deg[0], location_v_deg=spec.location_deg[1],
                       eccentricity_deg=ecc, axial_length_mm=spec.axial_length_mm,
                       acquired_at=spec.acquired_at, status="processing", content_hash=digest)
        db.record_run(context.run.run_id, case_id, status="running", dagster_run_id=context.run.run_id,
                      started_at=datetime.now(timezone.utc), code_version=CODE_VERSION)
        record_artifacts(db, case_id, "raw_volume", store, written, context.run.run_id)
    meta = artifact_metadata(store, written)
    meta.update(case_id=case_id, subject_id=spec.subject_id, eye=spec.eye,
                eccentricity_deg=round(ecc, 3), n_repeats=len(spec.volume_files),
                content_hash=digest, uri=store.uri(raw))
    return MaterializeResult(metadata=meta, data_version=DataVersion(digest))
