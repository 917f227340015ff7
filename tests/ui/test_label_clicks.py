"""Click-based labeling: chart selection → label edit (pure logic) and the chart figure."""
from __future__ import annotations

import numpy as np
import pytest

from ui import label_chart, labeling

SHAPE = (128, 128)


def _grid(x, y, index=0):
    return {"curve_number": label_chart.GRID_CURVE, "point_index": index, "x": x, "y": y}


def _label(index, x=0.0, y=0.0):
    return {"curve_number": label_chart.LABEL_CURVE, "point_index": index, "x": x, "y": y}


def _act(points, *, mode="add", selected=(), n_points=3, box=()):
    return labeling.selection_action({"points": list(points), "box": list(box), "lasso": []}, mode=mode,
                                     selected=list(selected), n_points=n_points, image_shape=SHAPE)


def test_click_on_empty_spot_adds_paints_or_erases_there():
    assert _act([_grid(40, 30)]) == {"op": "add", "rc": (30.0, 40.0)}
    assert _act([_grid(40, 30)], mode="paint") == {"op": "paint", "rc": (30.0, 40.0)}
    assert _act([_grid(40, 30)], mode="erase") == {"op": "erase", "rc": (30.0, 40.0)}
    # positions are clipped into the image
    assert _act([_grid(500, -3)])["rc"] == (0.0, 127.0)


def test_clicking_labels_selects_them_and_labels_win_over_the_grid():
    assert _act([_label(2)]) == {"op": "select", "indices": [2]}
    # a box catches label points and grid points: only the labels count, sorted, deduplicated
    pts = [_grid(1, 1, 0), _label(1), _grid(2, 2, 1), _label(0), _label(1)]
    assert _act(pts, box=[{"x": [0, 3], "y": [0, 3]}]) == {"op": "select", "indices": [0, 1]}
    # indices of points that no longer exist (stale event) are ignored
    assert _act([_label(7)], n_points=3) == {"op": "none"}


def test_move_needs_exactly_one_selected_point():
    assert _act([_grid(5, 6)], mode="move", selected=[1]) == {"op": "move", "index": 1, "rc": (6.0, 5.0)}
    for selected in ([], [0, 1]):
        action = _act([_grid(5, 6)], mode="move", selected=selected)
        assert action["op"] == "error" and "exactly one" in action["message"]


def test_empty_and_box_only_selections():
    assert _act([]) == {"op": "none"}
    assert _act([], selected=[1]) == {"op": "select", "indices": []}  # deselect (double click)
    none = labeling.selection_action(None, mode="add", selected=[], n_points=0, image_shape=SHAPE)
    assert none == {"op": "none"}
    # a box over empty image (many grid points, no labels) does nothing
    assert _act([_grid(1, 1, 0), _grid(2, 1, 1)]) == {"op": "none"}


def test_bad_mode_and_bad_point_raise():
    with pytest.raises(ValueError, match="click mode"):
        _act([_grid(1, 1)], mode="delete")
    with pytest.raises(ValueError, match="numeric x/y"):
        _act([{"curve_number": 0, "point_index": 0}])


def test_label_figure_traces_grid_and_background():
    pts = np.array([[10.0, 20.0], [30.0, 40.0]], np.float32)
    fig = label_chart.label_figure(b"\x89PNG fake", SHAPE, pts, selected=[1], cursor_rc=(5.0, 6.0))
    grid, labels, cursor = fig.data
    assert len(grid.x) == 128 * 128 and set(np.asarray(grid.x)) == set(range(128))
    assert list(labels.x) == [20.0, 40.0] and list(labels.y) == [10.0, 30.0]
    assert list(labels.selectedpoints) == [1]
    assert cursor.hoverinfo == "skip"
    image = fig.layout.images[0]
    assert image.source.startswith("data:image/png;base64,") and (image.sizex, image.sizey) == (128, 128)
    assert tuple(fig.layout.yaxis.range) == (127.5, -0.5)  # row 0 at the top
    # large images: the grid is capped and a click snaps to at most step/2 px away
    assert label_chart.grid_step_px((512, 512)) == 4
    big = label_chart.label_figure(b"x", (512, 300), np.zeros((0, 2)))
    assert len(big.data[0].x) == 128 * 75 and max(big.data[0].y) <= 511


def test_labeling_page_applies_a_chart_click_and_removes_selected_points(ui_env):
    """AppTest cannot click a chart; it sets the chart's selection state as a click would."""
    from ui_helpers import open_page

    db, _, ids, _ = ui_env
    at = open_page("labeling", "Labeler", case_id=ids[0])
    assert not at.exception
    work_key = f"work::{ids[0]}::cones"
    n_model = len(at.session_state[work_key]["data"])
    # a click on an empty spot: the grid point at row 30, col 40
    at.session_state[f"label_chart::{ids[0]}::cones::0"] = {"selection": {
        "points": [_grid(40, 30, 30 * 128 + 40)], "point_indices": [30 * 128 + 40], "box": [], "lasso": []}}
    at.run()
    assert not at.exception
    work = at.session_state[work_key]
    assert len(work["data"]) == n_model + 1 and tuple(work["data"][-1]) == (30.0, 40.0)
    assert work["chart"] == 1  # consumed: a rerun does not add it again
    assert (at.number_input(key="lab_row").value, at.number_input(key="lab_col").value) == (30.0, 40.0)
    at.run()
    assert len(at.session_state[work_key]["data"]) == n_model + 1
    # select two points (as a box would) and remove them; AppTest forgets a chart's state
    # after one run (a browser keeps it), so it is set again for the button's run.
    box = {"selection": {"points": [_label(0), _label(1)], "point_indices": [0, 1], "box": [], "lasso": []}}
    at.session_state[f"label_chart::{ids[0]}::cones::1"] = box
    at.run()
    assert at.session_state[work_key]["selected"] == [0, 1]
    assert at.button(key="remove_selected").label == "Remove selected (2)"
    at.session_state[f"label_chart::{ids[0]}::cones::1"] = box
    at.button(key="remove_selected").click().run()
    assert not at.exception, at.exception
    assert len(at.session_state[work_key]["data"]) == n_model - 1, at.session_state[work_key]["edits"]
    at.button(key="save_label").click().run()
    saved = db.get_labels(ids[0], structure="cones", annotator="labeler")[0]["payload"]
    assert len(saved["points_rc"]) == n_model - 1 and [30.0, 40.0] in saved["points_rc"]
    assert [(e["op"], e["via"]) for e in saved["edits"]] == [("add", "click"), ("remove", "selection")]
    assert db.list_audit(action="save_label")[0]["actor"] == "labeler"


def test_labeling_page_click_moves_a_point_and_paints_a_mask(ui_env):
    from ui_helpers import open_page

    db, _, ids, _ = ui_env
    at = open_page("labeling", "Labeler", case_id=ids[0])
    work_key, chart = f"work::{ids[0]}::cones", f"label_chart::{ids[0]}::cones::"
    at.radio(key="click_mode_points").set_value("move").run()
    at.session_state[chart + "0"] = {"selection": {"points": [_label(3)], "box": [], "lasso": []}}
    at.run()
    at.session_state[chart + "0"] = {"selection": {"points": [_grid(7, 9)], "box": [], "lasso": []}}
    at.run()
    assert not at.exception
    work = at.session_state[work_key]
    assert tuple(work["data"][3]) == (9.0, 7.0) and work["selected"] == []
    assert work["edits"] == [{"op": "move", "index": 3, "rc": [9.0, 7.0], "via": "click"}]
    # moving with nothing selected explains what to do instead of guessing
    at.session_state[chart + "1"] = {"selection": {"points": [_grid(1, 1)], "box": [], "lasso": []}}
    at.run()
    assert "first click exactly one label point" in " ".join(w.value for w in at.warning)
    # vessel masks: a click paints a disc of the brush radius
    at.selectbox(key="label_structure").set_value("capillaries").run()
    at.session_state[f"label_chart::{ids[0]}::capillaries::0"] = {
        "selection": {"points": [_grid(5, 100)], "box": [], "lasso": []}}
    at.run()
    at.button(key="save_label").click().run()
    assert not at.exception
    label = db.get_labels(ids[0], structure="capillaries")[0]
    assert labeling.payload_mask(label["payload"])[100, 5]
    assert label["payload"]["edits"][0] == {"op": "paint", "rc": [100.0, 5.0], "radius_px": 3, "via": "click"}


def test_switching_structure_shows_that_structures_slab(ui_env):
    """Issue 22 bug 4: the slab chosen for cones stayed under the capillary mask."""
    from ui_helpers import open_page

    _, _, ids, _ = ui_env
    at = open_page("labeling", "Labeler", case_id=ids[0])
    at.selectbox(key="label_slab::cones").set_value("cost").run()
    at.selectbox(key="label_structure").set_value("capillaries").run()
    assert not at.exception
    assert at.selectbox(key="label_slab::capillaries").value == "svp"
    assert "capillaries labels on the svp slab" in " ".join(c.value for c in at.caption)
    at.selectbox(key="label_structure").set_value("cones").run()
    assert at.selectbox(key="label_slab::cones").value == "cost"   # each keeps its own choice


def test_adding_by_click_clears_the_selection(ui_env):
    """Issue 22 bug 5: a point selected, then a click adding one: "Remove selected (1)" stayed
    enabled over a chart that showed no selection, and removed nothing."""
    from ui_helpers import open_page

    _, _, ids, _ = ui_env
    at = open_page("labeling", "Labeler", case_id=ids[0])
    chart = f"label_chart::{ids[0]}::cones::"
    at.session_state[chart + "0"] = {"selection": {"points": [_label(2)], "box": [], "lasso": []}}
    at.run()
    assert at.button(key="remove_selected").label == "Remove selected (1)"
    at.session_state[chart + "0"] = {"selection": {"points": [_grid(40, 30, 30 * 128 + 40)], "box": [], "lasso": []}}
    at.run()
    work = at.session_state[f"work::{ids[0]}::cones"]
    assert work["selected"] == [] and work["edits"][-1]["op"] == "add"
    button = at.button(key="remove_selected")
    assert button.label == "Remove selected (0)" and button.disabled


def test_a_reload_keeps_the_autosaved_edits(ui_env):
    """Issue 22: F5 dropped unsaved label edits. Each edit autosaves a draft; a new session
    (what a reload is) starts from it; saving or discarding removes it."""
    from ui_helpers import open_page

    db, _, ids, _ = ui_env
    at = open_page("labeling", "Labeler", case_id=ids[0])
    work_key = f"work::{ids[0]}::cones"
    n_model = len(at.session_state[work_key]["data"])
    at.session_state[f"label_chart::{ids[0]}::cones::0"] = {"selection": {
        "points": [_grid(40, 30, 30 * 128 + 40)], "box": [], "lasso": []}}
    at.run()
    at.button(key="add_point").click().run()
    assert len(db.get_label_draft(ids[0], "cones", "labeler")["payload"]["edits"]) == 2
    again = open_page("labeling", "Labeler", case_id=ids[0])      # the reload: a new session
    work = again.session_state[work_key]
    assert len(work["data"]) == n_model + 2 and [e["op"] for e in work["edits"]] == ["add", "add"]
    assert "restored the draft" in " ".join(c.value for c in again.caption)
    again.button(key="save_label").click().run()
    assert db.get_label_draft(ids[0], "cones", "labeler") is None
    saved = db.get_labels(ids[0], structure="cones", annotator="labeler")[0]["payload"]
    assert len(saved["points_rc"]) == n_model + 2 and len(saved["edits"]) == 2
    third = open_page("labeling", "Labeler", case_id=ids[0])
    assert third.session_state[work_key]["edits"] == [] and "v1" in third.session_state[work_key]["source"]
    third.button(key="add_point").click().run()
    third.button(key="discard_label").click().run()
    assert db.get_label_draft(ids[0], "cones", "labeler") is None


def test_undo_and_redo_step_through_the_edits(ui_env):
    """Issue 22: undo/redo of label edits (clicks and buttons alike), bounded in depth."""
    from ui_helpers import open_page

    db, _, ids, _ = ui_env
    at = open_page("labeling", "Labeler", case_id=ids[0])
    work_key = f"work::{ids[0]}::cones"
    n_model = len(at.session_state[work_key]["data"])
    assert at.button(key="undo").disabled
    at.session_state[f"label_chart::{ids[0]}::cones::0"] = {"selection": {
        "points": [_grid(40, 30, 30 * 128 + 40)], "box": [], "lasso": []}}
    at.run()
    at.button(key="add_point").click().run()
    assert len(at.session_state[work_key]["data"]) == n_model + 2
    at.button(key="undo").click().run()
    work = at.session_state[work_key]
    assert len(work["data"]) == n_model + 1 and [e["op"] for e in work["edits"]] == ["add"]
    assert at.button(key="redo").label == "Redo (1)"
    at.button(key="undo").click().run()
    assert len(at.session_state[work_key]["data"]) == n_model and at.session_state[work_key]["edits"] == []
    at.button(key="redo").click().run()
    at.button(key="redo").click().run()
    work = at.session_state[work_key]
    assert len(work["data"]) == n_model + 2 and len(work["edits"]) == 2 and at.button(key="redo").disabled
    # an undo is autosaved like any edit; a new edit after an undo drops the redo steps
    at.button(key="undo").click().run()
    assert len(db.get_label_draft(ids[0], "cones", "labeler")["payload"]["edits"]) == 1
    at.button(key="add_point").click().run()
    assert at.button(key="redo").disabled and at.button(key="undo").label == "Undo (2)"
