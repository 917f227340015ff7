"""Cases: paginated, filterable list with pipeline status, QC flags and metrics."""
from __future__ import annotations

import math

import streamlit as st

from resources.metadata_db import CASE_STATUSES
from ui import data
from ui.auth import require_page

require_page("cases")
st.title("Cases")

PAGE_SIZE = 25
REFRESH_S = 5
db = data.get_db()

c1, c2, c3, c4 = st.columns(4)
status = c1.selectbox("Pipeline status", ["any", *CASE_STATUSES], key="f_status")
subject = c2.text_input("Subject", key="f_subject").strip() or None
eye = c3.selectbox("Eye", ["any", "OD", "OS"], key="f_eye")
qc = c4.selectbox("QC", ["any", "pass", "warn", "fail"], key="f_qc")
filters = dict(
    status=None if status == "any" else status,
    subject_id=subject,
    eye=None if eye == "any" else eye,
    qc_status=None if qc == "any" else qc,
)

total = db.count_cases(**filters)
n_pages = max(1, math.ceil(total / PAGE_SIZE))
page = st.number_input(f"Page (of {n_pages})", min_value=1, max_value=n_pages, value=1, key="page_no")
cases = db.list_cases(**filters, limit=PAGE_SIZE, offset=(int(page) - 1) * PAGE_SIZE)
st.caption(f"{total} case(s) match")

if not cases:
    st.info("No cases match these filters.")
    st.stop()

#: Statuses of a case whose run has not finished: the table then refreshes by itself.
IN_FLIGHT = ("new", "ingested", "processing")


@st.fragment(run_every=REFRESH_S if any(c.get("status") in IN_FLIGHT for c in cases) else None)
def _table() -> None:
    fresh = [db.get_case(c["case_id"]) or c for c in cases]
    st.dataframe(data.case_rows(fresh), hide_index=True, width="stretch")
    if any(c.get("status") in IN_FLIGHT for c in fresh):
        st.caption(f"Runs in progress: this table refreshes every {REFRESH_S} s.")


_table()

ids = [c["case_id"] for c in cases]
default = ids.index(st.session_state["case_id"]) if st.session_state.get("case_id") in ids else 0
chosen = st.selectbox("Case", ids, index=default, key="cases_pick")
if st.button("Open case review", key="open_review", type="primary"):
    st.session_state["case_id"] = chosen
    st.switch_page("pages/review.py")
