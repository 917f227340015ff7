"""Soak (issue 17): N phantom cases through ``process_drop`` (the ``aooct process`` engine) with
seeded random faults, counting cases lost (must be 0) and the memory of the long-lived process.

    .venv/bin/python bench/soak.py --cases 200 --minutes 40 --out /tmp/aooct-soak

One deployment under ``--out``: objects on S3 (moto's server in a child process, reached
through :class:`resources.fault_proxy.FaultProxy` in this process), the drop a local folder,
metadata DB and Dagster instance SQLite. This process is the long-lived one: it runs every
case in process, as ``aooct process`` does, and its RSS is sampled after each case. Per case
(seeded):

* S3 faults: none, random 500/503 (3 % of requests), a burst of 5 consecutive 503s (more
  than botocore's 4 attempts: Dagster's RetryPolicy reruns the step), or two dropped
  connections. Timeouts are left out: the soak runs the default S3 timeouts, which it cannot
  wait for (tests/e2e/test_fault_injection.py covers them with a 1 s client,
  ``AOOCT_S3_READ_TIMEOUT_S``);
* ``kill``: the case is first given to an ``aooct process CASE_DIR`` child, killed with
  SIGKILL at a random moment, then processed again here (the watchdog fails the dead run);
* ``partial``: copied into the drop without its last volume (it must wait), completed later;
* ``bad_json`` / ``empty_volume``: must be quarantined with a reason;
* ``truncated``: one volume cut in half: must fail with a clear reason (or be quarantined);
* ``duplicate``: an earlier case's folder again: must be skipped as already processed.

Every case ends in exactly one bucket: ``processed`` (report stored, status processed),
``qc_failed``, ``failed`` (status failed and a reason), ``quarantined`` (REASON.txt),
``skipped`` (duplicate of a processed case), ``stranded`` (data still only in the drop) or
``lost`` (none of these). Results: ``<out>/soak_cases.jsonl`` and ``<out>/soak_summary.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))

PHANTOM = {"shape_px": (32, 256, 48), "scan_field_deg": (0.35, 0.35), "location_deg": (5.0, 0.0)}
KINDS = {"normal": 0.73, "kill": 0.08, "partial": 0.04, "bad_json": 0.03, "empty_volume": 0.03,
         "truncated": 0.05, "duplicate": 0.04}
BUCKET = "aooct-soak"
#: The long-lived process may grow at most this much from case 10 to the end (stated up front).
RSS_GROWTH_BOUND_MB = 300.0


def rss_mb(pid: int | None = None) -> float:
    with open(f"/proc/{pid or 'self'}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def start_moto(port: int, log: Path) -> subprocess.Popen:
    from resources.fault_proxy import wait_for_port

    proc = subprocess.Popen([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1",
                             "-p", str(port)], stdout=open(log, "ab"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    wait_for_port("127.0.0.1", port, 30)
    return proc


def fault_schedule(rng: random.Random, seed: int):
    from resources.fault_proxy import FaultRule, FaultSchedule

    mode = rng.choices(["none", "random", "burst", "drops"], [0.4, 0.25, 0.2, 0.15])[0]
    if mode == "random":
        rules = [FaultRule(rng.choice(["500", "503"]), probability=0.03)]
    elif mode == "burst":
        n = rng.randint(1, 120)
        rules = [FaultRule("503", nth=set(range(n, n + 5)))]
    elif mode == "drops":
        rules = [FaultRule("drop", nth={rng.randint(1, 120)}),
                 FaultRule("drop", nth={rng.randint(1, 120)})]
    else:
        rules = []
    return mode, FaultSchedule(rules, seed=seed)


def write_case(folder: Path, seed: int, case_id: str, kind: str) -> None:
    from aooct_core.phantom import make_phantom, write_phantom

    write_phantom(folder, make_phantom(seed=seed, case_id=case_id, **PHANTOM))
    vols = sorted(folder.glob("vol_*"))
    if kind == "bad_json":
        (folder / "case.json").write_bytes(b'{"case_id": "' + case_id.encode() + b'", not json')
    elif kind == "empty_volume":
        vols[-1].write_bytes(b"")
    elif kind == "truncated":
        data = vols[-1].read_bytes()
        vols[-1].write_bytes(data[: len(data) // 2])


def put_drop(drop_root: Path, folder: Path, name: str, *, skip: tuple[str, ...] = ()) -> None:
    """Copy a case folder into the drop (case.json last), leaving out ``skip``."""
    dest = drop_root / name
    dest.mkdir(parents=True, exist_ok=True)
    for f in sorted(folder.iterdir(), key=lambda p: p.name == "case.json"):
        if f.name not in skip and (f.name == "case.json" or f.name.startswith("vol_")):
            tmp = dest / f".{f.name}.copying"
            shutil.copyfile(f, tmp)
            os.replace(tmp, dest / f.name)


def run_killed_child(folder: Path, rng: random.Random, log: Path) -> dict:
    """``aooct process folder`` in a child, SIGKILLed after a random delay."""
    delay = rng.uniform(2.0, 14.0)  # a child runs one case in ~13 s here
    child = subprocess.Popen([str(Path(sys.executable).with_name("aooct")), "process", str(folder),
                              "--settle-s", "0.05"], cwd=_REPO, env=dict(os.environ),
                             stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        child.wait(timeout=delay)
        return {"kill_after_s": round(delay, 1), "killed": False, "child_rc": child.returncode}
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        return {"kill_after_s": round(delay, 1), "killed": True, "child_rc": child.returncode}


def verdict(case_id: str, drop_name: str, *, db, objects, drop_root: Path, outcome=None,
            duplicate_of: str | None = None) -> tuple[str, str]:
    """The bucket a case ended in, and why."""
    quarantined = sorted(p for p in (drop_root / "_quarantine").glob(f"{drop_name}*/REASON.txt"))
    if quarantined:
        return "quarantined", quarantined[-1].read_text().strip()[:160]
    row = db.get_case(case_id)
    status = row["status"] if row else None
    if duplicate_of is not None and outcome is not None and outcome.status == "skipped":
        return "skipped", outcome.detail
    if status == "processed" and objects.exists(f"cases/{case_id}/report/report.html"):
        return "processed", ""
    if status == "qc_failed":
        return "qc_failed", outcome.detail if outcome else ""
    if status == "failed":
        reason = outcome.detail if outcome is not None else ""
        return ("failed", reason) if reason else ("failed", "(status failed, no reason given)")
    if outcome is not None and outcome.status == "failed" and outcome.detail:
        return "failed", outcome.detail  # failed before the case was registered
    if (drop_root / drop_name).exists() or list(drop_root.glob(f"{drop_name}-*/case.json")):
        return "stranded", f"only in the drop (DB status {status})"
    return "lost", f"DB status {status}, outcome {outcome}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0, help="fault RNG seed; phantom seeds are 1000+i")
    ap.add_argument("--minutes", type=float, default=40.0, help="stop starting new cases after this")
    ap.add_argument("--out", type=Path, default=Path("/tmp/aooct-soak"))
    args = ap.parse_args(argv)

    out = args.out.resolve()
    shutil.rmtree(out, ignore_errors=True)
    (out / "cases").mkdir(parents=True)
    from resources.fault_proxy import FaultProxy
    from resources.testing import free_port

    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_DEFAULT_REGION="us-east-1", MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false")
    port = free_port()
    moto = start_moto(port, out / "moto.log")
    upstream = f"http://127.0.0.1:{port}"
    import boto3

    boto3.client("s3", endpoint_url=upstream, region_name="us-east-1").create_bucket(Bucket=BUCKET)
    proxy = FaultProxy(upstream, max_lifetime_s=args.minutes * 60 + 3600).start()
    os.environ.update(AOOCT_HOME=str(out / "home"), DAGSTER_HOME=str(out / "home" / "dagster"),
                      AOOCT_OBJECT_STORE=f"s3://{BUCKET}/objects", AOOCT_S3_ENDPOINT_URL=proxy.endpoint)
    for var in ("AOOCT_DB_URL", "AOOCT_DROP", "MLFLOW_TRACKING_URI", "AOOCT_EXECUTOR"):
        os.environ.pop(var, None)
    from aooct_assets.local_runs import prepare_environment, process_drop
    from resources.metadata_db import SqlMetadataDB
    from resources.object_store import TMP_MARKER, S3ObjectStore

    cfg = prepare_environment()
    drop_root = Path(cfg.drop)
    objects = S3ObjectStore(BUCKET, "objects", endpoint_url=upstream)  # bypasses the proxy
    rng = random.Random(args.seed)
    deadline = time.monotonic() + args.minutes * 60
    records, pending_partial, done_folders = [], [], []
    db = None
    t_start = time.monotonic()
    rss = [rss_mb()]
    log = open(out / "soak_cases.jsonl", "w")
    notes: list[str] = []

    def note(line: str) -> None:
        notes.append(line)

    for i in range(args.cases):
        if time.monotonic() > deadline:
            break
        kind = rng.choices(list(KINDS), list(KINDS.values()))[0]
        if kind == "duplicate" and not done_folders:
            kind = "normal"
        mode, schedule = fault_schedule(rng, args.seed * 100_000 + i)
        if kind == "kill":
            mode, schedule = "none", None
        proxy.set_schedule(schedule)
        case_id, name = f"SOAK-{i:04d}", f"soak-{i:04d}"
        folder = out / "cases" / name
        duplicate_of = None
        if kind == "duplicate":
            folder = rng.choice(done_folders)
            duplicate_of = folder.name
        else:
            write_case(folder, 1000 + i, case_id, kind)
        t0 = time.monotonic()
        extra: dict = {}
        notes.clear()
        outcome = None
        if kind == "kill":
            extra = run_killed_child(folder, rng, out / "children.log")
        if kind in ("partial", "bad_json", "empty_volume"):
            vols = sorted(p.name for p in folder.glob("vol_*"))
            put_drop(drop_root, folder, name, skip=(vols[-1],) if kind == "partial" else ())
            outs = process_drop(cfg, folders=None, settle_s=0.05, log=note)
            outcome = next((o for o in outs if o.drop == name), None)
            if kind == "partial":
                extra["waited"] = outcome is None and (drop_root / name).exists()
                pending_partial.append((name, folder, vols[-1], case_id))
        else:
            (outcome,) = process_drop(cfg, folders=[folder], settle_s=0.05, log=note) or (None,)
        # complete a waiting partial drop every few cases (and at the end)
        if pending_partial and (kind != "partial" or len(pending_partial) > 1):
            p_name, p_folder, p_vol, p_id = pending_partial.pop(0)
            shutil.copyfile(p_folder / p_vol, drop_root / p_name / p_vol)
            for o in process_drop(cfg, folders=None, settle_s=0.05, log=note):
                if o.drop == p_name:
                    update = [r for r in records if r["drop"] == p_name]
                    if update:
                        update[0]["completed_later"] = o.status
        if db is None:
            db = SqlMetadataDB(cfg.db_url)
        target_id = case_id if duplicate_of is None else duplicate_of.replace("soak-", "SOAK-")
        bucket, why = verdict(target_id, name if duplicate_of is None else duplicate_of, db=db,
                              objects=objects, drop_root=drop_root, outcome=outcome,
                              duplicate_of=duplicate_of)
        if kind == "partial" and outcome is None:
            bucket, why = "waiting", "partial drop waiting for its last volume"
        if bucket in ("processed", "qc_failed") and kind == "normal":
            done_folders.append(folder)
        rss.append(rss_mb())
        rec = {"i": i, "case_id": case_id, "drop": name, "kind": kind, "s3_faults": mode,
               "seconds": round(time.monotonic() - t0, 2), "outcome": outcome.status if outcome else None,
               "bucket": bucket, "why": why[:200], "rss_mb": round(rss[-1], 1),
               "moto_rss_mb": round(rss_mb(moto.pid), 1), "proxy_faults": proxy.stats()["faults"],
               "watchdog": [n for n in notes if "watchdog" in n], **extra}
        records.append(rec)
        log.write(json.dumps(rec) + "\n")
        log.flush()
        print(f"{i:4d} {kind:12s} {mode:6s} {rec['seconds']:6.1f} s {bucket:11s} rss {rss[-1]:7.1f} MB "
              f"{why[:70]}", flush=True)
    proxy.set_schedule(None)
    for p_name, p_folder, p_vol, _ in pending_partial:  # the partial drops still waiting
        shutil.copyfile(p_folder / p_vol, drop_root / p_name / p_vol)
    if pending_partial:
        for o in process_drop(cfg, folders=None, settle_s=0.05, log=note):
            for r in records:
                if r["drop"] == o.drop:
                    r["completed_later"] = o.status
    # Final accounting from the stores themselves, after every fault and every re-run.
    for r in records:
        if r["kind"] == "duplicate":
            r["final"], r["final_why"] = r["bucket"], r["why"]
            continue
        bucket, why = verdict(r["case_id"], r["drop"], db=db, objects=objects, drop_root=drop_root)
        if bucket == "failed" and r["bucket"] == "failed":
            why = r["why"]  # the reason the run gave at the time
        r["final"], r["final_why"] = bucket, why[:200]
    leftover = sorted(p.name for p in drop_root.iterdir()
                      if not p.name.startswith(("_", ".")) and any(f.is_file() for f in p.rglob("*")))
    import boto3 as _b

    client = _b.client("s3", endpoint_url=upstream, region_name="us-east-1")
    tmp_keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
                for o in page.get("Contents", []) if TMP_MARKER in o["Key"]]
    from dagster import DagsterInstance

    instance = DagsterInstance.get()
    storage = instance.event_log_storage
    held = [(k, s.run_id) for k in storage.get_concurrency_keys()
            for s in storage.get_concurrency_info(k).claimed_slots]
    from collections import Counter

    finals = Counter(r["final"] for r in records)
    seconds = [r["seconds"] for r in records if r["kind"] == "normal" and r["s3_faults"] == "none"]
    warm = rss[min(10, len(rss) - 1)]
    summary = {
        "cases_requested": len(records), "wall_min": round((time.monotonic() - t_start) / 60, 1),
        "kinds": Counter(r["kind"] for r in records), "s3_fault_modes": Counter(r["s3_faults"] for r in records),
        "final": finals, "lost": finals.get("lost", 0), "stranded": finals.get("stranded", 0),
        "kills": sum(1 for r in records if r.get("killed")),
        "watchdog_reaped": sum(1 for r in records if r["watchdog"]),
        "proxy": proxy.stats(), "tmp_keys_left": len(tmp_keys), "slots_held_at_end": held,
        "drops_left_in_drop_location": leftover,
        "median_clean_case_s": sorted(seconds)[len(seconds) // 2] if seconds else None,
        "rss_mb": {"start": round(rss[0], 1), "after_10_cases": round(warm, 1), "max": round(max(rss), 1),
                   "end": round(rss[-1], 1), "growth_after_10_cases": round(rss[-1] - warm, 1),
                   "bound": RSS_GROWTH_BOUND_MB},
        "moto_rss_mb_end": round(rss_mb(moto.pid), 1),
        "failed_reasons": Counter(r["why"][:90] for r in records if r.get("final") == "failed"),
    }
    summary["rss_within_bound"] = summary["rss_mb"]["growth_after_10_cases"] <= RSS_GROWTH_BOUND_MB
    (out / "soak_summary.json").write_text(json.dumps(summary, indent=1, default=str))
    with open(out / "soak_cases_final.jsonl", "w") as fh:
        for r in records:
            fh.write(json.dumps(r) + "\n")
    print(json.dumps(summary, indent=1, default=str))
    proxy.stop()
    os.killpg(moto.pid, signal.SIGTERM)
    moto.wait(timeout=30)
    return 1 if summary["lost"] else 0


if __name__ == "__main__":
    sys.exit(main())
