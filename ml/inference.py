"""Cell detection and vessel / nerve-fiber segmentation with the committed networks.

``detect_cells`` and ``segment_vessels`` are the public entry points (see
docs/contracts). Models are loaded once per (task, backend, device, weights) and cached,
so analysing many images in one process pays the load cost once. Large images are cut
into overlapping tiles; every tile is reflect-padded to a multiple of the network's
stride; only the tile centres are stitched back.

Cells are the sub-pixel peaks of the heat map: local maxima above the calibrated
threshold, then non-maximum suppression with a minimum distance equal to
``min_distance_factor`` × the image's own cell spacing (the median nearest-neighbour
distance of the candidate peaks, i.e. the expected spacing in pixels), refined to
sub-pixel precision by a Gaussian (log-parabola) fit in the 3×3 neighbourhood.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from aooct_core.io.budget import check_resample
from ml import WEIGHTS_DIR
from ml.data import normalize_image
from ml.uncertainty import (DIHEDRAL, apply_transform, cell_confidence, enable_mc_dropout,
                            invert_angle, invert_transform)

__all__ = ["CellDetections", "VesselSegmentation", "detect_cells", "segment_vessels",
           "predict_maps", "find_peaks", "load_task_model", "weights_dir", "clear_model_cache"]

_TILE_PX = 512
_TILE_OVERLAP_PX = 32
# The cone network was trained on mosaics with 5-25 px spacing. Images sampled closer
# to Nyquist (AO-OCT: ~2.5-4 px per cone) are resampled so cells are ~8 px apart.
_MIN_SPACING_PX = 5.0
_TARGET_SPACING_PX = 8.0
_MIN_RING_PROMINENCE = 8.0  # phantom IS/OS slabs: ~15-20; white noise: < 5


@dataclass(frozen=True)
class CellDetections:
    """Detected cell centres.

    Attributes
    ----------
    points_rc : ndarray float32 (N, 2)
        0-based sub-pixel ``(row, col)`` centres, inside the image
        (``0 <= row <= rows - 1``, ``0 <= col <= cols - 1``).
    confidence : ndarray float32 (N,)
        P(cell) in [0, 1] from the heat-map mean and its TTA/MC spread.
    heatmap_mean, heatmap_var : ndarray float32 (row, col)
        Mean and variance of the cell-centre probability; ``heatmap_var`` is NaN
        everywhere when ``uncertainty=None`` (not estimated).
    model_version : str
    """

    points_rc: np.ndarray
    confidence: np.ndarray
    heatmap_mean: np.ndarray
    heatmap_var: np.ndarray
    model_version: str


@dataclass(frozen=True)
class VesselSegmentation:
    """Vessel (capillaries) or nerve-fiber-bundle (nfl) segmentation.

    Attributes
    ----------
    mask : ndarray bool (row, col)
    probability_mean, probability_var : ndarray float32 (row, col)
        ``probability_var`` is NaN when ``uncertainty=None``.
    orientation_rad : ndarray float32 (row, col) or None
        NFL only: bundle direction in [0, π), measured from the +col axis towards +row.
    model_version : str
    """

    mask: np.ndarray
    probability_mean: np.ndarray
    probability_var: np.ndarray
    orientation_rad: np.ndarray | None
    model_version: str


def weights_dir() -> Path:
    """``$AOOCT_WEIGHTS_DIR`` or the committed ``ml/weights``."""
    return Path(os.environ.get("AOOCT_WEIGHTS_DIR", WEIGHTS_DIR))


@functools.lru_cache(maxsize=16)
def clear_model_cache() -> None:
    """Forget the loaded models (weights changed on disk, or a test swaps them)."""
    _cached.cache_clear()


def _cached(task: str, backend: str, device: str, weights: str):
    from ml.backends import make_backend
    from ml.checkpoint import load_checkpoint
    model, meta = load_checkpoint(Path(weights), device="cpu")
    onnx_path = Path(weights).with_suffix(".onnx")
    runner = make_backend(backend, model=model, onnx_path=onnx_path, device=device)
    if meta["task"] != task:
        raise ValueError(f"{weights} holds a {meta['task']!r} model, not {task!r}")
    return model, runner, meta


def load_task_model(task: str, *, backend: str = "torch", device: str = "cpu",
                    weights: Path | None = None):
    """(torch model, backend runner, metadata) for a task, cached per process."""
    path = Path(weights) if weights is not None else weights_dir() / f"{task}.pt"
    return _cached(task, backend, device, str(path.resolve()))


def _run_padded(runner, image: np.ndarray) -> np.ndarray:
    """Logits (C, H, W) for one 2-D image, reflect-padded to the network stride."""
    m = runner.multiple
    h, w = image.shape
    ph, pw = (-h) % m, (-w) % m
    padded = np.pad(image, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)), mode="reflect")
    out = runner(padded[None, None])[0]
    return out[:, ph // 2: ph // 2 + h, pw // 2: pw // 2 + w]


def _run_tiled(runner, image: np.ndarray) -> np.ndarray:
    h, w = image.shape
    if h <= _TILE_PX and w <= _TILE_PX:
        return _run_padded(runner, image)
    step = _TILE_PX - 2 * _TILE_OVERLAP_PX
    out = None
    for r0 in range(0, h, step):
        for c0 in range(0, w, step):
            ra, ca = max(r0 - _TILE_OVERLAP_PX, 0), max(c0 - _TILE_OVERLAP_PX, 0)
            rb, cb = min(r0 + step + _TILE_OVERLAP_PX, h), min(c0 + step + _TILE_OVERLAP_PX, w)
            tile = _run_padded(runner, image[ra:rb, ca:cb])
            if out is None:
                out = np.zeros((tile.shape[0], h, w), np.float32)
            re, ce = min(r0 + step, h), min(c0 + step, w)
            out[:, r0:re, c0:ce] = tile[:, r0 - ra: re - ra, c0 - ca: ce - ca]
    return out


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.clip(x, -30, 30)))).astype(np.float32)


def predict_maps(image: np.ndarray, runner, *, kind: str, uncertainty: str | None,
                 n_samples: int = 4, model=None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Mean and variance of the output probability (and NFL orientation) for one image.

    Returns ``(mean (row, col), var (row, col), orientation_rad (row, col) or None)``.
    """
    if uncertainty not in (None, "tta", "mc"):
        raise ValueError(f"uncertainty must be 'tta', 'mc' or None; got {uncertainty!r}")
    probs, vectors = [], []
    if uncertainty == "mc":
        from ml.backends import TorchBackend
        if not isinstance(runner, TorchBackend):
            raise ValueError("uncertainty='mc' needs backend='torch' (the ONNX graph has no "
                             "dropout); use uncertainty='tta' with ONNX/TensorRT")
        enable_mc_dropout(runner.model)
        try:
            import torch
            torch.manual_seed(0)  # MC samples reproducible for a given image
            for _ in range(max(2, n_samples)):
                logits = _run_tiled(runner, image)
                probs.append(_sigmoid(logits[0]))
                if kind == "nfl":
                    vectors.append(np.tanh(logits[1:3]))
        finally:
            runner.model.eval()
    else:
        transforms = DIHEDRAL[: max(2, min(n_samples, 8))] if uncertainty == "tta" else DIHEDRAL[:1]
        for k, flip in transforms:
            logits = invert_transform(_run_tiled(runner, apply_transform(image, k, flip)), k, flip)
            probs.append(_sigmoid(logits[0]))
            if kind == "nfl":
                theta = 0.5 * np.arctan2(np.tanh(logits[2]), np.tanh(logits[1]))
                theta = invert_angle(np.mod(theta, np.pi), k, flip)
                vectors.append(np.stack([np.cos(2 * theta), np.sin(2 * theta)]))
    stack = np.stack(probs)
    mean = stack.mean(axis=0).astype(np.float32)
    var = (stack.var(axis=0).astype(np.float32) if len(probs) > 1
           else np.full(mean.shape, np.nan, np.float32))
    orientation = None
    if kind == "nfl":
        v = np.mean(vectors, axis=0)
        orientation = np.mod(0.5 * np.arctan2(v[1], v[0]), np.pi).astype(np.float32)
    return mean, var, orientation


def _subpixel(heat: np.ndarray, rr: np.ndarray, cc: np.ndarray) -> np.ndarray:
    """Gaussian (log-parabola) sub-pixel refinement of integer peaks, offsets within ±0.5."""
    h, w = heat.shape
    logh = np.log(np.maximum(heat, 1e-6))
    out = np.stack([rr, cc], axis=1).astype(np.float64)
    for axis, (dr, dc) in enumerate(((1, 0), (0, 1))):
        ok = (rr - dr >= 0) & (rr + dr < h) & (cc - dc >= 0) & (cc + dc < w)
        a = logh[rr[ok] - dr, cc[ok] - dc]
        b = logh[rr[ok], cc[ok]]
        c = logh[rr[ok] + dr, cc[ok] + dc]
        denom = a - 2 * b + c
        off = np.where(denom < -1e-9, 0.5 * (a - c) / np.where(denom < -1e-9, denom, -1), 0.0)
        out[ok, axis] += np.clip(off, -0.5, 0.5)
    return out.astype(np.float32)


def find_peaks(heat: np.ndarray, *, threshold: float, min_distance_factor: float = 0.5,
               min_distance_px: float | None = None) -> np.ndarray:
    """Sub-pixel cell centres (N, 2) float32 from a heat map in [0, 1].

    ``min_distance_px`` overrides the spacing-tied distance (``min_distance_factor`` ×
    the median NND of the candidate peaks).
    """
    heat = np.asarray(heat, np.float32)
    is_max = (heat == ndi.maximum_filter(heat, size=3, mode="nearest")) & (heat > threshold)
    rr, cc = np.nonzero(is_max)
    if len(rr) == 0:
        return np.zeros((0, 2), np.float32)
    scores = heat[rr, cc]
    order = np.argsort(-scores, kind="stable")
    rr, cc = rr[order], cc[order]
    pts = np.stack([rr, cc], 1).astype(np.float64)
    if min_distance_px is None and len(pts) >= 3:
        d, _ = cKDTree(pts).query(pts, k=2)
        min_distance_px = min_distance_factor * float(np.median(d[:, 1]))
    if min_distance_px and len(pts) > 1:
        keep = np.ones(len(pts), bool)
        tree = cKDTree(pts)
        for i in range(len(pts)):  # strongest first: suppress weaker peaks that are too close
            if keep[i]:
                for j in tree.query_ball_point(pts[i], min_distance_px):
                    if j > i:
                        keep[j] = False
        rr, cc = rr[keep], cc[keep]
    return _subpixel(heat, rr, cc)


def _check_um_per_px(um_per_px) -> None:
    """Reject a pixel size that is not a positive finite number (or a pair of them)."""
    if um_per_px is not None and not np.all(np.isfinite(um_per_px) & (np.asarray(um_per_px) > 0)):
        raise ValueError(f"um_per_px must be a positive number of µm; got {um_per_px!r}")


def _zoom_factors(image, um_per_px, expected_spacing_um,
                  resample_below_px: float = _MIN_SPACING_PX) -> tuple[float, float]:
    """Per-axis resampling so that cells end up ~8 px apart when they are closer than
    ``resample_below_px`` (5 px by default).

    The spacing comes from ``expected_spacing_um / um_per_px`` when both are known, else
    from the image's own power spectrum (Yellott's ring, :func:`estimate_spacing_px`).
    """
    if um_per_px is not None and expected_spacing_um is not None:
        um = np.broadcast_to(np.asarray(um_per_px, float), (2,))
        spacing_px = float(expected_spacing_um) / um
    else:
        from ml.baselines import estimate_spacing_px
        if min(image.shape) < 32:
            return (1.0, 1.0)
        spacing, prominence = estimate_spacing_px(image, min_px=2.2, max_px=40.0,
                                                  return_prominence=True)
        if prominence < _MIN_RING_PROMINENCE:  # no mosaic ring (noise, vessels): leave as is
            return (1.0, 1.0)
        spacing_px = np.full(2, spacing)
    if spacing_px.min() >= resample_below_px:
        return (1.0, 1.0)
    return tuple(float(max(1.0, _TARGET_SPACING_PX / s)) for s in spacing_px)


def detect_cells(image: np.ndarray, *, target: str = "cones",
                 um_per_px: float | tuple[float, float] | None = None,
                 backend: str = "torch", device: str = "cpu", uncertainty: str | None = "tta",
                 n_samples: int = 4, weights: Path | None = None,
                 expected_spacing_um: float | None = None, peak_threshold: float | None = None,
                 resample_below_px: float | None = None) -> CellDetections:
    """Detect cone or RPE cell centres in an en face image.

    Parameters
    ----------
    image : ndarray (row, col), any real dtype
        En face image (AOSLO frame, AO-OCT IS/OS or RPE slab); contrast is normalised here.
    target : {"cones", "rpe"}
    um_per_px : float or (float, float), optional
        ``(row, col)`` pixel size in µm. Images whose cells are closer than 5 px (AO-OCT
        sampled near Nyquist) are resampled to ~8 px spacing, the spacing being
        ``expected_spacing_um / um_per_px`` when both are given, else estimated from the
        image's power spectrum; points are mapped back to the input's pixel frame.
    backend : {"torch", "onnx", "tensorrt"}
    device : {"cpu", "cuda", "cuda:N"}
    uncertainty : {"tta", "mc", None}
        How to estimate the heat-map variance (None: one forward pass, var = NaN).
    n_samples : int
        TTA transforms (≤ 8) or MC dropout passes.
    weights : path, optional
        Checkpoint to use instead of ``ml/weights/<target>.pt``.
    expected_spacing_um : float, optional
        Expected centre-to-centre spacing (e.g. from normative density at the retinal
        eccentricity); only used for the resampling described under ``um_per_px``.
    peak_threshold : float, optional
        Heat-map level a cell centre must exceed; None: the checkpoint's calibrated
        ``peak_threshold`` (0.3 for the committed cone weights, fitted on AOSLO images).
    resample_below_px : float, optional
        Images whose cells are closer than this are resampled to ~8 px spacing; None: 5 px.

    Returns
    -------
    CellDetections
        Heat maps have the input's shape; points are in the input's pixel frame.

    Raises
    ------
    ValueError
        When the resampling would exceed ``ReadBudget.max_resample_pixels``
        (``$AOOCT_MAX_RESAMPLE_PIXELS``, :mod:`aooct_core.io.budget`) — a wrong
        ``um_per_px`` (mm given as µm) — checked before anything is allocated.
    """
    if target not in ("cones", "rpe"):
        raise ValueError(f"target must be 'cones' or 'rpe' for detect_cells; got {target!r}")
    _check_um_per_px(um_per_px)
    if peak_threshold is not None and not 0.0 < float(peak_threshold) < 1.0:
        raise ValueError(f"peak_threshold must be a heat-map level in (0, 1); got {peak_threshold!r}")
    if resample_below_px is not None and not 0.0 < float(resample_below_px) <= 40.0:
        raise ValueError(f"resample_below_px must be a spacing in (0, 40] px; got {resample_below_px!r}")
    norm = normalize_image(image)
    _, runner, meta = load_task_model(target, backend=backend, device=device, weights=weights)
    zoom = _zoom_factors(norm, um_per_px, expected_spacing_um,
                         _MIN_SPACING_PX if resample_below_px is None else float(resample_below_px))
    if zoom != (1.0, 1.0):  # refuse before allocating: a wrong um_per_px can ask for GiBs
        check_resample(norm.shape, zoom, what=f"image for {target} detection")
    work = ndi.zoom(norm, zoom, order=3, mode="reflect") if zoom != (1.0, 1.0) else norm
    mean, var, _ = predict_maps(work, runner, kind="cells", uncertainty=uncertainty,
                                n_samples=n_samples)
    threshold = float(meta.get("peak_threshold", 0.5) if peak_threshold is None else peak_threshold)
    pts = find_peaks(mean, threshold=threshold,
                     min_distance_factor=float(meta.get("min_distance_factor", 0.5)))
    ir = np.clip(np.rint(pts[:, 0]).astype(int), 0, mean.shape[0] - 1)
    ic = np.clip(np.rint(pts[:, 1]).astype(int), 0, mean.shape[1] - 1)
    pv = var[ir, ic] if uncertainty else np.zeros(len(pts), np.float32)
    conf = cell_confidence(mean[ir, ic], pv, threshold)
    if zoom != (1.0, 1.0):
        from skimage.transform import resize
        pts = ((pts + 0.5) / np.asarray(zoom, np.float32) - 0.5).astype(np.float32)
        mean = resize(mean, norm.shape, order=1, anti_aliasing=True).astype(np.float32)
        var = resize(var, norm.shape, order=1, anti_aliasing=True).astype(np.float32)
    # A peak in an edge pixel maps back to up to half a pixel outside the pixel centres
    # (row -0.35): every point is reported inside the image, 0 <= row <= rows - 1.
    pts = np.clip(pts, 0, np.asarray(norm.shape, np.float32) - 1).astype(np.float32).reshape(-1, 2)
    return CellDetections(points_rc=pts, confidence=conf, heatmap_mean=mean, heatmap_var=var,
                          model_version=str(meta["model_version"]))


def _vessel_zoom(um_per_px, meta: dict) -> tuple[float, float]:
    """Per-axis zoom that brings ``um_per_px`` into the model's trained pixel-size ranges.

    ``meta["train_um_per_px_ranges"]`` lists ``[min, max]`` µm/px of each training source.
    A pixel size inside any range (within the ±20 % zoom augmentation) is left alone; one
    outside all ranges is resampled to the nearest range edge (log scale).
    """
    ranges = meta.get("train_um_per_px_ranges")
    if um_per_px is None or not ranges:
        return (1.0, 1.0)
    zoom = []
    for um in np.broadcast_to(np.asarray(um_per_px, float), (2,)):
        edges = [(lo / 1.2, hi * 1.2) for lo, hi in ranges]
        if any(lo <= um <= hi for lo, hi in edges):
            zoom.append(1.0)
            continue
        target = min((e for pair in edges for e in pair), key=lambda e: abs(np.log(um / e)))
        zoom.append(float(um / target))
    return (zoom[0], zoom[1])


def segment_vessels(image: np.ndarray, *, target: str = "capillaries",
                    um_per_px: float | tuple[float, float] | None = None, backend: str = "torch",
                    device: str = "cpu", uncertainty: str | None = "tta", n_samples: int = 4,
                    weights: Path | None = None) -> VesselSegmentation:
    """Segment capillaries (OCTA/en face vascular slab) or nerve fiber bundles (NFL slab).

    Parameters are as in :func:`detect_cells`, with ``target`` in {"capillaries", "nfl"}.
    The mask is ``probability_mean > threshold`` (0.5 unless the checkpoint says otherwise).

    Scale: when ``um_per_px`` (float or ``(row, col)`` µm) is given and the checkpoint
    records the pixel sizes it was trained at (``train_um_per_px_ranges``; the capillary
    model: ROSSA OCTA ≈ 9.4 µm/px and phantom AO-OCT slabs ≈ 1.1–3.4 µm/px), an image whose
    pixel size lies outside every trained range (± 20 %, the zoom augmentation) is resampled
    to the nearest range edge, segmented, and the maps resampled back to the input shape.
    Inside a range, or with ``um_per_px=None``, or a checkpoint without recorded ranges, the
    image is segmented at its own sampling (then ``um_per_px`` has no effect). A resampled
    image over ``ReadBudget.max_resample_pixels`` raises ``ValueError`` before allocation.
    """
    if target not in ("capillaries", "nfl"):
        raise ValueError(f"target must be 'capillaries' or 'nfl' for segment_vessels; got {target!r}")
    _check_um_per_px(um_per_px)
    norm = normalize_image(image)
    _, runner, meta = load_task_model(target, backend=backend, device=device, weights=weights)
    kind = "nfl" if target == "nfl" else "vessels"
    zoom = _vessel_zoom(um_per_px, meta)
    if zoom != (1.0, 1.0):  # refuse before allocating: a wrong um_per_px can ask for GiBs
        check_resample(norm.shape, zoom, what=f"image for {target} segmentation")
    work = ndi.zoom(norm, zoom, order=1, mode="reflect") if zoom != (1.0, 1.0) else norm
    mean, var, orientation = predict_maps(work, runner, kind=kind, uncertainty=uncertainty,
                                          n_samples=n_samples)
    if zoom != (1.0, 1.0):
        from skimage.transform import resize
        back = {"order": 1, "anti_aliasing": zoom[0] > 1 or zoom[1] > 1}
        mean = resize(mean, norm.shape, **back).astype(np.float32)
        var = resize(var, norm.shape, **back).astype(np.float32)
        if orientation is not None:  # average the doubled-angle vector, not the angle
            c = resize(np.cos(2 * orientation), norm.shape, **back)
            s_ = resize(np.sin(2 * orientation), norm.shape, **back)
            orientation = np.mod(0.5 * np.arctan2(s_, c), np.pi).astype(np.float32)
    mask = mean > float(meta.get("mask_threshold", 0.5))
    return VesselSegmentation(mask=mask, probability_mean=mean, probability_var=var,
                              orientation_rad=orientation, model_version=str(meta["model_version"]))
