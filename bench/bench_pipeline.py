"""Drop-to-metrics latency, orchestration share and throughput of the orchestrated pipeline.

Each case is a 3 × 128×256×128 phantom (generated before the clock starts) copied into the
drop folder; the clock runs from the moment the last file lands until the ``metrics``
materialization (and the ``report``) is committed. The drop sensor is ticked back to back:
in a deployment the daemon ticks every ``minimum_interval_seconds`` (15 s) and a drop must
look the same on two ticks, which adds 15-30 s of *waiting* (not work) — reported apart.

Time is split three ways from the run's own events and metadata:

* compute — inside the pure functions (``preprocess_case``, ``detect_cells``/``segment_vessels``,
  metrics, report rendering): each asset's ``compute_s`` metadata;
* step I/O — the rest of each step (artifact load/save, hashing, DB records);
* orchestration — everything else: sensor ticks, run/step start-up, event logging, checks.

Usage::

    nice -n 10 .venv/bin/python bench/bench_pipeline.py --cases 20 [--executor multiprocess]

Runs in a fresh temporary AOOCT_HOME; prints a markdown table.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def _setup(home: Path) -> None:
    os.environ["AOOCT_HOME"] = str(home)
    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    (home / "dagster").mkdir(parents=True, exist_ok=True)
    from aooct_assets.local_runs import EMBEDDED_DAGSTER_YAML

    (home / "dagster" / "dagster.yaml").write_text(EMBEDDED_DAGSTER_YAML)


def _run_one(case_folder: Path, cfg, instance, job, sensor, executor: str, cursor):
    from dagster import build_sensor_context, execute_job

    from aooct_assets.testing import copy_case_files
    from resources.object_store import make_object_store

    drop = make_object_store(cfg.drop)
    copy_case_files(case_folder, drop, case_folder.name)
    t_drop = time.time()
    requests = []
    for _ in range(2):
        res = sensor(build_sensor_context(instance=instance, cursor=cursor))
        cursor = res.cursor
        for req in res.dynamic_partitions_requests or []:
            instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
        requests += res.run_requests or []
    t_requested = time.time()
    (req,) = requests
    run_config = {**req.run_config, "loggers": {"console": {"config": {"log_level": "ERROR"}}}}
    if executor == "in_process_without_checks":
        from dagster import materialize

        from aooct_assets.assets import case_assets
        from aooct_assets.definitions import build_resources

        result = materialize(case_assets, partition_key=req.partition_key, instance=instance,
                             resources=build_resources(cfg), run_config=run_config, tags=req.tags,
                             raise_on_error=False)
        success, run_id = result.success, result.run_id
    elif executor == "in_process":
        result = job.execute_in_process(partition_key=req.partition_key, instance=instance,
                                        run_config=run_config, tags=req.tags, raise_on_error=False)
        success, run_id = result.success, result.run_id
    else:
        from dagster._core.definitions.reconstruct import ReconstructableRepository

        recon = ReconstructableRepository.for_module("aooct_assets.definitions", "defs",
                                                     working_directory=os.getcwd())
        with execute_job(recon.get_reconstructable_job(job.name), instance=instance,
                         run_config=run_config, tags={**req.tags, "dagster/partition": req.partition_key},
                         raise_on_error=False) as result:
            success, run_id = result.success, result.run_id
    t_end = time.time()
    records = instance.all_logs(run_id)
    mats, step_s = {}, 0.0
    for rec in records:
        ev = rec.dagster_event
        if ev is None:
            continue
        if ev.event_type_value == "ASSET_MATERIALIZATION":
            m = ev.event_specific_data.materialization
            mats[m.asset_key.to_user_string()] = (rec.timestamp, {k: v.value for k, v in m.metadata.items()})
        if ev.event_type_value == "STEP_SUCCESS":
            step_s += ev.event_specific_data.duration_ms / 1000.0
    if "metrics" not in mats:  # stopped by a blocking QC check (a phantom with large motion)
        return cursor, {"case": req.partition_key, "success": success, "blocked": True,
                        "to_report_s": t_end - t_drop, "sensor_s": t_requested - t_drop}
    compute_s = sum(float(meta.get("compute_s", 0.0)) for _, meta in mats.values()
                    if isinstance(meta.get("compute_s"), (int, float)))
    return cursor, {
        "case": req.partition_key, "success": success, "blocked": False,
        "to_metrics_s": mats["metrics"][0] - t_drop, "to_report_s": t_end - t_drop,
        "sensor_s": t_requested - t_drop, "compute_s": compute_s, "step_s": step_s,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=20)
    ap.add_argument("--executor", choices=["in_process", "multiprocess", "in_process_without_checks"],
                    default="in_process",
                    help="in_process_without_checks: the assets without their QC checks (only for "
                         "stand-in weights whose outputs the checks would rightly block)")
    ap.add_argument("--shape", type=int, nargs=3, default=(128, 256, 128))
    args = ap.parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix="aooct-bench-"))
    _setup(home)
    import torch

    torch.set_num_threads(1)
    from dagster import DagsterInstance

    from aooct_assets.definitions import build_definitions
    from aooct_assets.jobs import CASE_JOB_NAME
    from aooct_assets.sensors import make_drop_sensor
    from aooct_core.phantom import make_phantom, write_phantom
    from resources.config import load_config

    cfg = load_config()
    os.environ["AOOCT_EXECUTOR"] = "multiprocess" if args.executor == "multiprocess" else "in_process"
    if os.environ.get("AOOCT_WEIGHTS_DIR"):
        print(f"weights from AOOCT_WEIGHTS_DIR={os.environ['AOOCT_WEIGHTS_DIR']}", file=sys.stderr)
    job = build_definitions(cfg).resolve_job_def(CASE_JOB_NAME)
    instance = DagsterInstance.get()
    sensor = make_drop_sensor(cfg.drop, job_name=CASE_JOB_NAME)
    staging = home / "staging"
    print(f"generating {args.cases} phantoms {tuple(args.shape)} ...", file=sys.stderr)
    cases = []
    for i in range(args.cases):
        folder = staging / f"BENCH-{i:03d}"
        write_phantom(folder, make_phantom(seed=100 + i, shape_px=tuple(args.shape), case_id=folder.name))
        cases.append(folder)
    rows, cursor = [], None
    t0 = time.time()
    for folder in cases:
        cursor, row = _run_one(folder, cfg, instance, job, sensor, args.executor, cursor)
        rows.append(row)
        if row["blocked"]:
            print(f"  {row['case']}: stopped by a blocking QC check after {row['to_report_s']:.1f} s",
                  file=sys.stderr)
            continue
        print(f"  {row['case']}: metrics after {row['to_metrics_s']:.1f} s, report after "
              f"{row['to_report_s']:.1f} s (sensor {row['sensor_s']:.1f} s, steps {row['step_s']:.1f} s, "
              f"compute {row['compute_s']:.1f} s)", file=sys.stderr)
    wall = time.time() - t0
    done = [r for r in rows if not r["blocked"]]
    first = done[0]
    steady = done[1:] or done

    def med(key, rs=steady):
        return statistics.median(r[key] for r in rs)

    orch = [(r["to_report_s"] - r["compute_s"]) / r["to_report_s"] for r in steady]
    io_share = [(r["step_s"] - r["compute_s"]) / r["to_report_s"] for r in steady]
    print(f"\n| executor | cases | drop→metrics (first / median) | drop→report median | sensor ticks "
          f"| compute median | orchestration share median (of which step I/O) | throughput |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {args.executor} | {len(rows)} | {first['to_metrics_s']:.1f} s / {med('to_metrics_s'):.1f} s "
          f"| {med('to_report_s'):.1f} s | {med('sensor_s'):.2f} s | {med('compute_s'):.1f} s "
          f"| {100 * statistics.median(orch):.0f} % ({100 * statistics.median(io_share):.0f} %) "
          f"| {3600 * len(rows) / wall:.0f} cases/h |")
    blocked = [r["case"] for r in rows if r["blocked"]]
    print(f"\n{len(done)} of {len(rows)} cases reached metrics; stopped by blocking QC: {blocked or 'none'} "
          f"(throughput counts every case). AOOCT_HOME={home}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
