"""Widgets shared by pages: the case picker and the en face viewer."""
from __future__ import annotations

import numpy as np
import streamlit as st

from ui import data
from ui.overlays import COLORS, compose_enface, encode_png

__all__ = ["pick_case", "enface_layers", "enface_picture", "flash", "show_flash"]


def pick_case(key: str) -> dict | None:
    """Select a case (defaults to the one opened from the Cases page)."""
    db = data.get_db()
    cases = db.list_cases(limit=500)
    if not cases:
        st.info("No cases yet. Upload one or run the pipeline.")
        return None
    ids = [c["case_id"] for c in cases]
    current = st.session_state.get("case_id")
    if current and current not in ids and db.get_case(current):
        ids.insert(0, current)
    index = ids.index(current) if current in ids else 0
    case_id = st.selectbox("Case", ids, index=index, key=key)
    st.session_state["case_id"] = case_id
    return db.get_case(case_id)


def enface_layers(art: data.CaseArtifacts, shape: tuple[int, int]) -> dict:
    """Load every overlay of a case that matches the en face ``shape``.

    Returns ``{"points": {target: (N,2)}, "masks": {structure: bool}, "uncertainty":
    {name: (row,col)}, "skipped": [messages]}``; an overlay whose shape does not
    match is listed in "skipped" and shown as a warning, never silently resized.
    """
    out = {"points": {}, "masks": {}, "uncertainty": {}, "skipped": []}
    for target, key in art.points.items():
        out["points"][target] = data.load_array(key)
    for structure, key in art.masks.items():
        out["masks"][structure] = data.load_array(key)
    for name, key in art.uncertainty.items():
        out["uncertainty"][name] = data.load_array(key)
    for group in ("masks", "uncertainty"):
        for name in list(out[group]):
            if out[group][name].shape != shape:
                out["skipped"].append(
                    f"{group[:-1] if group == 'masks' else 'uncertainty'} '{name}' has shape "
                    f"{out[group][name].shape}, not the en face shape {shape}; not drawn"
                )
                del out[group][name]
    return out


def enface_picture(
    image: np.ndarray,
    layers: dict,
    *,
    show_points: list[str],
    show_masks: list[str],
    heatmap: str | None,
    contrast: tuple[float, float],
    cursor_rc: tuple[float, float] | None = None,
) -> tuple[bytes, int]:
    """PNG of the en face slab with the chosen overlays; returns (png, upscale factor)."""
    rgb, factor = compose_enface(
        image,
        low_percentile=contrast[0],
        high_percentile=contrast[1],
        points=[(layers["points"][t], COLORS.get(t, COLORS["label"])) for t in show_points],
        masks=[(layers["masks"][s], COLORS.get(s, COLORS["label"])) for s in show_masks],
        heatmap=layers["uncertainty"][heatmap] if heatmap else None,
        cursor_rc=cursor_rc,
    )
    return encode_png(rgb), factor


def flash(message: str) -> None:
    """Queue a success message that survives the next ``st.rerun``."""
    st.session_state["_aooct_flash"] = message


def show_flash() -> None:
    """Show (once) the message queued by :func:`flash`."""
    message = st.session_state.pop("_aooct_flash", None)
    if message:
        st.success(message)
