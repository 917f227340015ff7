"""``report``: one self-contained HTML page per case (overlays, plots, metrics, QC), images inline.

Everything on the page comes from stored artifacts, rendered deterministically (PNG
without timestamps, sorted tables), so the same case and code give the same bytes.
"""

import base64
import html
import io
import time
from datetime import datetime, timezone

import numpy as np
from dagster import AssetExecutionContext, AssetKey, DataVersion, MaterializeResult, asset

from aooct_assets.assets._common import (CODE_VERSION, RETRY, artifact_metadata, case_prefix,
                                         db_of, load_json, load_npy, put, record_artifacts,
                                         step_errors, store_of)
from aooct_assets.partitions import cases_partitions
from aooct_assets.qc_eval import evaluate_all

__all__ = ["report", "render_report"]

_SCALE_TO_PX = 384


def _gray(image: np.ndarray) -> np.ndarray:
    img = np.nan_to_num(np.asarray(image, np.float64), nan=0.0)
    lo, hi = np.percentile(img, [1.0, 99.5])
    return (np.clip((img - lo) / max(hi - lo, 1e-12), 0, 1) * 255).astype(np.uint8)


def _png(rgb: np.ndarray) -> str:
    from PIL import Image

    im = Image.fromarray(rgb)
    scale = max(1, _SCALE_TO_PX // max(rgb.shape[:2]))
    if scale > 1:
        im = im.resize((rgb.shape[1] * scale, rgb.shape[0] * scale), Image.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=False)
    return base64.b64encode(buf.getvalue()).decode()


def _points_overlay(image, points_rc, confidence) -> str:
    rgb = np.repeat(_gray(image)[..., None], 3, axis=2)
    r = np.clip(np.rint(points_rc[:, 0]).astype(int), 0, rgb.shape[0] - 1)
    c = np.clip(np.rint(points_rc[:, 1]).astype(int), 0, rgb.shape[1] - 1)
    sure = confidence >= 0.5
    rgb[r[sure], c[sure]] = (40, 220, 60)      # confident detections: green
    rgb[r[~sure], c[~sure]] = (255, 150, 0)    # uncertain detections: orange
    return _png(rgb)


def _mask_overlay(image, mask) -> str:
    rgb = np.repeat(_gray(image)[..., None], 3, axis=2).astype(np.float32)
    rgb[mask] = 0.45 * rgb[mask] + 0.55 * np.array([230, 40, 40], np.float32)
    return _png(rgb.astype(np.uint8))


def _heat(var) -> str:
    from matplotlib import colormaps

    v = np.nan_to_num(np.asarray(var, np.float64))
    v = v / max(float(np.percentile(v, 99.5)), 1e-12)
    return _png((colormaps["magma"](np.clip(v, 0, 1))[..., :3] * 255).astype(np.uint8))


def _figure_png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode()


def _plots(shifts_px, density, ecc_deg) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from aooct_core.metrics import normative_cone_density

    out = []
    ecc = np.linspace(0.3, 10.0, 60)
    norm = np.array([normative_cone_density(e) for e in ecc], np.float64)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.fill_between(ecc, norm[:, 0] - 2 * norm[:, 1], norm[:, 0] + 2 * norm[:, 1], alpha=0.25,
                    label="normative mean ± 2 SD")
    ax.plot(ecc, norm[:, 0], lw=1)
    err = None if density["ci_low"] is None else [[density["value"] - density["ci_low"]],
                                                  [density["ci_high"] - density["value"]]]
    ax.errorbar([ecc_deg], [density["value"]], yerr=err, fmt="o", color="C3", label="this case (95 % CI)")
    ax.set_xlabel("eccentricity (deg)")
    ax.set_ylabel("cone density (cells/mm²)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    out.append(("Cone density vs normative range", _figure_png(fig)))
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for rep in range(shifts_px.shape[0]):
        ax.plot(shifts_px[rep, :, 1], lw=0.8, label=f"repeat {rep} A-line")
        ax.plot(shifts_px[rep, :, 0], lw=0.8, ls="--", label=f"repeat {rep} depth")
    ax.set_xlabel("B-scan")
    ax.set_ylabel("estimated shift (px)")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    out.append(("Estimated motion per B-scan", _figure_png(fig)))
    plt.close(fig)
    return out


def render_report(store, case_id: str) -> str:
    """The report HTML of ``case_id`` from its stored artifacts."""
    import polars as pl

    base = case_prefix(case_id)
    manifest = load_json(store, f"{base}/raw/manifest.json")
    corrected = load_json(store, f"{base}/corrected/summary.json")
    msum = load_json(store, f"{base}/metrics/summary.json")
    en = lambda slab: load_npy(store, f"{base}/enface/{slab}.npy")  # noqa: E731
    mk = lambda s, n: load_npy(store, f"{base}/masks/{s}/{n}.npy")  # noqa: E731
    figures = [
        ("Cones on the COST slab (green: confident, orange: uncertain)",
         _points_overlay(en("cost"), mk("cones", "points_rc"), mk("cones", "confidence"))),
        ("Cone detection uncertainty (heat-map variance)", _heat(mk("cones", "heatmap_var"))),
        ("RPE cells on the RPE slab", _points_overlay(en("rpe"), mk("rpe", "points_rc"), mk("rpe", "confidence"))),
        ("Capillaries on the SVP slab", _mask_overlay(en("svp"), mk("capillaries", "mask"))),
        ("Nerve fibre bundles on the NFL slab", _mask_overlay(en("nfl"), mk("nfl", "mask"))),
    ]
    plots = _plots(load_npy(store, f"{base}/corrected/shifts_px.npy"),
                   msum["metrics"]["cones"]["density_cells_per_mm2"], msum["eccentricity_deg"])
    table = pl.read_parquet(io.BytesIO(store.get_bytes(f"{base}/metrics/metrics.parquet")))
    qc = evaluate_all(store, case_id)
    esc = html.escape

    def fmt(x):
        return "" if x is None else (f"{x:.4g}" if isinstance(x, float) else esc(str(x)))

    rows = "".join(
        f"<tr><td>{esc(r['structure'])}</td><td>{esc(r['metric'])}</td><td>{fmt(r['value'])}</td>"
        f"<td>{fmt(r['ci_low'])} – {fmt(r['ci_high'])}</td><td>{esc(r['unit'])}</td>"
        f"<td class=m>{esc(r['method'])}</td></tr>" for r in table.to_dicts())
    qc_rows = "".join(
        f"<tr class={'ok' if q['passed'] else q['severity']}><td>{esc(q['check_name'])}</td>"
        f"<td>{'pass' if q['passed'] else esc(q['severity'])}</td><td>{fmt(q['value'])}</td>"
        f"<td>{fmt(q['threshold'])}</td>"
        f"<td>{esc('; '.join(q['detail']['messages']))}</td></tr>" for q in qc)
    imgs = "".join(f"<figure><img alt='{esc(t)}' src='data:image/png;base64,{b}'><figcaption>{esc(t)}"
                   f"</figcaption></figure>" for t, b in figures + plots)
    models = ", ".join(f"{esc(k)}: {esc(v)}" for k, v in sorted(msum["model_versions"].items()))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>aooct report {esc(case_id)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}}figure{{display:inline-block;margin:.5em;vertical-align:top}}
img{{max-width:384px;image-rendering:pixelated}}table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:2px 6px}}td.m{{font-size:11px;color:#555}}tr.fail{{background:#fcc}}
tr.warn{{background:#ffe9b3}}tr.ok{{background:#e4f7e4}}</style></head><body>
<h1>Case {esc(case_id)}</h1>
<p>Eccentricity {msum['eccentricity_deg']:.2f}° · residual motion {corrected['residual_motion_um']:.3g} µm RMS ·
SNR {corrected['snr_db']:.3g} dB · cone density percentile {msum['cone_density_percentile']:.1f}</p>
<p>Code {esc(CODE_VERSION)} · models {models} · input sha256 {esc(manifest['content_hash'])}</p>
<h2>Quality control</h2><table><tr><th>check</th><th>result</th><th>value</th><th>threshold</th><th>message</th></tr>{qc_rows}</table>
<h2>Overlays and plots</h2>{imgs}
<h2>Metrics (95 % CI)</h2><table><tr><th>structure</th><th>metric</th><th>value</th><th>95 % CI</th><th>unit</th><th>method</th></tr>{rows}</table>
</body></html>
"""


@asset(partitions_def=cases_partitions, group_name="report", code_version="report-2",
       retry_policy=RETRY, kinds={"html"}, deps=[AssetKey("metrics")],
       required_resource_keys={"object_store", "metadata_db"},
       description="Self-contained HTML report: overlays, uncertainty, plots, metrics and QC.")
def report(context: AssetExecutionContext) -> MaterializeResult:
    case_id = context.partition_key
    store, db = store_of(context), db_of(context)
    written: dict = {}
    with step_errors(f"report of case {case_id}"):
        t0 = time.perf_counter()
        page = render_report(store, case_id).encode("utf-8")
        compute_s = time.perf_counter() - t0
        put(store, f"{case_prefix(case_id)}/report/report.html", page, written)
        record_artifacts(db, case_id, "report", store, written, context.run.run_id)
        summary = load_json(store, f"{case_prefix(case_id)}/metrics/summary.json")
        db.set_case_status(case_id, "processed")
        db.record_run(context.run.run_id, case_id, status="success", dagster_run_id=context.run.run_id,
                      finished_at=datetime.now(timezone.utc), code_version=CODE_VERSION,
                      model_versions=summary["model_versions"])
    meta = artifact_metadata(store, written)
    meta["report_uri"] = store.uri(f"{case_prefix(case_id)}/report/report.html")
    meta["compute_s"] = round(compute_s, 3)
    return MaterializeResult(metadata=meta, data_version=DataVersion(meta["content_hash"][:32]))
