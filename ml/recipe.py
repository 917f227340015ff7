"""The per-case recipe: preprocessed en face slabs → detections, masks, uncertainty, metrics, QC.

``aooct analyze`` and the platform's mask and metrics assets both run these functions, so
the same case gives the same numbers wherever it is analysed (issue 16). The assets run
one structure per step (:func:`analyze_structure`, then :func:`measure_structure` on what
they stored); ``aooct analyze`` runs the whole case in one call (:func:`analyze_case`),
which is nothing but those two functions in a loop plus the QC flags.

Choices (the two copies had drifted; one was kept, for the reason given)
-----------------------------------------------------------------------
* **Cones on the IS/OS·COST slab of a volume** (``isos_cost``, the geometric mean of the
  IS/OS and COST en face images, :func:`aooct_core.preprocessing.enface_slabs`). A cone
  reflects at both depths; the speckle and noise of two depths 15-45 µm apart are
  independent, so the geometric mean keeps the cones and damps a bright speckle grain of
  one slab (an AND, where a sum would keep it). On a volume slab the detector resamples
  cells closer than 7 px to ~8 px (not 5 px) and takes peaks above 0.5, the heat map's
  own "more likely a cell than not" (:data:`VOLUME_CELL_DETECTION`, where the expected
  spacing is ≥ 3 px), not the 0.3 fitted on AOSLO images: both chosen on the phantom
  family's tuning seeds, reported on its held-out ones (bench/RESULTS.md "Issue 16",
  ``bench/accuracy/cones_family.py``) and on an independently written phantom
  (``bench/accuracy/independent_aooct.py``). An AOSLO
  image, which has one reflection per cone, is analysed as given with the AOSLO calibration.
  COST and IS/OS still feed the ``cone_mosaic`` QC check separately.
* **Vessel scale from the pixel size.** ``segment_vessels`` gets the ``(row, col)`` µm/px,
  so a slab sampled outside the pixel sizes the model was trained at (model card: ROSSA
  ≈ 9.4 µm/px, phantom AO-OCT slabs ≈ 1.1–3.4 µm/px) is resampled to the nearest trained
  one; without it the network meets capillaries at a width it has never seen.
* **RPE spacing prior 14 µm** (Ach et al. 2014, ~5,000 cells/mm² parafoveal, hexagonal).
  Without a prior the detector falls back to the power-spectrum ring estimate, whose
  prominence threshold was tuned on cone IS/OS slabs, not on RPE; a published normative
  spacing is the better-founded and deterministic choice.
* **An empty result is fully uncertain**: ``uncertainty_fraction`` 1.0 when no cell was
  detected (or no vessel pixel segmented). The fraction of unsure detections among none is
  undefined, and 0.0 would report "perfectly sure" — passing the blocking uncertainty QC
  check — for a model that found nothing at all.
* **A slab that is not there is not analysed**: an all-NaN slab (the inner-retina slabs of a
  volume whose ILM is above the depth window, :mod:`aooct_core.preprocessing.ilm`) gives a
  result with ``not_analysed`` set, empty outputs, an unmeasured (NaN) uncertainty and
  metrics whose values are NaN with the reason as their method — never numbers measured on
  tissue that is not the structure.
* **Capillaries only where there are vessels**: a segmentation covering less than
  :data:`MIN_CAPILLARY_MASK_FRACTION` of the slab is kept for review but not measured
  (``not_analysed``, NaN metrics, a note). Calibrated on the phantom family's tuning seeds
  0–79: every SVP slab segmented ≥ 0.023 of its area (46 / 46), slabs without capillaries
  (IS/OS, RPE) 0.00–0.11 (28 / 160 above the floor: vessel shadows), speckle noise 0.
* **Eccentricity** from :func:`aooct_core.geometry.eccentricity_deg` only.
* **Metrics** from :mod:`aooct_core.metrics` with bootstrap seed :data:`METRICS_SEED`, on
  the float32 arrays exactly as the platform stores them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

__all__ = ["STRUCTURES", "SLAB_OF", "VOLUME_CELL_DETECTION", "MIN_CAPILLARY_MASK_FRACTION",
           "RPE_SPACING_UM", "METRICS_SEED", "MIN_CELLS_FOR_METRICS", "UNCERTAINTY_METHOD",
           "StructureResult", "CaseAnalysis", "check_device",
           "as_um_pair", "expected_spacing_um", "analyze_structure", "measure_structure",
           "analyze_case"]

#: Structures in analysis order; cells are detected, vessels segmented.
STRUCTURES = ("cones", "rpe", "capillaries", "nfl")
#: The en face slab each structure is analysed on. Capillaries use the structural SVP slab:
#: with the few repeats of a typical case the OCTA decorrelation slab is too noisy
#: (phantom: correlation with the true vessels 0.13–0.15 for octa_svp vs 0.59–0.64 for svp;
#: bench/results_ml.md). Cones: IS/OS·COST, see the module docstring.
SLAB_OF = {"cones": "isos_cost", "rpe": "rpe", "capillaries": "svp", "nfl": "nfl"}
#: Detector options for cells on a volume's en face slab (``from_volume=True``), by
#: structure: see the module docstring. Others use the checkpoint's AOSLO calibration.
VOLUME_CELL_DETECTION = {"cones": {"peak_threshold": 0.5, "resample_below_px": 7.0}}
#: ... used only where the expected spacing is known and at least this many px (the range
#: they were measured over); below, the mosaic is near the sampling limit and the heat
#: peaks of a 3x-resampled image are lower (DEMO-000, 2.4 px: density -14 % at 0.5,
#: -7 % with the AOSLO calibration).
VOLUME_DETECTION_MIN_SPACING_PX = 3.0
#: Below this segmented area fraction a capillary slab shows no vessels to measure.
MIN_CAPILLARY_MASK_FRACTION = 0.02
#: Slabs the ``cone_mosaic`` QC check looks for a mosaic in.
CONE_MOSAIC_SLABS = ("isos", "cost")
#: Typical centre-to-centre RPE cell spacing in the parafovea, µm (density ~5,000 cells/mm²
#: in a hexagonal mosaic; Ach et al. 2014). Only used to resample too-fine images.
RPE_SPACING_UM = 14.0
#: Bootstrap seed of every confidence interval: the same case gives the same CI bytes.
METRICS_SEED = 0
#: Fewer cones than this give no meaningful density or spacing (QC flags the count).
MIN_CELLS_FOR_METRICS = 10
UNCERTAINTY_METHOD = "tta"
_KIND = {"cones": "cells", "rpe": "cells", "capillaries": "vessels", "nfl": "vessels"}


def check_device(device: str) -> str:
    """``device`` in canonical form (``"cpu"``, ``"cuda"``, ``"cuda:N"``), or ``ValueError``.

    The first layer that takes a device (the CLI option, the compute resource) calls this
    so that a typo or a GPU-less machine is refused before any work, with a message that
    says what to pass instead; CUDA is never silently replaced by the CPU.

    >>> check_device(" CPU ")
    'cpu'
    """
    if not isinstance(device, str):
        raise ValueError(f"device must be a string 'cpu', 'cuda' or 'cuda:N'; got {device!r}")
    canonical = device.strip().lower()
    kind, sep, index = canonical.partition(":")
    if kind == "cpu" and not sep:
        return "cpu"
    if kind != "cuda" or (sep and not index.isdigit()):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N' (N a GPU index); got {device!r}")
    import torch

    if not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was requested but torch sees no CUDA GPU on this "
                         "machine; use device 'cpu' or run on a GPU node")
    if sep and int(index) >= torch.cuda.device_count():
        raise ValueError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA "
                         f"GPU(s), indices 0-{torch.cuda.device_count() - 1}")
    return canonical


def as_um_pair(um_per_px) -> tuple[float, float] | None:
    """The one shape of a pixel size: ``(row, col)`` µm as two floats, or None (unknown)."""
    if um_per_px is None:
        return None
    pair = np.broadcast_to(np.asarray(um_per_px, np.float64), (2,))
    if not np.all(np.isfinite(pair) & (pair > 0)):
        raise ValueError(f"um_per_px must be positive µm, a number or (row, col); got {um_per_px!r}")
    return float(pair[0]), float(pair[1])


def expected_spacing_um(structure: str, eccentricity_deg: float | None) -> float | None:
    """Centre-to-centre spacing the detector should expect, µm (None: let it estimate).

    Cones: the triangular-lattice spacing of the normative density at the eccentricity,
    ``sqrt(2 / (sqrt(3) * density))``; None when the eccentricity is unknown. RPE:
    :data:`RPE_SPACING_UM` at any eccentricity.

    References
    ----------
    .. [1] Ach T, et al. "Quantitative autofluorescence and cell density maps of the human
           retinal pigment epithelium." IOVS 55:4832-4841 (2014).
    """
    if structure == "rpe":
        return RPE_SPACING_UM
    if structure != "cones":
        raise ValueError(f"expected spacing is defined for 'cones' and 'rpe'; got {structure!r}")
    if eccentricity_deg is None:
        return None
    from aooct_core.metrics import normative_cone_spacing_um

    return normative_cone_spacing_um(eccentricity_deg)


@dataclass(frozen=True)
class StructureResult:
    """One structure's model output, in the shapes the platform stores.

    Attributes
    ----------
    structure, slab : str
    arrays : dict of str → ndarray
        Cells: ``points_rc`` float32 (N, 2) en face px, ``confidence`` float32 (N,),
        ``heatmap_mean`` / ``heatmap_var`` float32 (row, col). Vessels: ``mask`` bool,
        ``probability_mean`` / ``probability_var`` float32 (row, col), and for NFL
        ``orientation_rad`` float32 (row, col).
    uncertainty : dict
        :func:`ml.uncertainty.uncertainty_summary` plus ``uncertainty_fraction`` (cells:
        confidence < 0.5; vessels: mask pixels whose mean ± 2 SD crosses 0.5; 1.0 when empty).
    numbers : dict
        Cells: ``count``, ``expected_spacing_um``, ``mean_confidence``. Vessels:
        ``mask_fraction`` (and ``fragment_count`` for capillaries).
    model_version : str
    not_analysed : str
        Why the structure was not analysed or measured (its slab is undefined: empty
        arrays; or a capillary slab shows no vessels: its arrays are kept for review);
        empty when it was.
    """

    structure: str
    slab: str
    arrays: dict
    uncertainty: dict
    numbers: dict
    model_version: str
    not_analysed: str = ""

    @property
    def points_rc(self) -> np.ndarray | None:
        return self.arrays.get("points_rc")

    @property
    def mask(self) -> np.ndarray | None:
        return self.arrays.get("mask")


@dataclass(frozen=True)
class CaseAnalysis:
    """Everything :func:`analyze_case` found for one case.

    ``metrics`` maps structure → metric name → :class:`aooct_core.metrics.MetricValue`
    (empty when the pixel size is unknown); ``qc_flags`` are raised
    :class:`aooct_core.qc.QCFlag`; ``qc_inputs`` what they were judged on.
    """

    structures: dict
    metrics: dict
    qc_inputs: dict
    qc_flags: list
    notes: list = field(default_factory=list)


def _fraction_unsure_cells(confidence: np.ndarray) -> float:
    return float(np.mean(confidence < 0.5)) if len(confidence) else 1.0


def _fraction_unsure_pixels(mean: np.ndarray, var: np.ndarray, mask: np.ndarray) -> float:
    if not mask.any():
        return 1.0
    sd = np.sqrt(np.clip(np.nan_to_num(var), 0, None))
    crosses = (mean - 2 * sd < 0.5) & (mean + 2 * sd > 0.5)
    return float(crosses[mask].mean())


def analyze_structure(structure: str, image: np.ndarray, *, um_per_px=None,
                      eccentricity_deg: float | None = None, backend: str = "torch",
                      device: str = "cpu", weights: Path | None = None,
                      n_samples: int = 4, from_volume: bool = False) -> StructureResult:
    """Detect (cones, RPE) or segment (capillaries, NFL) one structure on its slab.

    Parameters
    ----------
    structure : {"cones", "rpe", "capillaries", "nfl"}
    image : ndarray (row, col), any real dtype
        The structure's en face slab (:data:`SLAB_OF`); analysed as float32, as stored.
    um_per_px : float or (float, float), optional
        En face ``(row, col)`` pixel size, µm; drives the resampling of cone/RPE images
        sampled near Nyquist and of vessel images outside the trained pixel sizes.
    eccentricity_deg : float, optional
        Retinal eccentricity (for the normative cone spacing).
    backend, device, weights, n_samples
        As in :func:`ml.inference.detect_cells`; uncertainty is always TTA.
    from_volume : bool
        The image is a volume's en face slab (not an AOSLO image): cells are detected with
        :data:`VOLUME_CELL_DETECTION` where the expected spacing is at least
        :data:`VOLUME_DETECTION_MIN_SPACING_PX`.

    Returns
    -------
    StructureResult
    """
    from ml.inference import detect_cells, segment_vessels
    from ml.uncertainty import uncertainty_summary

    if structure not in _KIND:
        raise ValueError(f"structure must be one of {STRUCTURES}; got {structure!r}")
    device = check_device(device)
    um = as_um_pair(um_per_px)
    image = np.asarray(image, np.float32)
    if not np.isfinite(image).any():
        return _not_analysed(structure, image.shape, f"its '{SLAB_OF[structure]}' slab is not in the "
                             "volume (the inner-retina slabs need the ILM in the depth window)")
    not_analysed = ""
    common = {"target": structure, "um_per_px": um, "backend": backend, "device": device,
              "uncertainty": UNCERTAINTY_METHOD, "n_samples": n_samples, "weights": weights}
    if _KIND[structure] == "cells":
        spacing = expected_spacing_um(structure, eccentricity_deg)
        spacing_px = None if spacing is None or um is None else spacing / max(um)
        measured = spacing_px is not None and spacing_px >= VOLUME_DETECTION_MIN_SPACING_PX
        options = VOLUME_CELL_DETECTION.get(structure, {}) if from_volume and measured else {}
        det = detect_cells(image, expected_spacing_um=spacing, **options, **common)
        arrays = {"points_rc": det.points_rc, "confidence": det.confidence,
                  "heatmap_mean": det.heatmap_mean, "heatmap_var": det.heatmap_var}
        count = int(len(det.points_rc))
        summary = uncertainty_summary(det.heatmap_mean, det.heatmap_var, confidence=det.confidence)
        summary["low_confidence_fraction"] = summary["uncertainty_fraction"] = \
            _fraction_unsure_cells(det.confidence)
        numbers = {"count": count, "expected_spacing_um": spacing,
                   "mean_confidence": float(np.mean(det.confidence)) if count else 0.0}
        version = det.model_version
    else:
        seg = segment_vessels(image, **common)
        mask = np.asarray(seg.mask, bool)
        arrays = {"mask": mask, "probability_mean": seg.probability_mean,
                  "probability_var": seg.probability_var}
        if seg.orientation_rad is not None:
            arrays["orientation_rad"] = seg.orientation_rad
        summary = uncertainty_summary(seg.probability_mean, seg.probability_var)
        summary["uncertainty_fraction"] = _fraction_unsure_pixels(
            seg.probability_mean, seg.probability_var, mask)
        numbers = {"mask_fraction": float(mask.mean())}
        if structure == "capillaries":
            from scipy import ndimage

            numbers["fragment_count"] = int(ndimage.label(mask, structure=np.ones((3, 3)))[1])
            if numbers["mask_fraction"] < MIN_CAPILLARY_MASK_FRACTION:
                not_analysed = (f"no vessels to measure: {100 * numbers['mask_fraction']:.1f} % of the "
                                f"'{SLAB_OF[structure]}' slab segmented, under the "
                                f"{100 * MIN_CAPILLARY_MASK_FRACTION:g} % floor (is the slab at the "
                                "capillary plexus? check the ILM and the B-scan overlay)")
        version = seg.model_version
    arrays = {k: v if v.dtype == bool else np.asarray(v, np.float32) for k, v in arrays.items()}
    return StructureResult(structure=structure, slab=SLAB_OF[structure], arrays=arrays,
                           uncertainty=summary, numbers=numbers, model_version=str(version),
                           not_analysed=not_analysed)


def _not_analysed(structure: str, shape: tuple, reason: str) -> StructureResult:
    nan = np.full(shape, np.nan, np.float32)
    if _KIND[structure] == "cells":
        arrays = {"points_rc": np.zeros((0, 2), np.float32), "confidence": np.zeros(0, np.float32),
                  "heatmap_mean": nan, "heatmap_var": nan}
        numbers = {"count": 0, "expected_spacing_um": None, "mean_confidence": float("nan")}
    else:
        arrays = {"mask": np.zeros(shape, bool), "probability_mean": nan, "probability_var": nan}
        numbers = {"mask_fraction": float("nan")}
    return StructureResult(structure=structure, slab=SLAB_OF[structure], arrays=arrays,
                           uncertainty={"uncertainty_fraction": float("nan")}, numbers=numbers,
                           model_version="none", not_analysed=reason)


def measure_structure(structure: str, arrays: Mapping[str, np.ndarray], *,
                      image_shape: tuple[int, int], um_per_px, not_analysed: str = "") -> dict:
    """Metrics with 95 % CIs of one structure from its (stored) arrays.

    Parameters
    ----------
    structure : {"cones", "rpe", "capillaries", "nfl"}
    arrays : mapping
        :attr:`StructureResult.arrays`, or the same arrays read back from the store:
        ``points_rc`` for cells, ``mask`` (and ``orientation_rad`` for NFL) for vessels.
    image_shape : (int, int)
        ``(rows, cols)`` of the slab (the counting window of the cells).
    um_per_px : float or (float, float)
        En face ``(row, col)`` pixel size, µm.
    not_analysed : str
        :attr:`StructureResult.not_analysed`: when set, the same metrics are returned with
        NaN values and ``"not measured: <reason>"`` as their method.

    Returns
    -------
    dict of str → MetricValue
        :func:`~aooct_core.metrics.mosaic_metrics`, :func:`~aooct_core.metrics.capillary_metrics`
        or :func:`~aooct_core.metrics.nerve_fiber_metrics`, bootstrap seed :data:`METRICS_SEED`.
    """
    from aooct_core.metrics import MetricValue, capillary_metrics, mosaic_metrics, nerve_fiber_metrics

    um = as_um_pair(um_per_px)
    if um is None:
        raise ValueError("metrics need the en face pixel size (um_per_px); none was given")
    if not_analysed:
        # The names and units come from the metric function itself, on an empty input.
        empty = _not_analysed(structure, (16, 16), not_analysed).arrays
        names = measure_structure(structure, empty, image_shape=(16, 16), um_per_px=um)
        return {k: MetricValue(float("nan"), v.unit, None, None, f"not measured: {not_analysed}")
                for k, v in names.items()}
    if structure in ("cones", "rpe"):
        return mosaic_metrics(np.asarray(arrays["points_rc"], np.float32),
                              image_shape=tuple(int(n) for n in image_shape), um_per_px=um,
                              seed=METRICS_SEED)
    if structure == "capillaries":
        return capillary_metrics(np.asarray(arrays["mask"], bool), um_per_px=um, seed=METRICS_SEED)
    if structure == "nfl":
        orient = arrays.get("orientation_rad")
        return nerve_fiber_metrics(np.asarray(arrays["mask"], bool), um_per_px=um,
                                   orientation_rad=orient, seed=METRICS_SEED)
    raise ValueError(f"structure must be one of {STRUCTURES}; got {structure!r}")


def analyze_case(slabs: Mapping[str, np.ndarray], *, um_per_px=None,
                 eccentricity_deg: float | None = None, qc_inputs: Mapping | None = None,
                 targets: Sequence[str] = STRUCTURES, backend: str = "torch",
                 device: str = "cpu", weights: Mapping[str, Path] | None = None,
                 from_volume: bool = False) -> CaseAnalysis:
    """The whole recipe for one preprocessed case.

    Parameters
    ----------
    slabs : mapping of slab name → ndarray (row, col)
        ``Preprocessed.enface`` (or the stored ``enface/<slab>.npy``): at least the slabs
        of ``targets`` (:data:`SLAB_OF`); with ``isos`` and ``cost`` and a known
        eccentricity the ``cone_mosaic`` QC input is measured too.
    um_per_px : float or (float, float), optional
        En face ``(row, col)`` pixel size, µm; without it no physical metric is computed.
    eccentricity_deg : float, optional
        :func:`aooct_core.geometry.eccentricity_deg` of the case's location.
    qc_inputs : mapping, optional
        Preprocessing QC inputs of :func:`aooct_core.qc.qc_flags` (``snr_db``,
        ``registration_ok``, ``residual_motion_um``, ``saccade_ambiguity_um``).
    targets : sequence of str
        Structures to analyse, a subset of :data:`STRUCTURES`.
    backend, device
        As in :func:`ml.inference.detect_cells`.
    weights : mapping structure → checkpoint path, optional
    from_volume : bool
        The slabs come from a volume (:func:`analyze_structure`).

    Returns
    -------
    CaseAnalysis
    """
    from aooct_core.qc import qc_flags

    device = check_device(device)
    unknown = [t for t in targets if t not in STRUCTURES]
    if unknown:
        raise ValueError(f"targets must be among {STRUCTURES}; got {unknown}")
    missing = sorted({SLAB_OF[t] for t in targets} - set(slabs))
    if missing:
        raise ValueError(f"slabs {missing} are needed for {list(targets)}; got {sorted(slabs)}")
    um = as_um_pair(um_per_px)
    qc = dict(qc_inputs or {})
    notes: list[str] = []
    if eccentricity_deg is not None and all(s in slabs for s in CONE_MOSAIC_SLABS):
        from aooct_core.metrics.mosaic_spectrum import cone_mosaic_strength

        strength = cone_mosaic_strength([slabs[s] for s in CONE_MOSAIC_SLABS],
                                        eccentricity_deg=eccentricity_deg, um_per_px=um)
        if strength is None:
            notes.append("cone-mosaic check not run: expected cone spacing under 3 px or too "
                         "few cells across the field")
        else:
            qc["mosaic_ring_strength"] = strength
    results, metrics = {}, {}
    for t in targets:
        image = slabs[SLAB_OF[t]]
        results[t] = analyze_structure(t, image, um_per_px=um, eccentricity_deg=eccentricity_deg,
                                       backend=backend, device=device,
                                       weights=(weights or {}).get(t), from_volume=from_volume)
        if results[t].not_analysed:
            notes.append(f"{t} not analysed: {results[t].not_analysed}")
        if um is not None:
            metrics[t] = measure_structure(t, results[t].arrays, image_shape=np.shape(image),
                                           um_per_px=um, not_analysed=results[t].not_analysed)
    if "cones" in results and not results["cones"].not_analysed:
        n = results["cones"].numbers["count"]
        qc["cell_count"] = n
        qc["uncertainty_fraction"] = results["cones"].uncertainty["uncertainty_fraction"]
        if um is not None and n < MIN_CELLS_FOR_METRICS:
            notes.append(f"only {n} cones detected: mosaic metrics (density, NND) not reported")
        elif um is not None:
            qc["density_cells_per_mm2"] = float(metrics["cones"]["density_cells_per_mm2"].value)
    if eccentricity_deg is not None:
        qc["eccentricity_deg"] = float(eccentricity_deg)
    return CaseAnalysis(structures=results, metrics=metrics, qc_inputs=qc,
                        qc_flags=list(qc_flags(**qc)), notes=notes)
