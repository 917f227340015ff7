"""Seed a metadata DB and object store with synthetic cases and one user per role.

For tests, the browser test, the UI benchmark and trying the app without running
the pipeline. The arrays are simple synthetic pictures (bright spots on a
lattice, a few vessel lines), not phantoms or analysis results; they only have
the keys, shapes and dtypes the pipeline (``aooct_assets``) writes (see :mod:`ui.data`).
"""
from __future__ import annotations

import io
import math
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ui.auth import hash_password
from ui.roles import ROLES

__all__ = ["DEMO_PASSWORD", "local_env", "seed_users", "seed_case", "seed_demo"]

#: Password of every seeded user (username = role in lower case, spaces → "_").
DEMO_PASSWORD = "aooct-demo-pw"


def local_env(root: Path) -> dict[str, str]:
    """Environment of a self-contained local deployment under ``root`` (tests, benches).

    SQLite metadata DB, local object store, export and drop folders and an MLflow SQLite
    store, as ``resources.config.load_config`` reads them.
    """
    root = Path(root)
    return {
        "AOOCT_HOME": str(root / "home"),
        "AOOCT_DB_URL": f"sqlite:///{root / 'aooct.db'}",
        "AOOCT_OBJECT_STORE": str(root / "objects"),
        "AOOCT_EXPORT": str(root / "exports"),
        "AOOCT_DROP": str(root / "drop"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
    }


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def seed_users(db, *, password: str = DEMO_PASSWORD, rounds: int = 4) -> dict[str, str]:
    """Create one user per role; returns {username: role}. Low bcrypt cost: test data only."""
    out = {}
    for role in ROLES:
        username = role.lower().replace(" ", "_")
        if db.get_user(username) is None:
            db.create_user(username, name=f"Demo {role}", email=f"{username}@example.org",
                           password_hash=hash_password(password, rounds=rounds), role=role)
        out[username] = role
    return out


def _lattice(shape: tuple[int, int], n_points: int, rng: np.random.Generator) -> np.ndarray:
    spacing = math.sqrt(shape[0] * shape[1] / n_points)
    rows = np.arange(spacing / 2, shape[0], spacing)
    cols = np.arange(spacing / 2, shape[1], spacing)
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    pts = np.stack([rr.ravel(), cc.ravel()], axis=1)[:n_points]
    pts = pts + rng.normal(0, spacing * 0.08, pts.shape)
    return np.clip(pts, 0, np.array(shape) - 1).astype(np.float32)


def seed_case(db, store, case_id: str, *, subject_id: str, eye: str = "OD",
              eccentricity_deg: float = 2.0, shape: tuple[int, int] = (128, 128),
              n_cones: int = 400, with_volume: bool = True, seed: int = 0,
              acquired_at: str = "2026-01-15", status: str = "processed",
              qc_fail: bool = False) -> None:
    """Write one synthetic case: DB rows and ``cases/<case_id>/...`` artifacts."""
    rng = np.random.default_rng(seed)
    pts = _lattice(shape, n_cones, rng)
    rr, cc = np.mgrid[: shape[0], : shape[1]]
    spots = np.zeros(shape, np.float32)
    idx = np.round(pts).astype(int)
    spots[idx[:, 0], idx[:, 1]] = 1.0
    from scipy.ndimage import gaussian_filter

    cost = gaussian_filter(spots, 1.0) * 10 + rng.normal(0.2, 0.05, shape).astype(np.float32)
    vessels = (np.abs(np.sin(rr / shape[0] * 6.0) * shape[1] / 3 + shape[1] / 2 - cc) < 2) | (
        np.abs(rr - cc * 0.7 - shape[0] * 0.1) < 1.5)
    svp = gaussian_filter(vessels.astype(np.float32), 1.0) + rng.normal(0.1, 0.03, shape).astype(np.float32)
    nfl_mask = (np.abs(((rr + cc * 0.3) % 24) - 12) < 3)
    prefix = f"cases/{case_id}"
    heat = gaussian_filter(rng.random(shape).astype(np.float32), 6) * 0.05
    store.put_bytes(f"{prefix}/enface/cost.npy", _npy(cost.astype(np.float32)))
    store.put_bytes(f"{prefix}/enface/isos.npy", _npy((cost * 0.8).astype(np.float32)))
    store.put_bytes(f"{prefix}/enface/rpe.npy", _npy(gaussian_filter(rng.random(shape), 2).astype(np.float32)))
    store.put_bytes(f"{prefix}/enface/svp.npy", _npy(svp.astype(np.float32)))
    store.put_bytes(f"{prefix}/enface/nfl.npy", _npy(nfl_mask.astype(np.float32)))
    rpe_pts = _lattice(shape, max(4, n_cones // 10), rng)
    arrays = {
        "masks/cones/points_rc.npy": pts,
        "masks/cones/confidence.npy": rng.uniform(0.5, 1, len(pts)).astype(np.float32),
        "masks/cones/heatmap_var.npy": heat,
        "masks/rpe/points_rc.npy": rpe_pts,
        "masks/rpe/confidence.npy": np.ones(len(rpe_pts), np.float32),
        "masks/rpe/heatmap_var.npy": heat[::-1].copy(),
        "masks/capillaries/mask.npy": vessels,
        "masks/capillaries/probability_var.npy": heat.T.copy(),
        "masks/nfl/mask.npy": nfl_mask,
        "masks/nfl/probability_var.npy": heat[:, ::-1].copy(),
    }
    for rel, array in arrays.items():
        store.put_bytes(f"{prefix}/{rel}", _npy(array))
    if with_volume:
        n_depth = 48
        volume = rng.gamma(2.0, 0.1, (shape[0], n_depth, shape[1])).astype(np.float32)
        surfaces = {}
        for i, name in enumerate(("ILM", "ISOS", "COST", "RPE")):
            depth = 8 + i * 9 + 2 * np.sin(cc / 20.0 + rr / 30.0)
            surfaces[name] = depth.astype(np.float32)
            b, a = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
            volume[b, np.round(depth).astype(int), a] += 1.5
        store.put_bytes(f"{prefix}/corrected/volume.npy", _npy(volume))
        for name, depth in surfaces.items():
            store.put_bytes(f"{prefix}/corrected/surfaces/{name}.npy", _npy(depth))
    store.put_bytes(f"{prefix}/report/report.html",
                    f"<html><body><h1>Report {case_id}</h1></body></html>".encode())
    db.upsert_case(case_id=case_id, subject_id=subject_id, eye=eye, location_h_deg=eccentricity_deg,
                   location_v_deg=0.0, eccentricity_deg=eccentricity_deg, axial_length_mm=24.0,
                   acquired_at=acquired_at, status=status)
    # The run that "made" these results: a decision is about a finished run (api.decisions).
    run_status = {"failed": "failure", "qc_failed": "qc_failed"}.get(
        status, "running" if status in ("new", "ingested", "processing") else "success")
    when = datetime.fromisoformat(acquired_at).replace(tzinfo=timezone.utc)
    db.record_run(f"seed-{case_id}", case_id, status=run_status, started_at=when,
                  finished_at=None if run_status == "running" else when, code_version="seed")
    from aooct_core.metrics import normative_cone_density

    # A plausible density for the eccentricity (not measured from the synthetic picture).
    norm_mean, norm_sd = normative_cone_density(eccentricity_deg)
    density = float(norm_mean + rng.normal(0.0, 1.2) * norm_sd)
    area_density = float(vessels.mean()) * float(rng.uniform(0.8, 1.2))
    db.record_metrics(case_id, [
        {"structure": "cones", "metric": "density_cells_per_mm2", "value": density, "unit": "cells/mm²",
         "ci_low": density * 0.95, "ci_high": density * 1.05, "method": "synthetic",
         "model_version": "seed", "code_version": "seed"},
        {"structure": "cones", "metric": "nnd_um_mean", "value": 1e3 / math.sqrt(density) * 1.07,
         "unit": "µm", "ci_low": None, "ci_high": None, "method": "synthetic",
         "model_version": "seed", "code_version": "seed"},
        {"structure": "capillaries", "metric": "area_density", "value": area_density,
         "unit": "1", "ci_low": area_density * 0.9, "ci_high": area_density * 1.1,
         "method": "synthetic", "model_version": "seed", "code_version": "seed"},
    ])
    db.record_qc(case_id, [
        # Same names and semantics as aooct_assets.qc_eval: severity only on a failed check.
        {"check_name": "snr", "passed": True, "severity": None, "value": 18.0, "threshold": 15.0},
        {"check_name": "registration_residual", "passed": not qc_fail,
         "severity": "fail" if qc_fail else None, "value": 4.0 if qc_fail else 0.6,
         "threshold": 3.0 if qc_fail else 1.5},
    ])


def seed_demo(db, store, *, n_cases: int = 6, with_volume_for: int = 2) -> list[str]:
    """Users for every role plus ``n_cases`` synthetic cases; returns the case ids."""
    seed_users(db)
    ids = []
    for i in range(n_cases):
        case_id = f"S{i // 2 + 1:03d}_{'OD' if i % 2 == 0 else 'OS'}_T{2 + i % 3}"
        seed_case(db, store, case_id, subject_id=f"S{i // 2 + 1:03d}", eye="OD" if i % 2 == 0 else "OS",
                  eccentricity_deg=1.0 + 1.5 * (i % 5), n_cones=300 + 40 * i,
                  with_volume=i < with_volume_for, seed=i, acquired_at=f"2026-0{1 + i % 6}-1{i % 9}",
                  qc_fail=(i % 4 == 3))
        ids.append(case_id)
    return ids
