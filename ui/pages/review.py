"""Case review: en face viewer with overlays and uncertainty, B-scan viewer with layer
surfaces, metrics with CI and normative percentile, QC flags, approve/reject."""
from __future__ import annotations

import os

import streamlit as st

from api.decisions import DecisionRefused, decision_state, latest_run, record_decision
from ml.recipe import SLAB_OF
from ui import data
from ui.auth import audit, authorize, call_application, require_page
from ui.overlays import compose_bscan, encode_png
from ui.roles import has_permission
from ui.widgets import enface_layers, enface_picture, flash, pick_case, show_flash

user = require_page("review")
st.title("Case review")
show_flash()
case = pick_case("review_case")
if case is None:
    st.stop()
case_id = case["case_id"]
db = data.get_db()
st.caption(
    f"Subject {case.get('subject_id')} · {case.get('eye')} · eccentricity "
    f"{case.get('eccentricity_deg') or float('nan'):.2f}° · status **{case.get('status')}** · "
    f"QC **{case.get('qc_status') or 'none'}**"
)
art = data.case_artifacts(case_id)

view_col, side_col = st.columns([3, 2])
with view_col:
    st.subheader("En face")
    if not art.enface:
        st.info("No en face images yet: the pipeline has not produced them for this case.")
    else:
        slabs = sorted(art.enface)
        cone_slab = SLAB_OF["cones"]  # cones are shown on the slab they were detected on
        slab = st.selectbox("Slab", slabs, index=slabs.index(cone_slab) if cone_slab in slabs else 0,
                            key="slab")
        image = data.load_array(art.enface[slab])
        layers = enface_layers(art, image.shape)
        t1, t2, t3, t4 = st.columns(4)
        show_points = [t for t, col, label in (("cones", t1, "Cones"), ("rpe", t2, "RPE cells"))
                       if t in layers["points"] and col.toggle(label, value=(t == "cones"), key=f"tog_{t}")]
        show_masks = [s for s, col, label in (("capillaries", t3, "Capillaries"), ("nfl", t4, "Nerve fibers"))
                      if s in layers["masks"] and col.toggle(label, value=False, key=f"tog_{s}")]
        unc_names = sorted(layers["uncertainty"])
        heat = st.selectbox("Uncertainty heat map", ["none", *unc_names], key="heat")
        contrast = st.slider("Contrast (percentiles)", 0.0, 100.0, (1.0, 99.5), step=0.5, key="contrast")
        for message in layers["skipped"]:
            st.warning(message)
        png, factor = enface_picture(
            image, layers, show_points=show_points, show_masks=show_masks,
            heatmap=None if heat == "none" else heat, contrast=contrast,
        )
        counts = ", ".join(f"{len(layers['points'][t])} {t}" for t in show_points)
        st.image(png, caption=f"{slab} slab {image.shape[0]}×{image.shape[1]} px"
                 + (f" · {counts}" if counts else "") + (f" · ×{factor} display" if factor > 1 else ""))

    st.subheader("B-scan")
    if art.volume is None:
        st.info("No corrected volume yet.")
    else:
        volume_shape = data.load_array(art.volume).shape
        index = st.slider("B-scan index", 0, volume_shape[0] - 1, volume_shape[0] // 2, key="bscan_index")
        bscan = data.load_bscan(case_id, art.volume, index)
        names = []
        if art.surfaces:
            names = st.multiselect("Layer surfaces", sorted(art.surfaces), default=sorted(art.surfaces),
                                   key="surfaces")
        rgb = compose_bscan(bscan, {n: data.load_array(art.surfaces[n])[index] for n in names})
        st.image(encode_png(rgb), caption=f"B-scan {index} (depth × A-line); surfaces: "
                 + (", ".join(names) or "none"))

with side_col:
    st.subheader("Metrics")
    metrics = db.get_metrics(case_id)
    if not metrics:
        st.info("No metrics yet.")
    else:
        def _num(v) -> str:  # a metric the pipeline could not compute is stored as null
            return "—" if v is None else f"{v:.4g}"

        st.dataframe(
            [{"metric": f"{r['structure']} · {r['metric']}", "value": _num(r["value"]),
              "95% CI": (f"{_num(r['ci_low'])}–{_num(r['ci_high'])}"
                         if r.get("ci_low") is not None and r.get("ci_high") is not None else ""),
              "unit": r["unit"], "method": r.get("method")} for r in metrics],
            hide_index=True, width="stretch",
        )
        density = [r for r in metrics if r["structure"] == "cones" and r["metric"] == "density_cells_per_mm2"]
        if density and density[-1]["value"] is not None and case.get("eccentricity_deg") is not None:
            from aooct_core.metrics import cone_density_percentile

            axial = case.get("axial_length_mm")
            try:
                pct, z = cone_density_percentile(
                    density[-1]["value"], float(case["eccentricity_deg"]),
                    **({"axial_length_mm": float(axial)} if axial else {}))
            except ValueError as exc:  # outside the published norms: say so, show no number
                st.info(f"No normative percentile: {exc}")
            else:
                st.metric("Cone density vs. healthy eyes", f"{pct:.0f}th percentile")
                st.caption(f"z = {z:+.2f} against the normative mean ± SD at "
                           f"{float(case['eccentricity_deg']):.1f}°"
                           + ("" if axial else "; axial length unknown, the norm assumes 24 mm"))

    st.subheader("QC flags")
    qc = db.get_qc(case_id)
    if not qc:
        st.info("No QC results yet.")
    else:
        st.dataframe([{"check": r["check_name"], "passed": r["passed"], "severity": r.get("severity"),
                       "value": r.get("value"), "threshold": r.get("threshold")} for r in qc],
                     hide_index=True, width="stretch")

    st.subheader("Decision")
    state = decision_state(db, case_id)
    for r in db.get_reviews(case_id):
        run = f", run {r['run_id'][:8]}" if r.get("run_id") else ""
        st.write(f"**{r['decision']}** by {r['reviewer']} ({r['created_at'][:16]}{run}): "
                 f"{r.get('comment') or ''}")
    if state.decision and not state.current:
        st.warning("The latest decision is about an earlier run; these results want review again.")
    with st.form("review_form", clear_on_submit=True):
        decision = st.radio("Decision", ["approve", "reject"], horizontal=True, key="decision")
        comment = st.text_area("Comment", key="review_comment")
        submitted = st.form_submit_button("Submit decision")
    if submitted and authorize("review_case", action="review_case", case_id=case_id):
        try:
            made = record_decision(db, case_id, reviewer=user.username, decision=decision, comment=comment)
        except DecisionRefused as exc:
            st.error(str(exc)[:1].upper() + str(exc)[1:] + ".")
        else:
            audit(user.username, f"review_{decision}", case_id=case_id,
                  detail={"review_id": made["id"], "run_id": made["run_id"], "comment": comment})
            flash(f"Case {case_id} {'approved' if decision == 'approve' else 'rejected'}.")
            st.rerun()

    st.subheader("Pipeline")
    last = latest_run(db, case_id)
    dagster_url = os.environ.get("AOOCT_DAGSTER_URL", "").rstrip("/")
    if last is None:
        st.info("No run recorded for this case yet.")
    else:
        why = f" — {last['reason']}" if last.get("reason") else ""
        link = f" ([in Dagster]({dagster_url}/runs/{last['dagster_run_id']}))" \
            if dagster_url and last.get("dagster_run_id") else ""
        st.markdown(f"Latest run `{last['run_id'][:8]}`: **{last['status']}**{why}{link}")
        if last["status"] == "running" and dagster_url and last.get("dagster_run_id"):
            from api.application import run_status
            from api.runs import DagsterRuns

            live = call_application(user, run_status, DagsterRuns(dagster_url), last["dagster_run_id"])
            if live is not None:   # Dagster's own view: which step runs now, which are done
                steps = live["steps"]
                now = [s["step"] for s in steps if s["status"] == "IN_PROGRESS"]
                done = sum(s["status"] == "SUCCESS" for s in steps)
                st.caption(f"Dagster: run {live['status'].lower()}, "
                           + (f"now in {', '.join(now)}; " if now else "") + f"{done} step(s) done.")
    if has_permission(user.role, "run_case"):
        if not dagster_url:
            st.caption("Set AOOCT_DAGSTER_URL to the Dagster webserver to run the case again from here.")
        elif st.button("Run the case again", key="rerun_case"):
            from api.application import launch_run
            from api.runs import DagsterRuns

            # Keyed by the run it repeats: a second click before it starts is the same run.
            key = f"rerun-{case_id}-{last['run_id'] if last else 'none'}"
            run = call_application(user, launch_run, DagsterRuns(dagster_url), case_id, idempotency_key=key)
            if run is not None:
                flash(f"Run {run['run_id'][:8]} of {case_id} " + ("started." if run["created"] else "was already started."))
                st.rerun()

    if art.report is not None:
        st.download_button("Download report (HTML)", data.get_store().get_bytes(art.report),
                           file_name=f"{case_id}_report.html", mime="text/html", key="dl_report")
