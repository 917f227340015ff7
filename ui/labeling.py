"""Label editing state: point lists and vessel-mask brush strokes, and their JSON payloads.

A label is saved as a new version per (case, structure, annotator) through
``MetadataDB.add_label``; nothing is overwritten. Payloads are JSON:

* points: ``{"kind": "points", "points_rc": [[row, col], ...], "source": ..., "edits": [...]}``
* mask:   ``{"kind": "mask", "shape": [rows, cols], "rle": [start, length, ...],
  "source": ..., "edits": [...]}`` — run-length encoding of the row-major flattened mask.
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "add_point",
    "remove_nearest",
    "move_point",
    "paint_disc",
    "paint_line",
    "mask_to_rle",
    "rle_to_mask",
    "points_payload",
    "mask_payload",
    "payload_points",
    "payload_mask",
    "CLICK_MODES",
    "selection_action",
]

#: What a click on an empty spot of the labeling chart does, per structure kind.
CLICK_MODES = {"points": ("add", "move"), "mask": ("paint", "erase")}


def _points(points_rc) -> np.ndarray:
    return np.asarray(points_rc, dtype=np.float32).reshape(-1, 2)


def add_point(points_rc, row: float, col: float) -> np.ndarray:
    """Return a new (N+1, 2) array with ``(row, col)`` appended."""
    return np.vstack([_points(points_rc), np.array([[row, col]], np.float32)])


def remove_nearest(points_rc, row: float, col: float, *, max_distance_px: float = 5.0):
    """Remove the point nearest ``(row, col)`` within ``max_distance_px``.

    Returns ``(new_points, removed_index or None)``.
    """
    pts = _points(points_rc)
    if len(pts) == 0:
        return pts, None
    d = np.hypot(pts[:, 0] - row, pts[:, 1] - col)
    i = int(np.argmin(d))
    if d[i] > max_distance_px:
        return pts, None
    return np.delete(pts, i, axis=0), i


def move_point(points_rc, index: int, row: float, col: float) -> np.ndarray:
    """Return a copy with point ``index`` moved to ``(row, col)``."""
    pts = _points(points_rc).copy()
    if not 0 <= index < len(pts):
        raise ValueError(f"point index {index} out of range 0..{len(pts) - 1}")
    pts[index] = (row, col)
    return pts


def paint_disc(mask: np.ndarray, row: float, col: float, radius_px: float, *, value: bool) -> np.ndarray:
    """Return a copy of ``mask`` with a disc set to ``value`` (paint or erase)."""
    out = np.array(mask, dtype=bool, copy=True)
    rr, cc = np.ogrid[: out.shape[0], : out.shape[1]]
    out[(rr - row) ** 2 + (cc - col) ** 2 <= radius_px**2] = value
    return out


def paint_line(mask: np.ndarray, start_rc, end_rc, width_px: float, *, value: bool) -> np.ndarray:
    """Return a copy of ``mask`` with a thick segment from ``start_rc`` to ``end_rc`` set to ``value``."""
    out = np.array(mask, dtype=bool, copy=True)
    p0, p1 = np.asarray(start_rc, float), np.asarray(end_rc, float)
    rr, cc = np.mgrid[: out.shape[0], : out.shape[1]]
    seg = p1 - p0
    length2 = float(seg @ seg)
    t = np.zeros(rr.shape) if length2 == 0 else np.clip(((rr - p0[0]) * seg[0] + (cc - p0[1]) * seg[1]) / length2, 0, 1)
    dist = np.hypot(rr - (p0[0] + t * seg[0]), cc - (p0[1] + t * seg[1]))
    out[dist <= width_px / 2] = value
    return out


def mask_to_rle(mask: np.ndarray) -> list[int]:
    """Row-major run-length encoding ``[start, length, ...]`` of the true pixels."""
    flat = np.concatenate([[0], np.asarray(mask, bool).ravel().astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(flat))
    starts, ends = edges[0::2], edges[1::2]
    return np.column_stack([starts, ends - starts]).ravel().astype(int).tolist()


def rle_to_mask(rle: list[int], shape: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`mask_to_rle`."""
    flat = np.zeros(int(shape[0]) * int(shape[1]), dtype=bool)
    pairs = np.asarray(rle, dtype=np.int64).reshape(-1, 2)
    for start, length in pairs:
        flat[start:start + length] = True
    return flat.reshape(shape)


def points_payload(points_rc, *, source: str, edits: list[dict]) -> dict:
    pts = _points(points_rc)
    return {"kind": "points", "points_rc": np.round(pts, 2).tolist(), "source": source, "edits": edits}


def mask_payload(mask: np.ndarray, *, source: str, edits: list[dict]) -> dict:
    mask = np.asarray(mask, bool)
    return {"kind": "mask", "shape": list(mask.shape), "rle": mask_to_rle(mask),
            "source": source, "edits": edits}


def payload_points(payload: dict) -> np.ndarray:
    return _points(payload.get("points_rc", []))


def payload_mask(payload: dict) -> np.ndarray:
    return rle_to_mask(payload["rle"], tuple(payload["shape"]))


def _curve(point: dict) -> int | None:
    value = point.get("curve_number", point.get("curveNumber"))
    return None if value is None else int(value)


def _index(point: dict) -> int | None:
    value = point.get("point_index", point.get("point_number", point.get("pointIndex")))
    return None if value is None else int(value)


def selection_action(
    selection: dict | None,
    *,
    mode: str,
    selected: list[int] | tuple[int, ...],
    n_points: int,
    image_shape: tuple[int, int],
    grid_curve: int = 0,
    label_curve: int = 1,
) -> dict:
    """Translate one chart selection event into one label edit (pure; no Streamlit).

    The labeling chart (:mod:`ui.label_chart`) has an invisible trace of clickable
    points at pixel centres (``grid_curve``) under the label points (``label_curve``).
    Streamlit reports a click or a box/lasso as a selection of those points.

    Parameters
    ----------
    selection : dict or None
        ``st.plotly_chart(..., on_select="rerun")`` selection:
        ``{"points": [{"curve_number", "point_index", "x", "y"}, ...], "box": [...], "lasso": [...]}``;
        ``x`` is the column and ``y`` the row, in en face px.
    mode : str
        What a click on an empty spot does: ``"add"`` or ``"move"`` (points), ``"paint"`` or
        ``"erase"`` (masks).
    selected : sequence of int
        Label points selected before this event (``"move"`` moves the one selected point).
    n_points : int
        Number of label points now (indices outside are ignored: a stale event).
    image_shape : tuple of int
        ``(rows, cols)`` of the en face image; positions are clipped into it.

    Returns
    -------
    dict
        ``{"op": "none"}``; ``{"op": "select", "indices": [...]}`` (label points picked by a
        click, shift-click, box or lasso; ``[]`` clears); ``{"op": "add" | "paint" | "erase",
        "rc": (row, col)}``; ``{"op": "move", "index": i, "rc": (row, col)}``; or
        ``{"op": "error", "message": ...}`` when the click cannot be applied.
    """
    if mode not in CLICK_MODES["points"] + CLICK_MODES["mask"]:
        raise ValueError(f"click mode must be one of add, move, paint, erase; got {mode!r}")
    points = list((selection or {}).get("points") or [])
    labels = sorted({i for p in points if _curve(p) == label_curve
                     for i in [_index(p)] if i is not None and 0 <= i < n_points})
    if labels:
        # A box or lasso also catches the invisible grid; label points win.
        return {"op": "select", "indices": labels}
    grid = [p for p in points if _curve(p) == grid_curve]
    if not grid:
        return {"op": "select", "indices": []} if selected and not points else {"op": "none"}
    if len(grid) > 1:
        return {"op": "none"}  # a box/lasso over empty image: nothing to pick
    try:
        row, col = float(grid[0]["y"]), float(grid[0]["x"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"selected chart point has no numeric x/y: {grid[0]!r}") from exc
    row = min(max(row, 0.0), float(image_shape[0] - 1))
    col = min(max(col, 0.0), float(image_shape[1] - 1))
    if mode == "move":
        valid = [i for i in selected if 0 <= i < n_points]
        if len(valid) != 1:
            return {"op": "error", "message": "To move a point, first click exactly one label point, "
                                              f"then click its new spot ({len(valid)} selected)."}
        return {"op": "move", "index": int(valid[0]), "rc": (row, col)}
    return {"op": mode, "rc": (row, col)}
