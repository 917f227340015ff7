"""Preprocessing of AO-OCT cases: motion correction, repeat registration and averaging,
normalization, layer surfaces, en face slabs and OCTA — on the CPU (NumPy/SciPy) or the
GPU (CuPy, ``device="cuda"``) with the same code.

Entry point: :func:`preprocess_case` → :class:`Preprocessed`.
"""
from aooct_core.preprocessing.averaging import average_repeats
from aooct_core.preprocessing.backend import get_backend, to_device, to_host
from aooct_core.preprocessing.denoise import denoise_volume, estimate_noise_sigma_db
from aooct_core.preprocessing.enface import SLABS_UM, enface_slabs, slab_projection
from aooct_core.preprocessing.layers import flatten_volume, segment_layers
from aooct_core.preprocessing.motion import ShiftEstimate, dim_bscans, phase_correlate, shift_bscans
from aooct_core.preprocessing.normalization import (
    from_db,
    normalize_volume,
    snr_db,
    snr_lower_bound_db,
    speckle_contrast,
    to_db,
)
from aooct_core.preprocessing.pipeline import Preprocessed, preprocess_case
from aooct_core.preprocessing.registration import MotionReport, estimate_motion, pick_reference

__all__ = [
    "Preprocessed", "preprocess_case", "MotionReport", "estimate_motion", "pick_reference",
    "ShiftEstimate", "phase_correlate", "shift_bscans", "dim_bscans", "average_repeats",
    "normalize_volume", "to_db", "from_db", "speckle_contrast", "snr_db", "snr_lower_bound_db",
    "segment_layers", "flatten_volume", "SLABS_UM", "enface_slabs", "slab_projection",
    "get_backend", "to_device", "to_host", "denoise_volume", "estimate_noise_sigma_db",
]
