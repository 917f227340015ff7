"""``report``: one self-contained HTML page per case (overlays, plots, metrics, QC), images inline.

Everything on the page comes from stored artifacts, rendered deterministically (PNG
without timestamps, sorted tables), so the same case and code give the same bytes. The
overlays are drawn by :mod:`ui.overlays` (numpy only, no Streamlit), so the report shows
the pictures the review app shows, each on the slab its structure was analysed on.
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
from aooct_assets.assets.masks import STRUCTURES
from aooct_assets.partitions import cases_partitions
from aooct_assets.qc_eval import evaluate_all

__all__ = ["report", "render_report"]

#: Short side of the overlay pictures, px (small en face images are upscaled, nearest).
_DISPLAY_PX = 384
#: Detections the model is unsure of (confidence < 0.5) are drawn in this colour.
_UNSURE_RGB = (255, 150, 0)
_SLAB_NAMES = {"isos": "IS/OS", "cost": "COST", "isos_cost": "IS/OS·COST", "rpe": "RPE", "svp": "SVP", "nfl": "NFL"}


def _png(rgb: np.ndarray) -> str:
    from ui.overlays import encode_png

    return base64.b64encode(encode_png(rgb)).decode()


def _points_overlay(image, points_rc, confidence, structure: str) -> str:
    from ui.overlays import COLORS, compose_enface

    sure = np.asarray(confidence) >= 0.5
    rgb, _ = compose_enface(image, min_display_px=_DISPLAY_PX,
                            points=[(points_rc[sure], COLORS[structure]), (points_rc[~sure], _UNSURE_RGB)])
    return _png(rgb)


def _mask_overlay(image, mask, structure: str) -> str:
    from ui.overlays import COLORS, compose_enface

    return _png(compose_enface(image, min_display_px=_DISPLAY_PX, masks=[(mask, COLORS[structure])])[0])


def _heat(image, var) -> str:
    from ui.overlays import compose_enface

    return _png(compose_enface(image, min_display_px=_DISPLAY_PX, heatmap=var)[0])


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
    en = lambda s: load_npy(store, f"{base}/enface/{STRUCTURES[s][1]}.npy")  # noqa: E731
    mk = lambda s, n: load_npy(store, f"{base}/masks/{s}/{n}.npy")  # noqa: E731
    slab = {s: _SLAB_NAMES.get(STRUCTURES[s][1], STRUCTURES[s][1]) for s in STRUCTURES}
    figures = [
        (f"Cones on the {slab['cones']} slab (green: confident, orange: uncertain)",
         _points_overlay(en("cones"), mk("cones", "points_rc"), mk("cones", "confidence"), "cones")),
        ("Cone detection uncertainty (heat-map variance)", _heat(en("cones"), mk("cones", "heatmap_var"))),
        (f"RPE cells on the {slab['rpe']} slab (blue: confident, orange: uncertain)",
         _points_overlay(en("rpe"), mk("rpe", "points_rc"), mk("rpe", "confidence"), "rpe")),
        (f"Capillaries on the {slab['capillaries']} slab",
         _mask_overlay(en("capillaries"), mk("capillaries", "mask"), "capillaries")),
        (f"Nerve fibre bundles on the {slab['nfl']} slab", _mask_overlay(en("nfl"), mk("nfl", "mask"), "nfl")),
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
SNR {'≥ ' if corrected.get('snr_is_lower_bound') else ''}{corrected['snr_db']:.3g} dB · cone density percentile {msum['cone_density_percentile']:.1f}</p>
<p>Code {esc(CODE_VERSION)} · models {models} · input sha256 {esc(manifest['content_hash'])}</p>
<h2>Quality control</h2><table><tr><th>check</th><th>result</th><th>value</th><th>threshold</th><th>message</th></tr>{qc_rows}</table>
<h2>Overlays and plots</h2>{imgs}
<h2>Metrics (95 % CI)</h2><table><tr><th>structure</th><th>metric</th><th>value</th><th>95 % CI</th><th>unit</th><th>method</th></tr>{rows}</table>
</body></html>
"""


@asset(partitions_def=cases_partitions, group_name="report", code_version="report-4",
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
