"""``aooct demo``: the whole platform on this machine, with embedded defaults.

Generates phantom cases into the drop folder, ticks the drop sensor, materializes every
new partition in process on the same Dagster instance that ``dagster-webserver`` and
``dagster-daemon`` use, prints the metrics and the report paths, and says how to open
the Dagster UI and the review app on the same data.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import typer

from aooct.errors import CliError

def _write_phantoms(cfg, n_cases: int, seed: int, shape_px: tuple[int, int, int], log) -> list[str]:
    from aooct_core.phantom import make_phantom, write_phantom
    from resources.object_store import make_object_store

    drop = make_object_store(cfg.drop, **cfg.store_options())
    objects = make_object_store(cfg.object_store, **cfg.store_options())
    truth_root = cfg.home / "phantom_truth"
    ids = []
    for i in range(n_cases):
        case_id = f"DEMO-{seed + i:03d}"
        ids.append(case_id)
        truth = truth_root / case_id
        if not truth.exists():
            t0 = time.perf_counter()
            ph = make_phantom(seed=seed + i, shape_px=shape_px, case_id=case_id,
                              location_deg=(1.5 + 1.0 * (i % 5), 0.0), eye="OD" if i % 2 == 0 else "OS")
            write_phantom(truth, ph)
            log(f"  phantom {case_id}: {ph.volumes.shape[0]} × {shape_px} px in {time.perf_counter() - t0:.1f} s")
        elif objects.exists(f"cases/{case_id}/raw/manifest.json"):
            log(f"  phantom {case_id}: already ingested (not dropped again)")
            continue
        spec = json.loads((truth / "case.json").read_text())
        for name in [*spec["volumes"], "case.json"]:  # case.json last: the sensor waits for it
            drop.put_file(f"{case_id}/{name}", truth / name)
    return ids


def run_demo(n_cases: int = 3, *, seed: int = 0, shape_px=(128, 256, 128), log=print) -> dict:
    """Run the demo; returns ``{"cases": [...], "reports": {...}, "seconds": float}``."""
    from aooct_assets.local_runs import prepare_environment, process_drop

    cfg = prepare_environment()
    from resources.model_registry import ModelRegistry

    t_start = time.perf_counter()
    log(f"AOOCT_HOME={cfg.home}  DAGSTER_HOME={os.environ['DAGSTER_HOME']}")
    log(f"drop: {cfg.drop}   objects: {cfg.object_store}   db: {cfg.db_url}")
    registry = ModelRegistry(cfg.mlflow_tracking_uri, artifact_location=str(cfg.mlflow_artifacts),
                             cache_dir=cfg.home / "model_cache")
    seeded = registry.seed_from_committed_weights()
    log(f"model registry {cfg.mlflow_tracking_uri}: "
        + (f"registered {', '.join(seeded)} from ml/weights" if seeded else "already seeded"))
    log(f"writing {n_cases} phantom case(s) into the drop ...")
    ids = _write_phantoms(cfg, n_cases, seed, tuple(shape_px), log)

    outcomes = process_drop(cfg, settle_s=0.5, log=log, launched_by="aooct demo")
    log(f"sensor: {len(outcomes)} new run(s) requested"
        + ("" if outcomes else " (nothing new: use --seed for other phantoms)"))
    failed = []
    for o in outcomes:
        if o.status == "failed":
            failed.append(o.partition_key)
        log(f"  {o.partition_key}: run {(o.run_id or '-')[:8]} {o.status.upper() if o.status != 'ok' else 'ok'}"
            f" in {o.seconds:.1f} s" + (f" — {o.detail}" if o.detail else ""))
    summary = _print_summary(cfg, ids, log)
    summary["seconds"] = time.perf_counter() - t_start
    summary["failed"] = failed
    log(f"\ndone in {summary['seconds']:.0f} s.  Same data, two ways to look at it:")
    log(f"  Dagster UI : export DAGSTER_HOME={os.environ['DAGSTER_HOME']} AOOCT_HOME={cfg.home}\n"
        "               dagster-webserver -w workspace.yaml -p 3000   # one terminal\n"
        "               dagster-daemon run -w workspace.yaml          # another (sensor, queued runs)\n"
        "               then open http://127.0.0.1:3000")
    log(f"  Review app : AOOCT_HOME={cfg.home} aooct users add NAME --role Admin --email ADDRESS\n"
        f"               AOOCT_HOME={cfg.home} aooct ui   # then sign in as NAME")
    log(f"  New cases  : copy a case folder (case.json + volumes) into {cfg.drop}/ while the daemon runs")
    return summary


def _print_summary(cfg, ids: list[str], log) -> dict:
    from rich.console import Console
    from rich.table import Table

    from resources.metadata_db import SqlMetadataDB
    from resources.object_store import make_object_store

    db = SqlMetadataDB(cfg.db_url)
    store = make_object_store(cfg.object_store, **cfg.store_options())
    table = Table(title="aooct demo: per-case metrics (95 % CI)")
    for col in ("case", "status", "QC (failed checks)", "cones", "cone density /mm² [95 % CI]",
                "phantom truth /mm²", "RPE cells", "capillary area", "NFL bundles"):
        table.add_column(col)
    reports = {}
    for case_id in ids:
        case = db.get_case(case_id) or {}
        m = {(r["structure"], r["metric"]): r for r in db.get_metrics(case_id)}

        def val(s, k, fmt="{:.0f}"):
            r = m.get((s, k))
            return "—" if r is None or r["value"] is None else fmt.format(r["value"])

        dens = m.get(("cones", "density_cells_per_mm2"))
        dens_txt = "—" if dens is None or dens["value"] is None else (
            f"{dens['value']:.0f} [{dens['ci_low']:.0f}, {dens['ci_high']:.0f}]"
            if dens["ci_low"] is not None else f"{dens['value']:.0f}")
        # The phantom's ground truth beside the measurement, so the demo shows its own accuracy.
        truth_file = cfg.home / "phantom_truth" / case_id / "truth.json"
        truth_txt = (f"{json.loads(truth_file.read_text())['cones']['true_density_cells_per_mm2']:.0f}"
                     if truth_file.exists() else "—")
        failed_checks = sorted(q["check_name"] for q in db.get_qc(case_id) if not q["passed"])
        qc_txt = str(case.get("qc_status")) + (f" ({', '.join(failed_checks)})" if failed_checks else "")
        table.add_row(case_id, case.get("status", "missing"), qc_txt,
                      val("cones", "count"), dens_txt, truth_txt, val("rpe", "count"),
                      val("capillaries", "area_density", "{:.3f}"), val("nfl", "bundle_count"))
        key = f"cases/{case_id}/report/report.html"
        if store.exists(key):
            reports[case_id] = store.uri(key)
    Console(width=max(Console().width, 180)).print(table)
    for case_id, uri in reports.items():
        log(f"report {case_id}: {uri}")
    db.close()
    return {"cases": ids, "reports": reports}


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        n_cases: int = typer.Option(3, "--cases", "-n", min=1, max=50, help="Phantom cases to generate."),
        seed: int = typer.Option(0, help="Seed of the first phantom (case ids DEMO-<seed>...)."),
        small: bool = typer.Option(False, help="Small 48×256×64 phantoms (quick look) instead of 128×256×128."),
        reset: bool = typer.Option(False, help="Delete AOOCT_HOME first (only when it is the default ./.aooct_home)."),
    ) -> None:
        """Generate phantoms, run the orchestrated pipeline on them, print metrics and reports."""
        from resources.config import load_config

        if reset:
            home = load_config().home
            if home != Path("./.aooct_home").resolve():
                raise CliError(f"--reset only deletes the default ./.aooct_home, not {home}; "
                               "remove that folder yourself")
            if home.exists():
                shutil.rmtree(home)
        summary = run_demo(n_cases, seed=seed, shape_px=(48, 256, 64) if small else (128, 256, 128))
        if summary["failed"]:
            raise CliError(f"runs failed for {', '.join(summary['failed'])}; open the Dagster UI "
                           "(see above) for the step logs")
