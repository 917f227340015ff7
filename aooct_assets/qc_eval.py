"""QC of a case from its stored summaries: shared by the asset checks and the report.

Each check turns numbers already written by the assets into ``aooct_core.qc.qc_checks``
and one result dict (the shape ``MetadataDB.record_qc`` stores): ``passed`` is False when
any flag is raised; ``severity`` is ``"fail"`` when one of them is a fail (the Dagster
check is then an ERROR and blocks downstream steps) and ``"warn"`` otherwise.
"""
from __future__ import annotations

import math

from aooct_assets.assets._common import case_prefix, load_json
from aooct_assets.assets.masks import STRUCTURES

__all__ = ["CHECKS", "evaluate", "evaluate_all"]

#: check name → (asset it checks, one-line description, blocking)
#: Registration, SNR, cell-detection uncertainty and physiological plausibility block
#: downstream steps: cell densities from such inputs would be meaningless. The vessel and
#: nerve-fibre uncertainty checks do not block: a failed capillary segmentation must not
#: withhold the case's cone and RPE metrics; their rows are still written and the failed
#: check (ERROR in Dagster, "fail" in the DB and the report) flags the case for review.
CHECKS = {
    "registration_residual": ("corrected_volume", "residual motion after registration, "
                              "registration success and edge-padded columns", True),
    "snr": ("corrected_volume", "signal-to-noise ratio of the RPE over the vitreous", True),
    **{f"{s}_uncertainty": (STRUCTURES[s][0], f"share of uncertain {s} outputs",
                            STRUCTURES[s][2] == "cells") for s in STRUCTURES},
    "cone_mosaic": ("enface_projections", "a cone mosaic in the IS/OS or COST slab at the "
                    "spacing expected for the location (Yellott ring)", True),
    "physiological_plausibility": ("metrics", "cone density and count against the normative "
                                   "range at this eccentricity, and whether the sampling "
                                   "resolves the mosaic", True),
}


def _inputs(store, case_id: str, check: str) -> dict:
    base = case_prefix(case_id)
    if check in ("registration_residual", "snr"):
        s = load_json(store, f"{base}/corrected/summary.json")
        if check == "snr":
            # Summaries written before the field have none: the SNR was over the vitreous.
            return {"snr_db": s["snr_db"], "snr_is_lower_bound": bool(s.get("snr_is_lower_bound", False))}
        out = {"residual_motion_um": s["residual_motion_um"], "registration_ok": s["registration_ok"]}
        for later in ("saccade_ambiguity_um", "padded_fraction"):   # not in older summaries
            if later in s:
                out[later] = s[later]
        return out
    if check.endswith("_uncertainty"):
        structure = check[: -len("_uncertainty")]
        s = load_json(store, f"{base}/masks/{structure}/summary.json")
        out = {"uncertainty_fraction": s["uncertainty_fraction"]}
        if "count" in s:
            out["cell_count"] = s["count"]
        if "fragment_count" in s:
            out["vessel_fragment_count"] = s["fragment_count"]
        return out
    if check == "cone_mosaic":
        s = load_json(store, f"{base}/enface/summary.json")
        # None: outside the check's range (spacing < 3 px, which undersampled_mosaic judges,
        # or too few cells across the field): not applicable rather than unmeasured.
        strength = s.get("mosaic_ring_strength")
        return {} if strength is None else {"mosaic_ring_strength": strength}
    if check == "physiological_plausibility":
        s = load_json(store, f"{base}/metrics/summary.json")
        cones = s["metrics"]["cones"]
        return {"density_cells_per_mm2": cones["density_cells_per_mm2"]["value"],
                "cell_count": cones["count"]["value"], "eccentricity_deg": s["eccentricity_deg"],
                "cone_spacing_px": _cone_spacing_px(store, base, s["eccentricity_deg"])}
    raise ValueError(f"unknown QC check {check!r}; known: {sorted(CHECKS)}")


def _cone_spacing_px(store, base: str, eccentricity_deg: float) -> float:
    """Normative cone spacing over the coarser en face pixel size (NaN beyond the norms)."""
    from aooct_core.metrics.norms import has_norm, normative_cone_spacing_um

    um_per_px = load_json(store, f"{base}/corrected/summary.json")["geometry_um_per_px"]
    if not has_norm(eccentricity_deg):
        return math.nan
    return normative_cone_spacing_um(eccentricity_deg) / max(um_per_px["bscan"], um_per_px["aline"])


def evaluate(store, case_id: str, check: str) -> dict:
    """Result dict of one check (``check_name, passed, severity, value, threshold, detail``).

    An input that could not be measured (NaN) is left out of the check and named in
    ``detail["not_measured"]``: unmeasured is not the same as good, so the check warns.
    """
    from aooct_core.qc import qc_checks

    raw = _inputs(store, case_id, check)
    inputs = {k: v for k, v in raw.items() if not (isinstance(v, float) and not math.isfinite(v))}
    not_measured = sorted(set(raw) - set(inputs))
    results = qc_checks(**inputs)
    flags = [r for r in results if not r.passed]
    fails = [r for r in flags if r.severity == "fail"]
    worst = (fails or flags or results or [None])[0]
    severity = "fail" if fails else ("warn" if flags or not_measured else None)
    messages = [r.message for r in flags] + [f"{k} could not be measured" for k in not_measured]
    return {
        "check_name": check,
        "passed": severity is None,
        "severity": severity,
        "value": None if worst is None else float(worst.value),
        "threshold": None if worst is None else float(worst.threshold),
        "detail": {"inputs": raw, "not_measured": not_measured, "messages": messages,
                   "checks": [r.to_dict() for r in results]},
    }


def evaluate_all(store, case_id: str) -> list[dict]:
    """Every check whose inputs exist (used by the report)."""
    out = []
    for check in CHECKS:
        try:
            out.append(evaluate(store, case_id, check))
        except FileNotFoundError:
            continue  # the asset it checks was not materialized (e.g. blocked upstream)
    return out
