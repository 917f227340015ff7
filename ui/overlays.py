"""Display composition: draw points, masks and heat maps onto an en face image.

Nothing here analyses an image. These functions only turn arrays that the
pipeline already produced (en face slabs, detected points, masks, variance maps,
layer surfaces) into an RGB picture for the screen. Everything is vectorised
numpy so that 10,000 markers on a 512×512 image draw in milliseconds; the
result is sent to the browser as one PNG instead of 10,000 chart objects.
"""
from __future__ import annotations

import io
from typing import Sequence

import numpy as np

__all__ = [
    "COLORS",
    "display_uint8",
    "gray_to_rgb",
    "upscale_nearest",
    "draw_points",
    "blend_mask",
    "blend_heatmap",
    "draw_surfaces",
    "compose_enface",
    "compose_bscan",
    "encode_png",
]

COLORS: dict[str, tuple[int, int, int]] = {
    "cones": (0, 255, 90),
    "rpe": (0, 200, 255),
    "capillaries": (255, 40, 40),
    "nfl": (255, 150, 0),
    "label": (255, 0, 255),
}

# A perceptual "inferno"-like ramp sampled at 5 anchors and interpolated to 256 entries;
# built here so this module does not import matplotlib (slow) on every rerun.
_ANCHORS = np.array(
    [[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], dtype=np.float32
)
_LUT = np.stack(
    [np.interp(np.linspace(0, 4, 256), np.arange(5), _ANCHORS[:, c]) for c in range(3)], axis=1
).astype(np.uint8)

# Small glyph footprints as (drow, dcol) offsets; a cross reads well on speckled images.
_GLYPHS: dict[str, np.ndarray] = {}


def _glyph(shape: str, radius_px: int) -> np.ndarray:
    key = f"{shape}{radius_px}"
    if key not in _GLYPHS:
        r = np.arange(-radius_px, radius_px + 1)
        dr, dc = np.meshgrid(r, r, indexing="ij")
        if shape == "cross":
            keep = (dr == 0) | (dc == 0)
        elif shape == "dot":
            keep = dr**2 + dc**2 <= radius_px**2
        elif shape == "ring":
            d2 = dr**2 + dc**2
            keep = (d2 <= radius_px**2) & (d2 >= max(radius_px - 1, 0) ** 2)
        else:
            raise ValueError(f"marker shape must be 'cross', 'dot' or 'ring'; got {shape!r}")
        _GLYPHS[key] = np.stack([dr[keep], dc[keep]], axis=1)
    return _GLYPHS[key]


def display_uint8(
    image: np.ndarray, *, low_percentile: float = 1.0, high_percentile: float = 99.5
) -> np.ndarray:
    """Window an en face image to 8 bits for display (contrast control).

    Parameters
    ----------
    image : ndarray, shape (row, col), any real dtype
        En face intensity (linear or log, as stored).
    low_percentile, high_percentile : float
        Percentiles mapped to black and white (0 <= low < high <= 100).

    Returns
    -------
    ndarray, shape (row, col), uint8
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"en face image must be 2-D (row, col); got shape {image.shape}")
    if not 0.0 <= low_percentile < high_percentile <= 100.0:
        raise ValueError(
            "contrast percentiles must satisfy 0 <= low < high <= 100; "
            f"got low={low_percentile}, high={high_percentile}"
        )
    finite = np.isfinite(image)
    if not finite.any():
        return np.zeros(image.shape, np.uint8)
    lo, hi = np.percentile(image[finite], [low_percentile, high_percentile])
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    out = (np.nan_to_num(image.astype(np.float32), nan=lo) - lo) * scale
    return np.clip(out, 0, 255).astype(np.uint8)


def gray_to_rgb(gray_u8: np.ndarray) -> np.ndarray:
    """(row, col) uint8 → (row, col, 3) uint8 copy."""
    return np.repeat(np.asarray(gray_u8, dtype=np.uint8)[..., None], 3, axis=2)


def upscale_nearest(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscaling by an integer ``factor`` (keeps pixels crisp)."""
    if factor < 1:
        raise ValueError(f"upscale factor must be an integer >= 1; got {factor}")
    if factor == 1:
        return np.array(image, copy=True)
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def draw_points(
    rgb: np.ndarray,
    points_rc: np.ndarray,
    *,
    color: tuple[int, int, int],
    radius_px: int = 2,
    shape: str = "cross",
    scale: float = 1.0,
) -> np.ndarray:
    """Draw one marker per point, vectorised over all points.

    Parameters
    ----------
    rgb : ndarray, shape (row, col, 3), uint8
        Canvas; not modified.
    points_rc : ndarray, shape (N, 2)
        Point positions in *source* en face px ``(row, col)``.
    color : tuple of int
        RGB marker colour.
    radius_px, shape
        Glyph size in canvas px and ``"cross"``, ``"dot"`` or ``"ring"``.
    scale : float
        Canvas px per source px (the upscale factor), applied to ``points_rc``.

    Returns
    -------
    ndarray, shape (row, col, 3), uint8
        A new image with the markers drawn.
    """
    out = np.array(rgb, dtype=np.uint8, copy=True)
    pts = np.asarray(points_rc, dtype=np.float32).reshape(-1, 2)
    if len(pts) == 0:
        return out
    # Pixel centres: source px i covers canvas [i*s, (i+1)*s).
    centre = np.floor((pts + 0.5) * scale).astype(np.int64)
    glyph = _glyph(shape, int(radius_px))
    rr = (centre[:, None, 0] + glyph[None, :, 0]).ravel()
    cc = (centre[:, None, 1] + glyph[None, :, 1]).ravel()
    inside = (rr >= 0) & (rr < out.shape[0]) & (cc >= 0) & (cc < out.shape[1])
    out[rr[inside], cc[inside]] = np.asarray(color, dtype=np.uint8)
    return out


def blend_mask(
    rgb: np.ndarray, mask: np.ndarray, *, color: tuple[int, int, int], alpha: float = 0.45
) -> np.ndarray:
    """Tint the pixels where ``mask`` is true; ``mask`` must match the canvas (row, col)."""
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != rgb.shape[:2]:
        raise ValueError(
            f"mask shape {mask.shape} does not match the image {rgb.shape[:2]}; "
            "upscale the mask with upscale_nearest by the same factor"
        )
    out = np.array(rgb, dtype=np.float32, copy=True)
    out[mask] = (1 - alpha) * out[mask] + alpha * np.asarray(color, np.float32)
    return out.astype(np.uint8)


def blend_heatmap(
    rgb: np.ndarray, values: np.ndarray, *, alpha: float = 0.5, vmax: float | None = None
) -> np.ndarray:
    """Overlay a non-negative map (e.g. predictive variance) with an inferno colour ramp.

    ``vmax`` fixes the top of the colour scale (default: the 99th percentile), so the
    same value looks the same across cases when a fixed ``vmax`` is passed.
    """
    values = np.asarray(values, dtype=np.float32)
    if values.shape != rgb.shape[:2]:
        raise ValueError(
            f"heat map shape {values.shape} does not match the image {rgb.shape[:2]}"
        )
    finite = np.isfinite(values)
    top = vmax if vmax is not None else (np.percentile(values[finite], 99) if finite.any() else 1)
    top = float(top) if top and top > 0 else 1.0
    idx = np.clip(np.nan_to_num(values, nan=0.0) / top * 255, 0, 255).astype(np.uint8)
    colored = _LUT[idx].astype(np.float32)
    # Weight the tint by the normalised value so low-uncertainty areas stay readable.
    w = (alpha * idx.astype(np.float32) / 255.0)[..., None]
    out = (1 - w) * rgb.astype(np.float32) + w * colored
    return out.astype(np.uint8)


def draw_surfaces(
    rgb: np.ndarray,
    surfaces_depth_px: dict[str, np.ndarray],
    *,
    colors: Sequence[tuple[int, int, int]] | None = None,
) -> np.ndarray:
    """Draw layer surfaces onto a B-scan image (depth rows, A-line columns).

    ``surfaces_depth_px[name]`` is shape (n_alines,) depth in px; NaNs are skipped.
    """
    out = np.array(rgb, dtype=np.uint8, copy=True)
    palette = list(colors) if colors else [
        (255, 80, 80), (80, 255, 80), (80, 160, 255), (255, 220, 0), (255, 0, 255),
        (0, 255, 255), (255, 140, 0), (180, 120, 255), (255, 255, 255), (120, 255, 180),
    ]
    n_depth, n_alines = out.shape[:2]
    cols = np.arange(n_alines)
    for i, (name, depth) in enumerate(surfaces_depth_px.items()):
        depth = np.asarray(depth, dtype=np.float32)
        if depth.shape != (n_alines,):
            raise ValueError(
                f"surface {name!r} has shape {depth.shape}; expected ({n_alines},) for this B-scan"
            )
        ok = np.isfinite(depth)
        rows = np.round(depth[ok]).astype(np.int64)
        keep = (rows >= 0) & (rows < n_depth)
        out[rows[keep], cols[ok][keep]] = palette[i % len(palette)]
    return out


def compose_enface(
    image: np.ndarray,
    *,
    low_percentile: float = 1.0,
    high_percentile: float = 99.5,
    min_display_px: int = 512,
    points: Sequence[tuple[np.ndarray, tuple[int, int, int]]] = (),
    masks: Sequence[tuple[np.ndarray, tuple[int, int, int]]] = (),
    heatmap: np.ndarray | None = None,
    heatmap_alpha: float = 0.55,
    marker_radius_px: int | None = None,
    marker_shape: str = "cross",
    cursor_rc: tuple[float, float] | None = None,
) -> tuple[np.ndarray, int]:
    """Compose the en face viewer picture.

    Small images are upscaled (nearest) to at least ``min_display_px`` on their short
    side so markers stay distinct; the factor is returned so callers can map
    positions back to source pixels.

    Returns
    -------
    rgb : ndarray, shape (row*f, col*f, 3), uint8
    factor : int
        Canvas px per source px.

    ``cursor_rc`` (source px) draws a yellow ring where the next label edit lands.
    """
    gray = display_uint8(image, low_percentile=low_percentile, high_percentile=high_percentile)
    factor = max(1, int(np.ceil(min_display_px / max(1, min(gray.shape)))))
    # Markers grow with the upscale factor so they stay visible on small images.
    radius = marker_radius_px if marker_radius_px is not None else max(2, factor)
    rgb = gray_to_rgb(upscale_nearest(gray, factor))
    if heatmap is not None:
        rgb = blend_heatmap(rgb, upscale_nearest(np.asarray(heatmap), factor), alpha=heatmap_alpha)
    for mask, color in masks:
        rgb = blend_mask(rgb, upscale_nearest(np.asarray(mask, bool), factor), color=color)
    for pts, color in points:
        rgb = draw_points(
            rgb, pts, color=color, radius_px=radius, shape=marker_shape, scale=factor
        )
    if cursor_rc is not None:  # where the next edit lands (labeling)
        rgb = draw_points(rgb, np.array([cursor_rc], np.float32), color=(255, 255, 0),
                          radius_px=3 * radius, shape="ring", scale=factor)
    return rgb, factor


def compose_bscan(
    bscan: np.ndarray,
    surfaces_depth_px: dict[str, np.ndarray],
    *,
    min_display_px: int = 512,
    low_percentile: float = 1.0,
    high_percentile: float = 99.8,
) -> np.ndarray:
    """B-scan ``(depth, aline)`` windowed to 8 bits with layer surfaces drawn on it.

    Narrow B-scans are upscaled (nearest) so that the A-line axis has at least
    ``min_display_px`` columns; surface depths (px, shape (n_alines,)) are scaled
    to the pixel centres of the upscaled image.

    Returns
    -------
    ndarray, shape (depth*f, aline*f, 3), uint8
    """
    bscan = np.asarray(bscan)
    if bscan.ndim != 2:
        raise ValueError(f"B-scan must be 2-D (depth, aline); got shape {bscan.shape}")
    factor = max(1, -(-min_display_px // bscan.shape[1]))
    gray = display_uint8(bscan, low_percentile=low_percentile, high_percentile=high_percentile)
    rgb = gray_to_rgb(upscale_nearest(gray, factor))
    scaled = {
        name: np.repeat(np.asarray(depth, np.float32), factor) * factor + (factor - 1) / 2
        for name, depth in surfaces_depth_px.items()
    }
    return draw_surfaces(rgb, scaled)


def encode_png(rgb: np.ndarray, *, compress_level: int = 1) -> bytes:
    """PNG-encode an RGB uint8 image; low compression because encoding time is on the critical path."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()
