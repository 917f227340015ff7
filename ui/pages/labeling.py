"""Labeling (Labeler): add/remove/move cell points and correct vessel masks.

Edits are made by clicking on the en face chart (:mod:`ui.label_chart`; the selection →
edit logic is :func:`ui.labeling.selection_action`) or, exactly, by typed row/column.

Each save is a new label version for (case, structure, annotator); earlier
versions and other annotators' labels are never overwritten.
"""
from __future__ import annotations

import numpy as np
import streamlit as st

from ml.recipe import SLAB_OF
from ui import data, label_chart, labeling
from ui.auth import audit, authorize, require_page
from ui.roles import has_permission
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
slab_default = SLAB_OF[structure]  # the slab the pipeline analysed this structure on
slabs = sorted(art.enface)
# One slab choice per structure: switching structure shows that structure's slab, not the
# one chosen for the last (a widget key keeps its value whatever ``index`` says).
slab = st.selectbox("Slab", slabs, index=slabs.index(slab_default) if slab_default in slabs else 0,
                    key=f"label_slab::{structure}")
image = data.load_array(art.enface[slab])
layers = enface_layers(art, image.shape)
is_points = structure in ("cones", "rpe")

# Working copy per (case, structure): starts from this annotator's autosaved draft (a reload
# or a closed tab loses nothing), else their latest version, else the model output, else empty.
state_key = f"work::{case_id}::{structure}"
may_label = has_permission(user.role, "label")
if state_key not in st.session_state:
    mine = db.get_labels(case_id, structure=structure, annotator=user.username, latest_only=True)
    draft = db.get_label_draft(case_id, structure, user.username) if may_label else None
    if draft is not None:
        payload = draft["payload"]
        work = labeling.payload_points(payload) if is_points else labeling.payload_mask(payload)
        source = payload["source"]
    elif mine:
        payload, source = mine[-1]["payload"], f"{user.username} v{mine[-1]['version']}"
        work = labeling.payload_points(payload) if is_points else labeling.payload_mask(payload)
    elif is_points and structure in layers["points"]:
        work, source = np.asarray(layers["points"][structure], np.float32), "model"
    elif not is_points and structure in layers["masks"]:
        work, source = np.asarray(layers["masks"][structure], bool), "model"
    else:
        work = np.zeros((0, 2), np.float32) if is_points else np.zeros(image.shape, bool)
        source = "empty"
    # "selected": label points picked on the chart; "chart": bumped after each applied
    # click so the chart starts with a fresh selection (a click is applied once).
    # (The counter continues after a discard, so a stale chart selection is never re-applied.)
    edits = list(draft["payload"].get("edits", [])) if draft is not None else []
    st.session_state[state_key] = {"data": work, "source": source, "edits": edits, "selected": [],
                                   "chart": st.session_state.pop(f"chart_base::{state_key}", 0),
                                   "autosaved": len(edits),
                                   "draft_at": str(draft["updated_at"])[:19] if draft is not None else None}
work = st.session_state[state_key]
rows_max, cols_max = float(image.shape[0] - 1), float(image.shape[1] - 1)
# The typed cursor: defaults to the centre, kept inside this image when the case changes.
st.session_state["lab_row"] = min(float(st.session_state.get("lab_row", image.shape[0] // 2)), rows_max)
st.session_state["lab_col"] = min(float(st.session_state.get("lab_col", image.shape[1] // 2)), cols_max)
mode_key = "click_mode_points" if is_points else "click_mode_mask"
chart_key = f"label_chart::{case_id}::{structure}::{work['chart']}"


def _payload() -> dict:
    """The working copy as a label payload (what a save stores and the draft holds)."""
    if is_points:
        return labeling.points_payload(work["data"], source=work["source"], edits=work["edits"])
    return labeling.mask_payload(work["data"], source=work["source"], edits=work["edits"])


def _step_back(w: dict) -> None:
    data_prev, n = w["undo"].pop()
    w["redo"].append((w["data"].copy(), w["edits"][n:]))
    w["data"], w["edits"] = data_prev, w["edits"][:n]
    w["selected"], w["chart"] = [], w["chart"] + 1


def _step_forward(w: dict) -> None:
    data_next, tail = w["redo"].pop()
    w["undo"].append((w["data"].copy(), len(w["edits"])))
    w["data"], w["edits"] = data_next, w["edits"] + tail
    w["selected"], w["chart"] = [], w["chart"] + 1


def _apply_click(action: dict) -> str | None:
    """Apply a chart action to the working copy; returns a warning or None."""
    op = action["op"]
    if op == "select":
        work["selected"] = action["indices"]
        return None
    if op == "none":
        return None
    # Consumed: the next chart starts with no selection, so neither does the working copy
    # (a kept selection left "Remove selected (1)" enabled over a chart showing none, and the
    # new chart's empty selection then cleared it before the button ran: nothing removed).
    work["chart"] += 1
    work["selected"] = []
    if op == "error":
        return action["message"]
    r, c = action["rc"]
    if op == "add":
        work["data"] = labeling.add_point(work["data"], r, c)
        work["edits"].append({"op": "add", "rc": [r, c], "via": "click"})
    elif op == "move":
        work["data"] = labeling.move_point(work["data"], action["index"], r, c)
        work["edits"].append({"op": "move", "index": action["index"], "rc": [r, c], "via": "click"})
    else:  # paint / erase a disc of the brush radius
        radius = int(st.session_state.get("brush", 3))
        work["data"] = labeling.paint_disc(work["data"], r, c, radius, value=op == "paint")
        work["edits"].append({"op": op, "rc": [r, c], "radius_px": radius, "via": "click"})
    # The cursor follows the click, so the typed fields can fine-tune from there.
    st.session_state["lab_row"], st.session_state["lab_col"] = float(r), float(c)
    return None


# Undo / redo: the working copy as it was before each run that edited it, UNDO_STEPS deep.
UNDO_STEPS = 30
before = (work["data"].copy(), len(work["edits"]))

# A click on the chart arrives as this run's widget state: apply it before drawing.
event = st.session_state.get(chart_key)
click_warning = None
if event is not None:
    click_warning = _apply_click(labeling.selection_action(
        event.get("selection"), mode=st.session_state.get(mode_key, "add" if is_points else "paint"),
        selected=work["selected"], n_points=len(work["data"]) if is_points else 0,
        image_shape=image.shape, grid_curve=label_chart.GRID_CURVE, label_curve=label_chart.LABEL_CURVE))

view, tools = st.columns([3, 2])
with tools:
    status = st.empty()  # filled after the buttons below, so it counts this run's edit
    st.radio("Click on an empty spot", labeling.CLICK_MODES["points" if is_points else "mask"],
             key=mode_key, horizontal=True,
             format_func={"add": "adds a point", "move": "moves the selected point there",
                          "paint": "paints", "erase": "erases"}.get)
    if click_warning:
        st.warning(click_warning)
    if is_points:
        n_sel = len(work["selected"])
        if st.button(f"Remove selected ({n_sel})", key="remove_selected", disabled=n_sel == 0):
            removed = [int(i) for i in work["selected"] if 0 <= i < len(work["data"])]
            work["edits"].append({"op": "remove", "indices": removed,
                                  "rc": work["data"][removed].tolist(), "via": "selection"})
            work["data"] = np.delete(work["data"], removed, axis=0)
            work["selected"], work["chart"] = [], work["chart"] + 1
    st.markdown("**Exact position** (typed; the yellow ring)")
    r = st.number_input("Row (px)", 0.0, rows_max, key="lab_row")
    c = st.number_input("Column (px)", 0.0, cols_max, key="lab_col")
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
                # indices shifted: drop the chart's selection with the chart
                work["selected"], work["chart"] = [], work["chart"] + 1
        default_idx = work["selected"][0] if len(work["selected"]) == 1 else 0
        idx = st.number_input("Point # to move", 0, max(len(work["data"]) - 1, 0),
                              min(default_idx, max(len(work["data"]) - 1, 0)), key="move_idx")
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
    undo, redo = work.setdefault("undo", []), work.setdefault("redo", [])
    if len(work["edits"]) > before[1]:        # this run edited: one step back to its start
        undo.append(before)
        del undo[:-UNDO_STEPS]
        redo.clear()
    u1, u2 = st.columns(2)
    # Callbacks: they run before the next script run, so labels and the chart show the result.
    u1.button(f"Undo ({len(undo)})", key="undo", disabled=not undo, on_click=_step_back, args=(work,))
    u2.button(f"Redo ({len(redo)})", key="redo", disabled=not redo, on_click=_step_forward, args=(work,))
    if may_label and len(work["edits"]) != work["autosaved"]:
        # Every edit autosaves the working copy (one row per case, structure and annotator).
        db.save_label_draft(case_id, structure, user.username, _payload())
        work["autosaved"] = len(work["edits"])
    restored = f" · restored the draft of {work['draft_at']}" if work.get("draft_at") else ""
    status.caption(f"Started from: {work['source']} · unsaved edits: {len(work['edits'])}"
                   + (" (autosaved)" if work["edits"] and may_label else "") + restored)
    if st.button("Save new version", key="save_label", type="primary"):
        if authorize("label", action="save_label", case_id=case_id):
            version = db.add_label(case_id, structure, user.username, _payload())
            db.delete_label_draft(case_id, structure, user.username)
            audit(user.username, "save_label", case_id=case_id,
                  detail={"structure": structure, "version": version, "n_edits": len(work["edits"])})
            work["source"], work["edits"], work["autosaved"], work["draft_at"] = \
                f"{user.username} v{version}", [], 0, None
            work["undo"], work["redo"] = [], []   # steps before a saved version are in its edits
            flash(f"Saved {structure} labels as version {version} for {user.username}.")
            st.rerun()
    if st.button("Discard edits", key="discard_label"):
        if may_label:
            db.delete_label_draft(case_id, structure, user.username)
        st.session_state[f"chart_base::{state_key}"] = work["chart"] + 1
        del st.session_state[state_key]
        st.rerun()

with view:
    # The picture carries the mask tint; points are chart marks so they can be clicked.
    layers_view = {**layers, "masks": {} if is_points else {structure: work["data"]}}
    png, _ = enface_picture(image, layers_view, show_points=[], show_masks=[] if is_points else [structure],
                            heatmap=None, contrast=(1.0, 99.5))
    # No `selected=` here: plotly already shows the user's selection, and a changed figure
    # is a new streamlit widget whose selection state starts empty (the selection would be
    # lost before "Remove selected" runs).
    fig = label_chart.label_figure(png, image.shape, work["data"] if is_points else np.zeros((0, 2)),
                                   cursor_rc=(r, c))
    st.plotly_chart(fig, key=f"label_chart::{case_id}::{structure}::{work['chart']}", on_select="rerun",
                    theme=None, selection_mode=("points", "box", "lasso") if is_points else ("points",),
                    config={"displaylogo": False, "scrollZoom": True})
    step = label_chart.grid_step_px(image.shape)
    st.caption(f"{structure} labels on the {slab} slab: magenta = labels, yellow = selected / typed cursor. "
               + ("Click a label (shift-click or box/lasso for several) to select it; " if is_points else "")
               + f"click an empty spot to {'add or move' if is_points else 'paint or erase'} "
               + ("at that pixel." if step == 1 else
                  f"(snaps to a {step}-px grid; type Row/Column for exact positions)."))

st.subheader("Saved versions")
versions = db.get_labels(case_id, structure=structure)
if versions:
    st.dataframe([{"annotator": v["annotator"], "version": v["version"], "created_at": v["created_at"],
                   "size": len(v["payload"].get("points_rc", [])) if v["payload"].get("kind") == "points"
                   else f"{len(v['payload'].get('rle', [])) // 2} runs",
                   "source": v["payload"].get("source")} for v in versions], hide_index=True, width="stretch")
else:
    st.caption("No saved labels for this structure yet.")
