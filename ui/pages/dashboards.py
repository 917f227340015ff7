"""Dashboards (Researcher): cohort plots and export of metrics and reports."""
from __future__ import annotations

import altair as alt
import numpy as np
import polars as pl
import streamlit as st

from api.exports import LEFT_OUT, table_bytes
from ui import data
from ui.auth import audit, authorize, require_page
from ui.roles import has_permission

user = require_page("dashboards")
st.title("Cohort dashboards")
df = data.metrics_frame()
if df.is_empty():
    st.info("No metrics recorded yet.")
    st.stop()

f1, f2, f3, f4 = st.columns(4)
subjects = sorted(s for s in df["subject_id"].unique().to_list() if s)
pick_subjects = f1.multiselect("Subjects", subjects, key="d_subjects")
eye = f2.selectbox("Eye", ["any", "OD", "OS"], key="d_eye")
qc = f3.selectbox("QC status", ["any", "pass", "warn", "fail", "none"], key="d_qc")
dates = sorted(d for d in df["acquired_at"].unique().to_list() if d)
date_range = f4.select_slider("Acquired", options=dates, value=(dates[0], dates[-1]), key="d_dates") \
    if len(dates) > 1 else None
if pick_subjects:
    df = df.filter(pl.col("subject_id").is_in(pick_subjects))
if eye != "any":
    df = df.filter(pl.col("eye") == eye)
if qc != "any":
    df = df.filter(pl.col("qc") == qc)
if date_range:
    df = df.filter((pl.col("acquired_at") >= date_range[0]) & (pl.col("acquired_at") <= date_range[1]))
# Rejected cases are left out of the plots and exports unless asked for (as the gateway does).
include_rejected = st.checkbox("Include rejected cases", value=False, key="d_rejected")
if not include_rejected:
    df = df.filter(~pl.col("status").is_in(list(LEFT_OUT)))
st.caption(f"{df['case_id'].n_unique()} case(s), {len(df)} metric rows after filters")

st.subheader("Cone density vs eccentricity")
dens = df.filter((pl.col("structure") == "cones") & (pl.col("metric") == "density_cells_per_mm2")
                 & pl.col("eccentricity_deg").is_not_null())
if dens.is_empty():
    st.info("No cone densities in this selection.")
else:
    # The band is drawn where the published norms exist (0.5°–10°, see aooct_core.metrics.norms).
    ecc_max = min(max(float(dens["eccentricity_deg"].max()) * 1.1, 2.0), 10.0)
    grid = np.linspace(0.5, ecc_max, 60)
    mean, sd = data.normative_band(grid)
    band = pl.DataFrame({"eccentricity_deg": grid, "mean": mean, "low": mean - 2 * sd, "high": mean + 2 * sd})
    base = alt.Chart(band.to_pandas())
    chart = (
        base.mark_area(opacity=0.25, color="#7fa7d9").encode(
            x=alt.X("eccentricity_deg:Q", title="Eccentricity (deg)"),
            y=alt.Y("low:Q", title="Cone density (cells/mm²)"), y2="high:Q")
        + base.mark_line(color="#3b6fb6").encode(x="eccentricity_deg:Q", y="mean:Q")
        + alt.Chart(dens.to_pandas()).mark_errorbar(color="#444").encode(
            x="eccentricity_deg:Q", y=alt.Y("ci_low:Q", title="Cone density (cells/mm²)"), y2="ci_high:Q")
        + alt.Chart(dens.to_pandas()).mark_circle(size=70).encode(
            x="eccentricity_deg:Q", y=alt.Y("value:Q", title="Cone density (cells/mm²)"),
            color=alt.Color("qc:N", title="QC"),
            tooltip=["case_id", "subject_id", "eye", "value", "ci_low", "ci_high", "qc"])
    )
    st.altair_chart(chart, width="stretch")
    st.caption("Band: normative mean ± 2 SD at 24 mm axial length; points: cases with 95 % CI.")

st.subheader("Distributions")
names = sorted({f"{s} · {m}" for s, m in zip(df["structure"].to_list(), df["metric"].to_list())})
headline = "cones · density_cells_per_mm2"
choice = st.selectbox("Metric", names, index=names.index(headline) if headline in names else 0,
                      key="d_metric")
s_name, m_name = choice.split(" · ")
sel = df.filter((pl.col("structure") == s_name) & (pl.col("metric") == m_name))
st.altair_chart(
    alt.Chart(sel.to_pandas()).mark_bar().encode(
        x=alt.X("value:Q", bin=alt.Bin(maxbins=30), title=f"{m_name} ({sel['unit'][0] if len(sel) else ''})"),
        y=alt.Y("count():Q", title="cases")),
    width="stretch",
)

st.subheader("Export")
cfg = data.ui_config()
st.caption(f"Export location: {cfg.export}")
fmt = st.radio("Format", ["csv", "parquet"], horizontal=True, key="d_fmt")
e1, e2 = st.columns(2)
if e1.button("Export metrics", key="export_metrics", type="primary"):
    if authorize("export", action="export_metrics"):
        uri = data.export_table(df, actor=user.username, fmt=fmt)
        audit(user.username, "export_metrics",
              detail={"uri": uri, "format": fmt, "rows": len(df), "cases": df["case_id"].n_unique()})
        st.success(f"Exported {len(df)} rows to {uri}")
if has_permission(user.role, "export"):
    # The same table to this browser; the download is audited like an export.
    e2.download_button(
        f"Download ({fmt})", table_bytes(df, fmt), file_name=f"aooct-metrics.{fmt}",
        mime="text/csv" if fmt == "csv" else "application/vnd.apache.parquet", key="download_metrics",
        on_click=audit, args=(user.username, "download_metrics"),
        kwargs={"detail": {"format": fmt, "rows": len(df), "cases": df["case_id"].n_unique()}})
report_cases = [cid for cid in sorted(df["case_id"].unique().to_list())
                if data.case_artifacts(cid).report is not None]
pick = st.multiselect("Case reports", report_cases, key="d_reports")
if st.button("Export reports", key="export_reports", disabled=not pick):
    if authorize("export", action="export_reports"):
        uris = [data.export_report(cid, data.case_artifacts(cid).report, actor=user.username) for cid in pick]
        audit(user.username, "export_reports", detail={"uris": uris})
        st.success(f"Exported {len(uris)} report(s): " + ", ".join(uris))
