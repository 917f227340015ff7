"""Quality-control flags with documented, configurable thresholds.

Each check compares one number from the pipeline with a ``warn`` and a ``fail``
threshold. ``warn`` means "a person should look before publishing"; ``fail``
means "the measurement would be meaningless" (the platform blocks downstream
assets on it). Checks whose input is ``None`` are not evaluated.

Defaults and why
----------------
================================  ======  ======  ==========================================
check (input)                     warn    fail    rationale
================================  ======  ======  ==========================================
low_snr (snr_db)                  < 15    < 10    ``preprocessing.snr_db`` (RPE over vitreous
                                                  floor, intensity dB); below ~10 dB cones are
                                                  not resolved from speckle. Without vitreous
                                                  in view, a lower bound over the darkest
                                                  retinal rows: passes at >= 15, else warns
                                                  "not measured" (a bound cannot fail).
residual_motion (µm RMS)          > 1.5   > 3.0   half a cone spacing at 2° (6.5 µm, Legras
                                                  2018) smears neighbouring cones together.
high_uncertainty (fraction)       > 0.2   > 0.4   share of detections / pixels the model is
                                                  unsure of (ML uncertainty summary).
too_few_cells (count)             < 100   < 30    density's Poisson relative SE is 1/√N: 10 %
                                                  at 100 cells, 18 % at 30.
implausible_density (|z|)         > 3     > 6     z against ``normative_cone_density`` at the
                                                  eccentricity (cones only); disease can be
                                                  > 3 SD low, a detector error is usually far
                                                  beyond 6. Not evaluated beyond the norms
                                                  (~34° at 24 mm axial length).
registration_failure (bool)       —       False   repeats could not be aligned: averaged
                                                  volume is not one retina.
padded_columns (fraction)         > 0.10  > 0.30  share of the en face image in columns the
                                                  motion correction filled by repeating the
                                                  border (``Preprocessed.padded_fraction``):
                                                  cells there are invented. Phantom family,
                                                  tuning seeds 0–119: median 0.08, max 0.25
                                                  (repeats up to 40 µm apart); the demo
                                                  0.02–0.03.
fragmented_vessels (components)   > 15    > 40    a perfused capillary plexus in a 1–2° field
                                                  is nearly one network; many pieces mean a
                                                  broken segmentation.
undersampled_mosaic (px)          < 2.75  < 2.3   normative cone spacing at the eccentricity
                                                  over the en face pixel size. A triangular
                                                  mosaic's row period is 0.87 × spacing, so
                                                  Nyquist (2 px per period) needs ≥ 2.31 px;
                                                  near it cones merge and are undercounted
                                                  (phantom, 1° field on 128 A-lines: −10 % at
                                                  2.4 px, within 2 % at ≥ 3 px; ``aooct demo``).
missing_mosaic (ring strength)    < 6.0   < 4.5   Yellott ring of the cone slab at the
                                                  normative spacing over its spectral
                                                  background (1 = no mosaic); forced-wrong
                                                  slabs (ELM, ONL, RPE, choroid) of the
                                                  phantom family
                                                  (``bench/accuracy/missing_mosaic.py``).
================================  ======  ======  ==========================================
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Literal

__all__ = ["QCThresholds", "QCFlag", "QCCheck", "qc_flags", "qc_checks"]

Severity = Literal["warn", "fail"]


@dataclass(frozen=True)
class QCThresholds:
    """Warn/fail thresholds of every QC check (see the module docstring for the rationale)."""

    snr_warn_db: float = 15.0
    snr_fail_db: float = 10.0
    residual_motion_warn_um: float = 1.5
    residual_motion_fail_um: float = 3.0
    uncertainty_warn_fraction: float = 0.2
    uncertainty_fail_fraction: float = 0.4
    cell_count_warn: int = 100
    cell_count_fail: int = 30
    density_z_warn: float = 3.0
    density_z_fail: float = 6.0
    vessel_fragments_warn: int = 15
    vessel_fragments_fail: int = 40
    cone_sampling_warn_px: float = 2.75
    cone_sampling_fail_px: float = 2.3
    mosaic_ring_warn: float = 6.0
    mosaic_ring_fail: float = 4.5
    padded_warn_fraction: float = 0.10
    padded_fail_fraction: float = 0.30

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"QCThresholds.{f.name} must be a finite number ≥ 0; got {v!r}")
        # "lower is worse" checks need fail ≤ warn; "higher is worse" need fail ≥ warn.
        pairs_low = [("snr_fail_db", "snr_warn_db"), ("cell_count_fail", "cell_count_warn"),
                     ("cone_sampling_fail_px", "cone_sampling_warn_px"),
                     ("mosaic_ring_fail", "mosaic_ring_warn")]
        pairs_high = [
            ("residual_motion_warn_um", "residual_motion_fail_um"),
            ("padded_warn_fraction", "padded_fail_fraction"),
            ("uncertainty_warn_fraction", "uncertainty_fail_fraction"),
            ("density_z_warn", "density_z_fail"),
            ("vessel_fragments_warn", "vessel_fragments_fail"),
        ]
        for lo, hi in pairs_low + pairs_high:
            if getattr(self, lo) > getattr(self, hi):
                raise ValueError(f"QCThresholds: {lo} must be ≤ {hi}; got {getattr(self, lo)} > {getattr(self, hi)}")


@dataclass(frozen=True)
class QCFlag:
    """A raised flag: which check, how bad, the measured value and the threshold it crossed."""

    name: str
    severity: Severity
    value: float
    threshold: float
    message: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class QCCheck:
    """One evaluated check, raised or not (the shape of the metadata DB's ``qc_results``)."""

    name: str
    passed: bool
    severity: Severity | None
    value: float
    threshold: float
    message: str

    def to_dict(self) -> dict:
        return asdict(self)


def _grade(name, value, warn, fail, *, higher_is_worse, what, unit) -> QCCheck:
    bad = (lambda t: value > t) if higher_is_worse else (lambda t: value < t)
    word = "above" if higher_is_worse else "below"
    if bad(fail):
        return QCCheck(name, False, "fail", float(value), float(fail), f"{what} {value:.3g}{unit} is {word} the fail limit {fail:g}{unit}")
    if bad(warn):
        return QCCheck(name, False, "warn", float(value), float(warn), f"{what} {value:.3g}{unit} is {word} the warn limit {warn:g}{unit}")
    return QCCheck(name, True, None, float(value), float(warn), f"{what} {value:.3g}{unit} within limits")


def _explained(c: QCCheck, why: str) -> QCCheck:
    """``c`` with ``why`` added to its message when it did not pass."""
    return c if c.passed else QCCheck(c.name, c.passed, c.severity, c.value, c.threshold, f"{c.message}: {why}")


def qc_checks(
    *,
    snr_db: float | None = None,
    residual_motion_um: float | None = None,
    uncertainty_fraction: float | None = None,
    cell_count: int | None = None,
    density_cells_per_mm2: float | None = None,
    eccentricity_deg: float | None = None,
    registration_ok: bool | None = None,
    vessel_fragment_count: int | None = None,
    cone_spacing_px: float | None = None,
    saccade_ambiguity_um: float | None = None,
    mosaic_ring_strength: float | None = None,
    snr_is_lower_bound: bool = False,
    padded_fraction: float | None = None,
    thresholds: QCThresholds = QCThresholds(),
) -> list[QCCheck]:
    """Evaluate every check whose input is given; see ``qc_flags`` for the parameters."""
    t = thresholds
    out: list[QCCheck] = []
    numeric = {
        "snr_db": snr_db, "residual_motion_um": residual_motion_um,
        "uncertainty_fraction": uncertainty_fraction, "cell_count": cell_count,
        "density_cells_per_mm2": density_cells_per_mm2, "eccentricity_deg": eccentricity_deg,
        "vessel_fragment_count": vessel_fragment_count, "cone_spacing_px": cone_spacing_px,
        "saccade_ambiguity_um": saccade_ambiguity_um, "mosaic_ring_strength": mosaic_ring_strength,
        "padded_fraction": padded_fraction,
    }
    for key, v in numeric.items():
        if v is not None and not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)):
            raise ValueError(f"{key} must be a finite number or None; got {v!r}")
    if snr_db is not None:
        c = _grade("low_snr", snr_db, t.snr_warn_db, t.snr_fail_db, higher_is_worse=False, what="SNR", unit=" dB")
        if snr_is_lower_bound:
            # Only a bound at or above the warn limit is conclusive; below it the true SNR
            # may still be fine (an outer-retina crop: the darkest rows are the ONL), so the
            # check warns that it could not be measured instead of failing.
            why = "no vitreous found above the ILM, so the noise floor was taken from the darkest rows"
            c = QCCheck(c.name, True, None, c.value, c.threshold,
                        f"SNR at least {snr_db:.3g} dB, within limits ({why})") if c.passed else \
                QCCheck(c.name, False, "warn", c.value, t.snr_warn_db,
                        f"SNR could not be measured: at least {snr_db:.3g} dB, below the warn limit "
                        f"{t.snr_warn_db:g} dB ({why}: the depth window starts below the ILM, or the "
                        "inner retina is lost in noise)")
        out.append(c)
    if residual_motion_um is not None:
        out.append(_grade("residual_motion", residual_motion_um, t.residual_motion_warn_um, t.residual_motion_fail_um,
                          higher_is_worse=True, what="residual motion", unit=" µm RMS"))
    if saccade_ambiguity_um is not None:
        # Warn only: the lattice step often repairs the step; the limit is the residual-motion
        # fail limit, the error the unattributed saccade could leave.
        limit = t.residual_motion_fail_um
        ok = saccade_ambiguity_um <= limit
        out.append(QCCheck("unattributed_saccade", ok, None if ok else "warn", float(saccade_ambiguity_um), limit,
                           f"saccade of unknown repeat: the mean frame may be off by {saccade_ambiguity_um:.3g} µm "
                           f"(limit {limit:g} µm); two repeats cannot always tell who moved"
                           if not ok else f"unattributed saccade {saccade_ambiguity_um:.3g} µm within limits"))
    if uncertainty_fraction is not None:
        if not 0 <= uncertainty_fraction <= 1:
            raise ValueError(f"uncertainty_fraction must be in [0, 1]; got {uncertainty_fraction!r}")
        out.append(_grade("high_uncertainty", uncertainty_fraction, t.uncertainty_warn_fraction,
                          t.uncertainty_fail_fraction, higher_is_worse=True, what="uncertain fraction", unit=""))
    if cell_count is not None:
        out.append(_grade("too_few_cells", cell_count, t.cell_count_warn, t.cell_count_fail,
                          higher_is_worse=False, what="cell count", unit=" cells"))
    if density_cells_per_mm2 is not None and eccentricity_deg is not None:
        out.extend(_density_check(density_cells_per_mm2, eccentricity_deg, t))
    if registration_ok is not None:
        ok = bool(registration_ok)
        out.append(QCCheck("registration_failure", ok, None if ok else "fail", float(ok), 1.0,
                           "repeat registration succeeded" if ok else
                           "repeat registration failed: the averaged volume is not one aligned retina"))
    if padded_fraction is not None:
        if not 0 <= padded_fraction <= 1:
            raise ValueError(f"padded_fraction must be in [0, 1]; got {padded_fraction!r}")
        c = _grade("padded_columns", padded_fraction, t.padded_warn_fraction, t.padded_fail_fraction,
                   higher_is_worse=True, what="edge-padded share of the en face image", unit="")
        out.append(_explained(c, "the repeats moved further than the field they were imaged in, so "
                              "the motion correction repeated border columns; cells and vessels near "
                              "the lateral edges there are not tissue"))
    if vessel_fragment_count is not None:
        out.append(_grade("fragmented_vessels", vessel_fragment_count, t.vessel_fragments_warn,
                          t.vessel_fragments_fail, higher_is_worse=True, what="vessel mask components", unit=""))
    if cone_spacing_px is not None:
        out.append(_grade("undersampled_mosaic", cone_spacing_px, t.cone_sampling_warn_px,
                          t.cone_sampling_fail_px, higher_is_worse=False,
                          what="expected cone spacing", unit=" px"))
    if mosaic_ring_strength is not None:
        c = _grade("missing_mosaic", mosaic_ring_strength, t.mosaic_ring_warn, t.mosaic_ring_fail,
                   higher_is_worse=False, what="cone-mosaic ring strength", unit="")
        out.append(_explained(c, "the cone slab shows no mosaic at the spacing expected for this "
                              "location. Likely causes: layers (the IS/OS or COST surface is on another "
                              "band — check the B-scan overlay), registration (misaligned repeats blur "
                              "the cones) or focus (far from the photoreceptors)"))
    return out


def _density_check(density: float, eccentricity_deg: float, t: QCThresholds) -> list[QCCheck]:
    """Cone density vs the norm; no check (empty list) beyond the published norms."""
    from aooct_core.metrics.norms import cone_density_percentile, has_norm, normative_source

    if not has_norm(eccentricity_deg):
        return []
    _, z = cone_density_percentile(density, eccentricity_deg)
    c = _grade("implausible_density", abs(z), t.density_z_warn, t.density_z_fail,
               higher_is_worse=True, what="|z| of density vs norm", unit="")
    detail = f"({density:.0f} cells/mm² at {eccentricity_deg:.1f}°, z = {z:+.2f}; {normative_source(eccentricity_deg)})"
    return [QCCheck(c.name, c.passed, c.severity, c.value, c.threshold, f"{c.message} {detail}")]


def qc_flags(
    *,
    snr_db: float | None = None,
    residual_motion_um: float | None = None,
    uncertainty_fraction: float | None = None,
    cell_count: int | None = None,
    density_cells_per_mm2: float | None = None,
    eccentricity_deg: float | None = None,
    registration_ok: bool | None = None,
    vessel_fragment_count: int | None = None,
    cone_spacing_px: float | None = None,
    saccade_ambiguity_um: float | None = None,
    mosaic_ring_strength: float | None = None,
    snr_is_lower_bound: bool = False,
    padded_fraction: float | None = None,
    thresholds: QCThresholds = QCThresholds(),
) -> list[QCFlag]:
    """Raised QC flags (warn or fail) for the inputs that are given.

    Parameters
    ----------
    snr_db : float, optional
        ``Preprocessed.snr_db``.
    snr_is_lower_bound : bool
        ``Preprocessed.snr_is_lower_bound``: ``snr_db`` is a lower bound (no vitreous in
        view): at or above the warn limit it passes; below, the check warns that the SNR
        could not be measured (it never fails on a bound).
    residual_motion_um : float, optional
        ``Preprocessed.motion.residual_lateral_um_rms``.
    uncertainty_fraction : float, optional
        Fraction (0–1) of detections or mask pixels flagged uncertain by the model.
    cell_count : int, optional
        Detected cells in the field.
    density_cells_per_mm2, eccentricity_deg : float, optional
        Cone density and where it was measured (both needed for the check).
    registration_ok : bool, optional
        ``Preprocessed.registration_ok``.
    vessel_fragment_count : int, optional
        ``capillary_metrics(...)["fragment_count"].value``.
    cone_spacing_px : float, optional
        Normative cone spacing at the eccentricity (``normative_cone_spacing_um``) divided
        by the coarser en face pixel size, px.
    saccade_ambiguity_um : float, optional
        ``Preprocessed.motion.saccade_ambiguity_um`` (two repeats); warns above the
        residual-motion fail limit.
    mosaic_ring_strength : float, optional
        ``aooct_core.metrics.mosaic_spectrum.mosaic_ring_strength`` of the cone slab at the
        normative spacing: a cone mosaic's Yellott ring over its spectral background.
    padded_fraction : float, optional
        ``Preprocessed.padded_fraction``: share of the en face image in edge-padded columns.
    thresholds : QCThresholds
        Warn/fail limits.

    Returns
    -------
    list of QCFlag
        Empty when every evaluated check passes.

    Examples
    --------
    >>> [f.name for f in qc_flags(snr_db=8.0, registration_ok=True)]
    ['low_snr']
    """
    checks = qc_checks(
        snr_db=snr_db, residual_motion_um=residual_motion_um, uncertainty_fraction=uncertainty_fraction,
        cell_count=cell_count, density_cells_per_mm2=density_cells_per_mm2, eccentricity_deg=eccentricity_deg,
        registration_ok=registration_ok, vessel_fragment_count=vessel_fragment_count,
        cone_spacing_px=cone_spacing_px, saccade_ambiguity_um=saccade_ambiguity_um,
        mosaic_ring_strength=mosaic_ring_strength, snr_is_lower_bound=snr_is_lower_bound,
        padded_fraction=padded_fraction, thresholds=thresholds,
    )
    return [QCFlag(c.name, c.severity, c.value, c.threshold, c.message) for c in checks if not c.passed]
