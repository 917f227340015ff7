"""Optional single-volume speckle denoiser: non-local means on the dB image.

For cases with one volume (or a few), averaging cannot lower the speckle; this step can.
It is **off by default** in :func:`~aooct_core.preprocessing.preprocess_case`
(``denoise=None``) because it trades fine structure for less speckle.
``bench/bench_denoise.py`` measures the trade on phantoms and on the real AO-OCT series:
the diffuse-tissue slabs (RPE, NFL, capillary plexuses) gain about what averaging 2-4
volumes gives, but cones, ~3 px apart in AO-OCT sampled near Nyquist, are smoothed away,
so the pipeline projects the cone slabs from the un-denoised volume
(:data:`DENOISED_SLABS`).

Why the dB image: speckle multiplies the reflectivity (``I = R·S``). In dB it becomes an
additive term whose SD does not depend on ``R`` (5.57 dB for fully developed speckle),
the stationary additive noise that non-local means is built for (homomorphic filtering).

Why non-local means [1]_ from scikit-image: maintained and BSD-licensed; it averages pixels
whose neighbourhoods look alike, so structures wider than a patch (layer bands, vessel walls,
nerve-fibre bundles) are kept while speckle, which does not repeat, is averaged away. Cones
sampled near Nyquist are the exception: at ~3 px apart they are no wider than the speckle. ``method="bm4d"`` [2]_ is
optional: the ``bm4d`` package on PyPI is licensed for non-commercial use only, so it is
never installed by aooct; install it yourself if your use allows it.

Noise level: unless ``sigma_db`` is given it is estimated from the image
(:func:`estimate_noise_sigma_db`). Speckle grains span a few px, so differences of
neighbouring px underestimate the SD; the default ``strength`` (filter parameter
``h = strength·σ``) compensates. It was chosen on phantoms, not on the real series.

Intensity: the mean in dB of speckle is the log of a geometric mean, 2.5 dB below the
linear mean for fully developed speckle. The output is therefore rescaled so that its
mean linear intensity equals the input's (one factor for the whole array).

References
----------
.. [1] Buades A, Coll B, Morel JM. "A non-local algorithm for image denoising."
       CVPR 2005, 60-65; fast variant: Darbon J et al., ISBI 2008, 1331-1334.
.. [2] Maggioni M, Katkovnik V, Egiazarian K, Foi A. "Nonlocal transform-domain filter
       for volumetric data denoising and reconstruction." IEEE TIP 22(1):119-133 (2013).
"""
from __future__ import annotations

import os

import numpy as np

from aooct_core.preprocessing.backend import to_host
from aooct_core.preprocessing.cpu_parallel import cpu_pool, run_split
from aooct_core.preprocessing.normalization import from_db, to_db

__all__ = ["denoise_volume", "estimate_noise_sigma_db", "DENOISE_METHODS", "DENOISED_SLABS"]

DENOISE_METHODS = ("nl_means", "bm4d")
# En face slabs that gain from the denoiser. On phantoms (bench/bench_denoise.py) it raises
# the correlation of the RPE, NFL and plexus slabs with the noise-free ones (like averaging
# 2-4 volumes) but lowers that of the cone slabs (IS/OS, COST) at every strength tried:
# cones ~3 px apart look like speckle to a patch-based filter.
DENOISED_SLABS = ("rpe", "nfl", "svp", "dvp")
# Default patch / search sizes in px: 2-D images afford a wider search; 3-D volumes keep
# the search small (the cost grows with its volume) and gain from the third axis instead.
_DEFAULT_PATCH_PX = {2: 5, 3: 3}
_DEFAULT_SEARCH_PX = {2: 5, 3: 2}
_FLOOR_FRACTION = np.float32(1e-4)  # dB floor: 1e-4 × mean intensity (−40 dB)


def estimate_noise_sigma_db(image_db) -> float:
    """Robust SD (dB) of the noise of a dB image, from differences of neighbouring px.

    ``1.4826 · median |d − median d| / √2`` with ``d`` the differences along one axis,
    taken along the axis that gives the largest value (the one where speckle grains are
    least correlated). Pairs where both px sit at the dB floor are left out (padding or
    clipped background would pull the estimate to 0). Underestimates the SD of speckle
    whose grains span several px; :func:`denoise_volume`'s ``strength`` accounts for it.

    Parameters
    ----------
    image_db : ndarray (2-D or 3-D), float, dB

    Returns
    -------
    float
        Noise SD in dB (> 0).
    """
    image_db = np.asarray(image_db, dtype=np.float32)
    floor = image_db.min()
    best = 0.0
    for axis in range(image_db.ndim):
        if image_db.shape[axis] < 2:
            continue
        a = np.moveaxis(image_db, axis, 0)
        d = (a[1:] - a[:-1])[(a[1:] > floor) | (a[:-1] > floor)]
        if d.size:
            best = max(best, float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2)))
    if not best > 0:
        raise ValueError("cannot estimate the noise: the image has no variation between neighbouring px; "
                         "pass sigma_db explicitly")
    return best


def _check(volume, method, strength, patch_size_px, search_radius_px, sigma_db, device):
    if device != "cpu":
        raise ValueError(f"denoise_volume runs on the CPU only (scikit-image and bm4d have no GPU path); "
                         f"got device={device!r} — pass device='cpu' (the array is copied to the host)")
    if method not in DENOISE_METHODS:
        raise ValueError(f"method must be one of {DENOISE_METHODS}; got {method!r}")
    if volume.ndim not in (2, 3):
        raise ValueError(f"volume must be a 2-D image (row, col) or a 3-D volume (bscan, depth, aline); "
                         f"got shape {volume.shape}")
    if min(volume.shape) < 2:
        raise ValueError(f"every axis needs at least 2 px; got shape {volume.shape}")
    n_bad = int(volume.size - np.count_nonzero(np.isfinite(volume)))
    if n_bad:
        raise ValueError(f"volume holds {n_bad} non-finite values (NaN/inf); fill or crop them before denoising")
    if not strength > 0:
        raise ValueError(f"strength must be > 0 (h = strength × noise SD); got {strength!r}")
    if patch_size_px is not None and not (int(patch_size_px) == patch_size_px and patch_size_px >= 1):
        raise ValueError(f"patch_size_px must be an integer >= 1; got {patch_size_px!r}")
    if search_radius_px is not None and not (int(search_radius_px) == search_radius_px and search_radius_px >= 1):
        raise ValueError(f"search_radius_px must be an integer >= 1; got {search_radius_px!r}")
    if sigma_db is not None and not sigma_db > 0:
        raise ValueError(f"sigma_db must be > 0 or None (estimated); got {sigma_db!r}")


def _nl_means_split(image_db, *, h, sigma, patch, search, threads):
    from skimage.restoration import denoise_nl_means

    def run(block):
        return denoise_nl_means(block, h=h, sigma=sigma, patch_size=patch, patch_distance=search,
                                fast_mode=True, channel_axis=None, preserve_range=True)

    n = image_db.shape[0]
    halo = search + patch // 2  # every output px reads input px at most this far away
    parts = min(threads, max(1, n // (4 * halo + 1)))
    pool = cpu_pool("cpu", parts, parts) if parts >= 2 else None
    if pool is None:
        return run(image_db).astype(np.float32)
    # Slabs along the first axis with a halo, run in the pool (scikit-image releases the
    # GIL); the halo makes each slab's interior equal to the whole-array result up to
    # float rounding of the running sums.
    edges = np.linspace(0, n, parts + 1).round().astype(int)
    spans = [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]

    def run_span(span):
        a, b = span
        lo, hi = max(0, a - halo), min(n, b + halo)
        return run(image_db[lo:hi])[a - lo: a - lo + (b - a)]

    return np.concatenate(run_split(pool, run_span, spans), axis=0).astype(np.float32)


def denoise_volume(volume, *, method: str = "nl_means", strength: float = 1.3, patch_size_px: int | None = None,
                   search_radius_px: int | None = None, sigma_db: float | None = None, device: str = "cpu",
                   cpu_threads: int | None = None) -> np.ndarray:
    """Reduce the speckle of one volume or en face image (linear intensity in and out).

    Parameters
    ----------
    volume : ndarray (n_bscans, n_depth, n_alines) or (n_rows, n_cols), any real dtype
        Linear intensity (≥ 0; values below 1e-4 × the mean are floored there).
    method : {"nl_means", "bm4d"}
        scikit-image's fast non-local means, or BM4D from the separately installed
        ``bm4d`` package (non-commercial licence; see the module notes).
    strength : float
        Filter parameter ``h`` (nl_means) or the noise SD given to BM4D, as a multiple of
        the noise SD in dB. Larger smooths more.
    patch_size_px, search_radius_px : int or None
        Non-local means patch edge and search radius, px; default 5 and 5 for 2-D images,
        3 and 2 for volumes.
    sigma_db : float or None
        Noise SD in dB; default :func:`estimate_noise_sigma_db` of the image.
    device : {"cpu"}
        Only the CPU is supported (a ValueError says so for "cuda").
    cpu_threads : int or None
        Threads for non-local means (slabs along the first axis); default all cores.

    Returns
    -------
    ndarray float32, the shape of ``volume``
        Denoised linear intensity with the mean intensity of the input.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> speckled = (rng.exponential(size=(64, 64)) * 100).astype(np.float32)
    >>> out = denoise_volume(speckled)
    >>> bool(out.std() / out.mean() < 0.5 * speckled.std() / speckled.mean())
    True
    """
    image = to_host(volume)
    _check(image, method, strength, patch_size_px, search_radius_px, sigma_db, device)
    image = image.astype(np.float32, copy=False)
    mean = float(image.mean(dtype=np.float64))
    if not mean > 0:
        raise ValueError(f"volume must be linear intensity with a positive mean; got mean {mean:g} "
                         "(convert dB images with aooct_core.preprocessing.from_db first)")
    image_db = to_db(image, floor=float(_FLOOR_FRACTION * np.float32(mean)))
    sigma = float(sigma_db) if sigma_db is not None else estimate_noise_sigma_db(image_db)
    if method == "bm4d":
        out_db = _bm4d(image_db, sigma=strength * sigma)
    else:
        patch = int(patch_size_px or _DEFAULT_PATCH_PX[image.ndim])
        search = int(search_radius_px or _DEFAULT_SEARCH_PX[image.ndim])
        threads = int(cpu_threads) if cpu_threads is not None else (os.cpu_count() or 1)
        if threads < 1:
            raise ValueError(f"cpu_threads must be >= 1 or None (all cores); got {cpu_threads!r}")
        out_db = _nl_means_split(image_db, h=strength * sigma, sigma=sigma, patch=patch, search=search,
                                 threads=threads)
    out = from_db(out_db)
    return (out * np.float32(mean / float(out.mean(dtype=np.float64)))).astype(np.float32)


def _bm4d(image_db, *, sigma: float) -> np.ndarray:
    try:
        import bm4d
    except ImportError as exc:
        raise ValueError("method='bm4d' needs the bm4d package, which aooct does not install (its licence "
                         "allows non-commercial use only): pip install bm4d — or use method='nl_means'") from exc
    out = bm4d.bm4d(image_db if image_db.ndim == 3 else image_db[:, :, None], sigma)
    return np.asarray(out, dtype=np.float32).reshape(image_db.shape)
