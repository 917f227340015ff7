"""Intensity, amplitude or dB: which scale a volume is stored in, and conversion to intensity.

OCT systems export the same data three ways: linear **intensity** (|field|²), linear
**amplitude** (|field|, "magnitude") and logarithmic **dB** (10·log10 intensity, any
offset). The pipeline works on intensity; a volume in another scale gives the wrong band
contrasts (an amplitude volume halves every contrast in dB; a dB volume averaged as if it
were linear is no longer a mean of the signal). The scale is declared in ``case.json``
(``"intensity_scale"``) or told apart from fully developed speckle, whose marginal
statistics are a property of the scale, not of the tissue or of the speckle grain size.
The median of (value / local mean) over the tissue of one repeat is

* intensity: exponential statistics, ln 2 ≈ 0.69 (≤ 0.80 with structure and noise);
* amplitude: Rayleigh statistics, √(ln 4) / √(π/2) ≈ 0.94;
* dB: additive speckle of SD ≈ 5.6 dB on values of tens of dB: ≈ 1 (and values may be
  negative).

References
----------
.. [1] Goodman JW. *Speckle Phenomena in Optics*, ch. 3 (2007): first-order statistics of
       fully developed speckle.
"""
from __future__ import annotations

import numpy as np

__all__ = ["SCALES", "detect_scale", "to_intensity"]

SCALES = ("intensity", "amplitude", "db")
# Median of (value / local mean) over the tissue: a property of the marginal speckle
# statistics that does not depend on the speckle grain size: exponential (intensity)
# ln 2 = 0.693, Rayleigh (amplitude) sqrt(ln 4 / (pi / 2))... = 0.939, log (dB) ~1.
_INTENSITY_MAX, _AMPLITUDE_RANGE, _DB_MIN = 0.80, (0.86, 0.975), 0.975
_DB_SD_RANGE = (3.0, 9.0)


def _median_ratio(volume: np.ndarray) -> tuple[float, float]:
    """Median of value / local mean (1×7×7) and median local SD (value units) over the
    brighter half of the volume (the tissue)."""
    from scipy import ndimage as ndi

    v = np.asarray(volume, dtype=np.float32)
    step = max(1, v.shape[0] // 16)  # at most ~16 B-scans: plenty of samples, little time
    v = v[::step]
    local = ndi.uniform_filter(v, size=(1, 7, 7), mode="nearest")
    tissue = local > np.median(local)
    ok = tissue & (np.abs(local) > 1e-12)
    if ok.sum() < 500:
        raise ValueError(f"volume {volume.shape} is too small or too flat to tell its scale; declare "
                         "\"intensity_scale\" in case.json")
    local_sd = np.sqrt(np.maximum(ndi.uniform_filter(v * v, size=(1, 7, 7), mode="nearest") - local ** 2, 0))
    return float(np.median(v[ok] / local[ok])), float(np.median(local_sd[ok]))


def detect_scale(volume) -> tuple[str, float]:
    """The scale of one repeat (``"intensity"``, ``"amplitude"`` or ``"db"``) and its evidence.

    Parameters
    ----------
    volume : array (n_bscans, n_depth, n_alines)
        One repeat, as stored (not averaged: averaging lowers the speckle contrast).

    Returns
    -------
    scale : str
    ratio : float
        Median of value over local mean in the tissue (see the module docstring).

    Raises
    ------
    ValueError
        When the statistics fit no scale (e.g. an averaged or filtered volume); the message
        asks to declare ``"intensity_scale"`` in case.json.
    """
    v = np.asarray(volume)
    if v.ndim != 3:
        raise ValueError(f"detect_scale takes one repeat (bscan, depth, aline); got shape {v.shape}")
    ratio, sd = _median_ratio(v)
    # dB speckle is additive with an SD of ~5.6 dB whatever the signal (3.5-8 with PSF
    # correlation, structure and noise): a symmetric distribution alone is not enough.
    if ratio >= _DB_MIN and _DB_SD_RANGE[0] <= sd <= _DB_SD_RANGE[1]:
        return "db", ratio
    if float(np.min(v)) < 0:
        raise ValueError(f"negative values but a local SD of {sd:.2g} (dB speckle has ~5.6 dB) — "
                         "declare \"intensity_scale\" in case.json")
    if ratio <= _INTENSITY_MAX:
        return "intensity", ratio
    if _AMPLITUDE_RANGE[0] <= ratio < _AMPLITUDE_RANGE[1]:
        return "amplitude", ratio
    raise ValueError(f"the speckle statistics (median/local mean {ratio:.3f}) fit neither intensity "
                     f"(≤ {_INTENSITY_MAX}), amplitude ({_AMPLITUDE_RANGE[0]}-{_AMPLITUDE_RANGE[1]}) nor "
                     f"dB (≥ {_DB_MIN}) — an averaged or filtered export? Declare \"intensity_scale\" "
                     "in case.json")


def to_intensity(volumes, scale: str):
    """Linear intensity from volumes stored in ``scale`` (float32; intensity returned as is).

    dB values are taken as 10·log10 of intensity with any offset: the result is intensity
    up to one constant factor, which the pipeline normalizes away.
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}; got {scale!r}")
    if scale == "intensity":
        return volumes
    v = np.asarray(volumes, dtype=np.float32)
    if scale == "amplitude":
        return np.square(v)
    # dB: subtract the maximum first so that 10^(x/10) cannot overflow float32.
    return np.power(np.float32(10.0), (v - np.float32(np.max(v))) / np.float32(10.0)).astype(np.float32)
