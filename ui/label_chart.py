"""The clickable labeling chart: en face picture, label points and a click grid (plotly).

``st.image`` has no click events, but ``st.plotly_chart(..., on_select="rerun")`` reports
clicked and box/lasso-selected *data points*. So the chart has three traces:

0. an invisible grid of points at en face pixel centres (every ``grid_step_px`` px; a
   text-mode trace without text, so nothing is drawn), so a click on an empty spot selects
   the grid point nearest the cursor, i.e. a position;
1. the label points (selectable: click, shift-click, box, lasso);
2. the typed-coordinate cursor (not selectable).

The picture itself (contrast-windowed slab, mask tint) is a PNG from :mod:`ui.overlays`
placed as a background ``layout.images`` entry, so the browser draws 1 image plus the
points, not one mark per pixel. The grid is SVG (no WebGL needed); it is capped at
``GRID_MAX_PER_AXIS`` points per axis because plotly makes a DOM node per point, so on
images larger than that a click snaps to the nearest grid point (at most
``grid_step_px / 2`` px away); the typed Row/Column fields stay the exact fallback.
"""
from __future__ import annotations

import base64

import numpy as np

__all__ = ["GRID_CURVE", "LABEL_CURVE", "GRID_MAX_PER_AXIS", "LABEL_MARKER_SIZE", "grid_step_px",
           "label_figure"]

GRID_CURVE, LABEL_CURVE = 0, 1
#: 128 x 128 = 16,384 invisible SVG points per chart.
GRID_MAX_PER_AXIS = 128
#: Label marker diameter, screen px; <= 6 so a click on a label selects it (see label_figure).
LABEL_MARKER_SIZE = 6


def grid_step_px(image_shape: tuple[int, int], *, max_per_axis: int = GRID_MAX_PER_AXIS) -> int:
    """Spacing (en face px) of the click grid: 1 up to ``max_per_axis`` px per axis."""
    if max_per_axis < 1:
        raise ValueError(f"max_per_axis must be >= 1; got {max_per_axis}")
    return max(1, int(np.ceil(max(image_shape) / max_per_axis)))


def label_figure(
    png: bytes,
    image_shape: tuple[int, int],
    points_rc: np.ndarray,
    *,
    selected: list[int] | tuple[int, ...] = (),
    cursor_rc: tuple[float, float] | None = None,
    height_px: int = 560,
    point_color: str = "#ff00ff",
):
    """Plotly figure for the labeling page.

    Parameters
    ----------
    png : bytes
        The en face picture (any size; stretched over the image extent), e.g. from
        :func:`ui.widgets.enface_picture` without point markers.
    image_shape : tuple of int
        ``(rows, cols)`` of the en face image, in source px; axes are in these px
        (x = column, y = row, row 0 at the top).
    points_rc : ndarray, shape (N, 2)
        Label points ``(row, col)`` in source px.
    selected : sequence of int
        Indices of label points drawn as selected. Note: in ``st.plotly_chart`` the figure is
        part of the widget identity, so a figure that changes with the selection resets it.
    cursor_rc : tuple of float, optional
        The typed-coordinate cursor, drawn as a yellow ring.
    height_px : int
        Chart height in screen px.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    import plotly.graph_objects as go

    rows, cols = int(image_shape[0]), int(image_shape[1])
    if rows < 1 or cols < 1:
        raise ValueError(f"image_shape must be positive (rows, cols); got {image_shape}")
    pts = np.asarray(points_rc, dtype=np.float32).reshape(-1, 2)
    step = grid_step_px((rows, cols))
    # Grid points at pixel centres; offset by half a step so a cell's point sits in its middle.
    gr = np.arange(min(step // 2, rows - 1), rows, step, dtype=np.int32)
    gc = np.arange(min(step // 2, cols - 1), cols, step, dtype=np.int32)
    grid_r, grid_c = np.meshgrid(gr, gc, indexing="ij")
    fig = go.Figure()
    # Which point a click picks is plotly's hover distance, max(d - r, 1 - r_min / r) in screen
    # px with r = max(r_min, marker radius) and r_min = 3 for marker traces, 0.5 otherwise.
    # So the grid is a text-mode trace without text (r = 0.5: the truly nearest pixel wins, and
    # nothing is drawn), and label markers have radius 3 (size 6): within 3 px of a label both
    # score 0 and the later trace, the labels, wins the tie.
    fig.add_trace(go.Scatter(
        x=grid_c.ravel(), y=grid_r.ravel(), mode="text", name="image", showlegend=False,
        hovertemplate="row %{y}, col %{x}<extra></extra>",
    ))
    fig.add_trace(go.Scatter(
        x=pts[:, 1], y=pts[:, 0], mode="markers", name="labels",
        marker={"size": LABEL_MARKER_SIZE, "symbol": "x-thin", "color": point_color,
                "line": {"width": 2, "color": point_color}},
        selectedpoints=list(selected) if len(selected) else None,
        selected={"marker": {"color": "#ffff00", "size": LABEL_MARKER_SIZE}},
        unselected={"marker": {"opacity": 1.0}}, showlegend=False,
        hovertemplate="label #%{pointNumber}: row %{y:.1f}, col %{x:.1f}<extra></extra>",
    ))
    if cursor_rc is not None:
        fig.add_trace(go.Scatter(
            x=[cursor_rc[1]], y=[cursor_rc[0]], mode="markers", name="cursor", hoverinfo="skip",
            marker={"size": 22, "symbol": "circle-open", "color": "#ffff00", "line": {"width": 2}},
            showlegend=False,
        ))
    source = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    fig.update_layout(
        images=[{"source": source, "xref": "x", "yref": "y", "x": -0.5, "y": -0.5,
                 "sizex": cols, "sizey": rows, "xanchor": "left", "yanchor": "top",
                 "sizing": "stretch", "layer": "below"}],
        height=height_px, margin={"l": 0, "r": 0, "t": 0, "b": 0},
        plot_bgcolor="black", hovermode="closest", clickmode="event+select",
        dragmode="pan", uirevision="labeling", showlegend=False,
    )
    fig.update_xaxes(range=[-0.5, cols - 0.5], showgrid=False, zeroline=False, visible=False,
                     constrain="domain")
    fig.update_yaxes(range=[rows - 0.5, -0.5], showgrid=False, zeroline=False, visible=False,
                     scaleanchor="x", scaleratio=1, constrain="domain")
    return fig
