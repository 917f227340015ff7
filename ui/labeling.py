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
]


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
