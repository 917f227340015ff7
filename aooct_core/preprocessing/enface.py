"""En face projections of slabs defined relative to layer surfaces.

A slab is a depth interval per A-line, ``[top_px, bottom_px]``, placed relative to a
surface in µm; its en face image is the mean linear intensity (or mean OCTA
decorrelation) inside it, so every pixel ``(row, col)`` of the image lies under
B-scan ``row``, A-line ``col``.

Slab definitions (:data:`SLABS_UM`), chosen to follow the usual AO-OCT practice:

* ``isos``, ``cost``, ``rpe``: ±3 µm (±4 µm for the thicker RPE) around the band centre;
  cones are imaged at IS/OS and COST, RPE cells at the RPE [1]_.
* ``nfl``: ILM to ILM + 20 µm (nerve fibre bundles).
* ``isos_cost``: the geometric mean of ``isos`` and ``cost``, for the cone detector: a
  cone reflects at both depths, while the speckle of the two is independent, so a bright
  grain of one slab alone is damped (``ml.recipe``).
* ``svp`` / ``dvp``: fractions of the inner retina ``T = ISOS − ILM`` measured from the
  ILM — superficial plexus 8-26 % (ganglion cell layer), deep plexus 52-66 % (around the
  INL/OPL border) — because the plexuses scale with retinal thickness [2]_.

References
----------
.. [1] Liu Z, Kocaoglu OP, Miller DT. "3D imaging of retinal pigment epithelial cells in
       the living human retina." IOVS 57(9):OCT533-OCT543 (2016).
.. [2] Campbell JP et al. "Detailed vascular anatomy of the human retina by projection-
       resolved optical coherence tomography angiography." Sci. Rep. 7:42201 (2017).
"""
from __future__ import annotations

import numpy as np

from aooct_core.preprocessing.backend import get_backend, to_device, to_host

__all__ = ["SLABS_UM", "slab_projection", "slab_bounds_px", "enface_slabs"]

# name -> (surface, top offset, bottom offset, unit); unit "um" = µm from the surface,
# "frac" = fraction of (ISOS - ILM) below the ILM.
SLABS_UM = {
    "isos": ("ISOS", -3.0, 3.0, "um"),
    "cost": ("COST", -3.0, 3.0, "um"),
    "rpe": ("RPE", -4.0, 4.0, "um"),
    "nfl": ("ILM", 0.0, 20.0, "um"),
    "svp": ("ILM", 0.08, 0.26, "frac"),
    "dvp": ("ILM", 0.52, 0.66, "frac"),
}


def slab_bounds_px(name: str, surfaces: dict, *, depth_um_per_px: float):
    """``(top_px, bottom_px)`` float arrays (n_bscans, n_alines) of slab ``name``."""
    if name not in SLABS_UM:
        raise ValueError(f"unknown slab {name!r}; choose one of {sorted(SLABS_UM)}")
    surface, lo, hi, unit = SLABS_UM[name]
    base = surfaces[surface]
    if unit == "um":
        return base + np.float32(lo / depth_um_per_px), base + np.float32(hi / depth_um_per_px)
    thickness = surfaces["ISOS"] - surfaces["ILM"]
    return base + np.float32(lo) * thickness, base + np.float32(hi) * thickness


def slab_projection(volume, top_px, bottom_px, *, device: str = "cpu"):
    """Mean of ``volume`` over depths ``top_px ≤ z ≤ bottom_px`` of every A-line.

    Parameters
    ----------
    volume : array (n_bscans, n_depth, n_alines)
    top_px, bottom_px : arrays (n_bscans, n_alines), depth px (fractional allowed;
        voxels whose centre lies in the interval count; at least the voxel nearest the
        slab centre always counts, so a thin slab is never empty).

    Returns
    -------
    float32 (n_bscans, n_alines) on ``device``.
    """
    xp = get_backend(device).xp
    vol = to_device(volume, device)
    top = to_device(top_px, device).astype(xp.float32)
    bottom = to_device(bottom_px, device).astype(xp.float32)
    n_b, n_z, n_a = vol.shape
    if top.shape != (n_b, n_a) or bottom.shape != (n_b, n_a):
        raise ValueError(f"top_px and bottom_px must be (n_bscans, n_alines) = {(n_b, n_a)}; "
                         f"got {top.shape}, {bottom.shape}")
    # Only the depth range the slab can touch is read: one pass over a thin sub-volume.
    z0 = int(max(0, np.floor(float(top.min()))))
    z1 = int(min(n_z, np.ceil(float(bottom.max())) + 1))
    centre = xp.clip(xp.rint((top + bottom) / 2), 0, n_z - 1)
    if z1 <= z0:
        z0, z1 = int(centre.min()), int(centre.max()) + 1
    sub = vol[:, z0:z1].astype(xp.float32, copy=False)
    z = xp.arange(z0, z1, dtype=xp.float32)[None, :, None]
    inside = ((z >= top[:, None, :]) & (z <= bottom[:, None, :])) | (z == centre[:, None, :])
    total = (sub * inside).sum(axis=1)
    return (total / inside.sum(axis=1)).astype(xp.float32)


def enface_slabs(volume, surfaces: dict, *, depth_um_per_px: float, decorrelation=None,
                 device: str = "cpu") -> dict:
    """All standard en face images of an averaged volume.

    Parameters
    ----------
    volume : array (n_bscans, n_depth, n_alines), linear intensity
    surfaces : dict with "ILM", "ISOS", "COST", "RPE" (n_bscans, n_alines) px
    depth_um_per_px : float
    decorrelation : array like ``volume`` or None
        OCTA decorrelation; gives "octa_svp" and "octa_dvp". Without it (a single
        repeat) those two images are all-NaN: motion contrast is undefined. With an
        all-NaN ILM (above the depth window) "nfl", "svp", "dvp" and both OCTA slabs are
        all-NaN: the inner retina is not in the volume.

    Returns
    -------
    dict str → float32 (n_bscans, n_alines) on ``device``; keys "isos", "cost", "isos_cost",
    "rpe", "nfl", "svp", "dvp", "octa_svp", "octa_dvp".
    """
    xp = get_backend(device).xp
    surfaces = {k: to_device(v, device).astype(xp.float32) for k, v in surfaces.items()}
    # An ILM above the depth window (all-NaN, see segment_layers) leaves the inner-retina
    # slabs undefined: all-NaN, like OCTA of a single volume.
    ilm_in_view = bool(to_host(xp.isfinite(surfaces["ILM"]).all()))
    out = {}
    for name in SLABS_UM:
        top, bottom = slab_bounds_px(name, surfaces, depth_um_per_px=depth_um_per_px)
        if SLABS_UM[name][0] == "ILM" and not ilm_in_view:
            out[name] = xp.full(top.shape, np.nan, dtype=xp.float32)
            continue
        out[name] = slab_projection(volume, top, bottom, device=device)
    out["isos_cost"] = xp.sqrt(xp.maximum(out["isos"], 0) * xp.maximum(out["cost"], 0)).astype(xp.float32)
    for plexus in ("svp", "dvp"):
        top, bottom = slab_bounds_px(plexus, surfaces, depth_um_per_px=depth_um_per_px)
        if decorrelation is None or not ilm_in_view:
            out[f"octa_{plexus}"] = xp.full(top.shape, np.nan, dtype=xp.float32)
        else:
            out[f"octa_{plexus}"] = slab_projection(decorrelation, top, bottom, device=device)
    return out
