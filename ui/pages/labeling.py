"""Labeling (Labeler): add/remove/move cell points and correct vessel masks.

Each save is a new label version for (case, structure, annotator); earlier
versions and other annotators' labels are never overwritten.
"""
from __future__ import annotations

import numpy as np
import streamlit as st

from ui import data, labeling
from ui.auth import audit, authorize, require_page
from ui.widgets import enface_layers, enface_picture, flash, pick_case, show_flash

user = require_page("labeling")
st.title("Labeling")
show_flash()
case = pick_case("label_case")
if case is None:
    st.stop()
case_id = case["case_id"]
db = data.get_db()
art = data.case_artifacts(case_id)
if not art.enface:
    st.info("This case has no en face images yet; nothing to label.")
    st.stop()

structure = st.selectbox("Structure", ["cones", "rpe", "capillaries", "nfl"], key="label_structure")
slab_default = {"cones": "cost", "rpe": "rpe", "capillaries": "svp", "nfl": "nfl"}[structure]
slabs = sorted(art.enface)
slab = st.selectbox("Slab", slabs, index=slabs.index(slab_default) if slab_default in slabs else 0,
                    key="label_slab")
image = data.load_array(art.enface[slab])
layers = enface_layers(art, image.shape)
is_points = structure in ("cones", "rpe")

# Working copy per (case, structure): starts from this annotator's latest version,
# else from the model output, else empty.
state_key = f"work::{case_id}::{structure}"
if state_key not in st.session_state:
    mine = db.get_labels(case_id, structure=structure, annotator=user.username, latest_only=True)
    if mine:
        payload, source = mine[-1]["payload"], f"{user.username} v{mine[-1]['version']}"
        work = labeling.payload_points(payload) if is_points else labeling.payload_mask(payload)
    elif is_points and structure in layers["points"]:
        work, source = np.asarray(layers["points"][structure], np.float32), "model"
    elif not is_points and structure in layers["masks"]:
        work, source = np.asarray(layers["masks"][structure], bool), "model"
    else:
        work = np.zeros((0, 2), np.float32) if is_points else np.zeros(image.shape, bool)
        source = "empty"
    st.session_state[state_key] = {"data": work, "source": source, "edits": []}
work = st.session_state[state_key]

view, tools = st.columns([3, 2])
with tools:
    st.caption(f"Started from: {work['source']} · unsaved edits: {len(work['edits'])}")
    r = st.number_input("Row (px)", 0.0, float(image.shape[0] - 1), float(image.shape[0] // 2), key="lab_row")
    c = st.number_input("Column (px)", 0.0, float(image.shape[1] - 1), float(image.shape[1] // 2), key="lab_col")
    if is_points:
        b1, b2 = st.columns(2)
        if b1.button("Add point", key="add_point"):
            work["data"] = labeling.add_point(work["data"], r, c)
            work["edits"].append({"op": "add", "rc": [r, c]})
        if b2.button("Remove nearest", key="remove_point"):
            work["data"], removed = labeling.remove_nearest(work["data"], r, c)
            if removed is None:
                st.warning("No point within 5 px of that position.")
            else:
                work["edits"].append({"op": "remove", "index": removed, "rc": [r, c]})
        idx = st.number_input("Point # to move", 0, max(len(work["data"]) - 1, 0), 0, key="move_idx")
        if st.button("Move point here", key="move_point", disabled=len(work["data"]) == 0):
            work["data"] = labeling.move_point(work["data"], int(idx), r, c)
            work["edits"].append({"op": "move", "index": int(idx), "rc": [r, c]})
        st.dataframe({"row": work["data"][:, 0], "col": work["data"][:, 1]}, height=200, width="stretch")
    else:
        radius = st.slider("Brush radius (px)", 1, 20, 3, key="brush")
        b1, b2 = st.columns(2)
        if b1.button("Paint", key="paint"):
            work["data"] = labeling.paint_disc(work["data"], r, c, radius, value=True)
            work["edits"].append({"op": "paint", "rc": [r, c], "radius_px": radius})
        if b2.button("Erase", key="erase"):
            work["data"] = labeling.paint_disc(work["data"], r, c, radius, value=False)
            work["edits"].append({"op": "erase", "rc": [r, c], "radius_px": radius})
        st.caption(f"Mask covers {work['data'].mean() * 100:.1f} % of the field")
    if st.button("Save new version", key="save_label", type="primary"):
        if authorize("label", action="save_label", case_id=case_id):
            payload = (labeling.points_payload(work["data"], source=work["source"], edits=work["edits"])
                       if is_points else
                       labeling.mask_payload(work["data"], source=work["source"], edits=work["edits"]))
            version = db.add_label(case_id, structure, user.username, payload)
            audit(user.username, "save_label", case_id=case_id,
                  detail={"structure": structure, "version": version, "n_edits": len(work["edits"])})
            work["source"], work["edits"] = f"{user.username} v{version}", []
            flash(f"Saved {structure} labels as version {version} for {user.username}.")
            st.rerun()
    if st.button("Discard edits", key="discard_label"):
        del st.session_state[state_key]
        st.rerun()

with view:
    if is_points:
        layers_view = {**layers, "points": {"label": work["data"]}}
        png, _ = enface_picture(image, layers_view, show_points=["label"], show_masks=[],
                                heatmap=None, contrast=(1.0, 99.5), cursor_rc=(r, c))
    else:
        layers_view = {**layers, "masks": {structure: work["data"]}}
        png, _ = enface_picture(image, layers_view, show_points=[], show_masks=[structure],
                                heatmap=None, contrast=(1.0, 99.5), cursor_rc=(r, c))
    st.image(png, caption=f"{structure} labels on the {slab} slab "
             "(magenta = labels, yellow ring = row/column cursor)")

st.subheader("Saved versions")
versions = db.get_labels(case_id, structure=structure)
if versions:
    st.dataframe([{"annotator": v["annotator"], "version": v["version"], "created_at": v["created_at"],
                   "size": len(v["payload"].get("points_rc", [])) if v["payload"].get("kind") == "points"
                   else f"{len(v['payload'].get('rle', [])) // 2} runs",
                   "source": v["payload"].get("source")} for v in versions], hide_index=True, width="stretch")
else:
    st.caption("No saved labels for this structure yet.")
