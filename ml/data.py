"""Dataset readers for the annotated sets in ``../shared/data`` and synthetic en face images.

Every sample carries its ``subject_id`` so that evaluation can hold out whole subjects.
Point coordinates are converted from the published 1-based ``(x=col, y=row)`` to 0-based
``(row, col)`` float pixels. Images are returned as float32, robustly normalised with
:func:`normalize_image` (the same function inference uses).

Subject ids: cone sets — the file-name prefix before the second underscore
(``JC_0007_BL_...`` → ``JC_0007``); RPE — the folder name (``roi/0201`` → ``0201``,
``iu/S1`` → ``iu-S1``, ``full-fov/0201`` → ``0201``, the same eye as ``roi/0201``); ROSSA —
one pseudo-subject per image (the published train/val split is used as given).
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aooct_core.phantom.truth_masks import capillary_truth_mask  # noqa: F401  (public here too)

__all__ = [
    "Sample", "shared_data_root", "normalize_image", "load_cone_set", "load_rpe_set",
    "load_rossa", "subject_id_from_name", "split_by_subject", "synthetic_nfl_samples",
    "phantom_cone_samples", "phantom_capillary_samples", "capillary_truth_mask",
    "ROSSA_UM_PER_PX",
]

#: ROSSA images are 3×3 mm OCTA scans (OCTA-500 / ROSE class) stored at 320×320 px; the
#: published set gives no per-image pixel size, so this nominal 3000 µm / 320 px is used.
ROSSA_UM_PER_PX = 3000.0 / 320.0


@dataclass
class Sample:
    """One annotated en face image.

    Attributes
    ----------
    image : ndarray, float32 (row, col)
        Normalised image (see :func:`normalize_image`).
    subject_id : str
        Subject the image belongs to (for subject-level splits).
    name : str
        File stem, unique within its set.
    points_rc : ndarray float32 (N, 2) or None
        0-based ``(row, col)`` cell centres (cell tasks).
    mask : ndarray bool (row, col) or None
        Binary mask (vessel / NFL tasks).
    orientation_rad : ndarray float32 (row, col) or None
        Bundle orientation in radians, in ``[0, π)`` (NFL task).
    um_per_px : float or None
        Lateral pixel size when published.
    modality : str
        e.g. "confocal", "split-detector", "aooct-rpe", "octa", "synthetic-nfl".
    """

    image: np.ndarray
    subject_id: str
    name: str
    points_rc: np.ndarray | None = None
    mask: np.ndarray | None = None
    orientation_rad: np.ndarray | None = None
    um_per_px: float | None = None
    modality: str = ""
    extra: dict = field(default_factory=dict)


def shared_data_root() -> Path:
    """``$AOOCT_SHARED_DATA`` or ``<repo>/../shared/data`` (may not exist)."""
    repo = Path(__file__).resolve().parents[1]
    return Path(os.environ.get("AOOCT_SHARED_DATA", repo.parent / "shared" / "data"))


def normalize_image(image: np.ndarray) -> np.ndarray:
    """Robustly scale an en face image to about [0, 1] (1st–99.5th percentile), float32.

    Works the same for 8-bit AOSLO frames and linear-intensity AO-OCT projections, so
    that one network sees comparable contrast whatever the source. Non-finite pixels
    raise, because they would silently poison every convolution.
    """
    arr = np.asarray(image, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"en face image must be 2-D (row, col); got shape {arr.shape} — "
                         "pass a single en face slab, not a volume or an RGB image")
    if not np.all(np.isfinite(arr)):
        raise ValueError("en face image contains NaN or inf pixels; fill or crop them first")
    lo, hi = np.percentile(arr, [1.0, 99.5])
    if hi - lo <= 1e-12:
        return np.zeros(arr.shape, np.float32)
    return np.clip((arr - lo) / (hi - lo), -0.5, 1.5).astype(np.float32)


def subject_id_from_name(name: str) -> str:
    """Prefix before the second underscore (``JC_0007_BL_0.08`` → ``JC_0007``)."""
    parts = name.split("_")
    return "_".join(parts[:2]) if len(parts) >= 2 else name


def _read_image(path: Path) -> np.ndarray:
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile
        return np.asarray(tifffile.imread(path))
    from skimage import io as skio
    img = np.asarray(skio.imread(path))
    return img[..., 0] if img.ndim == 3 else img


def _read_points(path: Path) -> np.ndarray:
    """Read 1-based (x, y) points (tab/comma separated, optional header) → 0-based (row, col)."""
    rows = []
    text = path.read_text().replace("\t", ",").splitlines()
    for line in csv.reader(text):
        if not line or not line[0].strip():
            continue
        try:
            x, y = float(line[0]), float(line[1])
        except ValueError:
            continue  # header line such as "x_col,y_row"
        rows.append((y - 1.0, x - 1.0))
    return np.asarray(rows, np.float32).reshape(-1, 2)


def _um_table(path: Path) -> dict[str, float]:
    table = {}
    if path.exists():
        for line in csv.reader(path.read_text().splitlines()):
            if len(line) >= 2:
                try:
                    table[line[0].strip()] = float(line[1])
                except ValueError:
                    continue
    return table


def load_cone_set(modality: str, *, root: Path | None = None) -> list[Sample]:
    """Load the AOSLO cone set ``"confocal"`` or ``"split-detector"``."""
    if modality not in ("confocal", "split-detector"):
        raise ValueError(f"modality must be 'confocal' or 'split-detector'; got {modality!r}")
    base = (root or shared_data_root()) / "aoslo-cones" / modality
    if not base.is_dir():
        raise FileNotFoundError(f"{base} not found — set AOOCT_SHARED_DATA to the data folder")
    um = _um_table(base / "um_per_px.csv")
    suffix = "_manualcoord.txt" if modality == "confocal" else "_coords.csv"
    samples = []
    for img_path in sorted((base / "images").glob("*.tif")):
        coord = base / "manual-coords" / (img_path.stem + suffix)
        if not coord.exists():
            raise FileNotFoundError(f"{coord} missing for {img_path.name}")
        sid = subject_id_from_name(img_path.stem)
        samples.append(Sample(image=normalize_image(_read_image(img_path)), subject_id=sid,
                              name=img_path.stem, points_rc=_read_points(coord),
                              um_per_px=um.get(sid), modality=modality))
    return samples


def load_rpe_set(*, root: Path | None = None, include_full_fov: bool = True) -> list[Sample]:
    """Load the AO-OCT RPE set: ``roi/<subject>``, ``iu/S*`` and ``full-fov`` (N=90 only)."""
    base = (root or shared_data_root()) / "aooct-rpe"
    if not base.is_dir():
        raise FileNotFoundError(f"{base} not found — set AOOCT_SHARED_DATA to the data folder")
    samples = []
    for group in ("roi", "iu", "full-fov"):
        if group == "full-fov" and not include_full_fov:
            continue
        for sub in sorted(p for p in (base / group).iterdir() if p.is_dir()):
            sid = f"iu-{sub.name}" if group == "iu" else sub.name
            for cells in sorted(sub.glob("*_cells.csv")):
                img_path = cells.with_name(cells.name[: -len("_cells.csv")] + ".tif")
                samples.append(Sample(image=normalize_image(_read_image(img_path)),
                                      subject_id=sid, name=f"{group}-{sub.name}-{img_path.stem}",
                                      points_rc=_read_points(cells), modality="aooct-rpe",
                                      extra={"group": group}))
    return samples


def load_rossa(split: str, *, root: Path | None = None) -> list[Sample]:
    """Load the ROSSA OCTA set, ``split`` = "train" or "val"."""
    base = (root or shared_data_root()) / "octa-vessels" / split
    if not base.is_dir():
        raise FileNotFoundError(f"{base} not found — set AOOCT_SHARED_DATA to the data folder")
    samples = []
    for img_path in sorted((base / "image").glob("*.png"), key=lambda p: int(p.stem)):
        label = _read_image(base / "label" / img_path.name) > 127
        samples.append(Sample(image=normalize_image(_read_image(img_path)),
                              subject_id=f"rossa-{split}-{img_path.stem}", name=img_path.stem,
                              mask=label, um_per_px=ROSSA_UM_PER_PX, modality="octa"))
    return samples


def split_by_subject(samples: list[Sample], holdout: set[str]) -> tuple[list[Sample], list[Sample]]:
    """Split samples into (train, held-out) by subject id; raises if a subject is unknown."""
    known = {s.subject_id for s in samples}
    missing = set(holdout) - known
    if missing:
        raise ValueError(f"held-out subjects {sorted(missing)} are not in the set {sorted(known)}")
    train = [s for s in samples if s.subject_id not in holdout]
    test = [s for s in samples if s.subject_id in holdout]
    return train, test


def synthetic_nfl_samples(n: int, *, seed: int, shape: tuple[int, int] = (128, 128)) -> list[Sample]:
    """Synthetic en face NFL images: bright, slowly curving striated bundles on speckle.

    There is no annotated AO-OCT nerve-fibre set, so the NFL head is trained on these
    (and on phantom slabs when available). Each image has a smooth orientation field
    (a rotated arc family), bundles of 4–15 px width, and multiplicative speckle.
    """
    from scipy import ndimage as ndi
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    samples = []
    for i in range(n):
        # Bundles follow arcs around a far-away centre: orientation varies slowly.
        theta0 = rng.uniform(0, np.pi)
        radius = rng.uniform(150, 1500)
        cr = shape[0] / 2 + radius * np.cos(theta0)
        cc = shape[1] / 2 + radius * np.sin(theta0)
        dist = np.hypot(rows - cr, cols - cc)
        period = rng.uniform(10, 24)
        duty = rng.uniform(0.35, 0.65)
        rng.uniform(0, 1)  # unused phase draw, kept so the published seeds stay identical
        wobble = ndi.gaussian_filter(rng.normal(size=shape), 12) * 6
        mask = ((dist + wobble) / period) % 1.0 < duty
        # In half of the images some bundles end (gaps), so the mask is not a pure grating.
        gaps = ndi.gaussian_filter(rng.normal(size=shape), 10) > rng.uniform(0.1, 0.3)
        if rng.random() < 0.5:
            mask &= ~gaps
        # Bundle axis ⟂ the radius from the arc centre; angle from +col towards +row, mod π.
        orientation = np.mod(np.arctan2(rows - cr, cols - cc) + np.pi / 2, np.pi)
        contrast = rng.uniform(0.3, 1.0)
        img = 0.3 + contrast * ndi.gaussian_filter(mask.astype(float), rng.uniform(0.8, 2.0))
        img = img * rng.gamma(rng.uniform(2, 8), 1.0, size=shape) / 4.0
        img = ndi.gaussian_filter(img, 0.7)
        samples.append(Sample(image=normalize_image(img), subject_id=f"synthetic-{seed}-{i}",
                              name=f"nfl-{seed}-{i}", mask=mask,
                              orientation_rad=orientation.astype(np.float32),
                              modality="synthetic-nfl"))
    return samples


def phantom_cone_samples(seeds: list[int], **phantom_kwargs) -> list[Sample]:
    """IS/OS en face images of motion-free :func:`aooct_core.phantom.make_phantom` cases.

    The image is the repeat-averaged depth-mean over the IS/OS ± 2 px band taken from the
    phantom's own surfaces, with eye motion switched off so that the truth frame and the
    image frame coincide: this tests the detector, not the registration. ``points_rc``
    are the cones that are present (absent cones removed); ``extra`` keeps every lattice
    cone with its state ("normal", "dim", "absent"). Raises ImportError without the phantom.
    """
    from aooct_core.phantom import make_phantom  # noqa: PLC0415 - optional dependency
    samples = []
    for seed in seeds:
        ph = make_phantom(seed=seed, **{"motion_scale": 0.0, **phantom_kwargs})
        vol = ph.volumes.astype(np.float32).mean(axis=0)
        isos = ph.surfaces_px["ISOS"]
        depth = np.arange(vol.shape[1])[None, :, None]
        band = np.abs(depth - isos[:, None, :]) <= 2.0
        enface = (vol * band).sum(axis=1) / np.maximum(band.sum(axis=1), 1)
        cones = ph.truth["cones"]
        pts = np.asarray(cones["positions_rc"], np.float32).reshape(-1, 2)
        refl = np.asarray(cones["reflectivity"], float)
        flagged = np.asarray(cones["missing"], bool)
        state = np.where(~flagged, "normal", np.where(refl > 0, "dim", "absent"))
        samples.append(Sample(image=normalize_image(enface), subject_id=f"phantom-{seed}",
                              name=f"phantom-{seed}", points_rc=pts[state != "absent"],
                              um_per_px=float(np.mean(ph.geometry.enface_um_per_px)),
                              modality="phantom",
                              extra={"all_points_rc": pts, "state": state,
                                     "um_per_px_rc": ph.geometry.enface_um_per_px,
                                     "eccentricity_deg": float(ph.truth["eccentricity_deg"]),
                                     "truth_density": float(cones["true_density_cells_per_mm2"]),
                                     "phantom": ph}))
    return samples


def phantom_capillary_samples(seeds: list[int], *, slab: str = "svp", vary: bool = True,
                              shape_px: tuple[int, int, int] = (128, 256, 128),
                              **phantom_kwargs) -> list[Sample]:
    """Superficial-plexus en face slabs of phantom cases with their true capillary masks.

    Each seed gives one :func:`aooct_core.phantom.make_phantom` case (with eye motion),
    run through :func:`aooct_core.preprocessing.preprocess_case` exactly as the pipeline
    does, and the slab ``slab`` of ``Preprocessed.enface`` ("svp": structural SVP slab —
    the only one in which the phantom's capillaries are visible; "octa_svp": motion
    contrast) is the image. The mask is the SVP truth rasterised by
    :func:`capillary_truth_mask` in the motion-free frame, which the motion-corrected
    frame approximates (residual lateral motion ≲ 1 px). With ``vary=True`` each seed also
    draws its eccentricity (1–6° temporal), field (0.5–1.5°, i.e. ≈ 1.1–3.4 µm/px at
    128 px), SNR (25–40 dB) and repeats (2–6) from ``default_rng(seed)``.
    Raises ImportError without the phantom package.
    """
    from aooct_core.phantom import make_phantom  # noqa: PLC0415 - optional dependency
    from aooct_core.preprocessing import preprocess_case  # noqa: PLC0415
    samples = []
    for seed in seeds:
        kw = dict(phantom_kwargs)
        if vary:
            rng = np.random.default_rng(seed)
            field = float(rng.uniform(0.5, 1.5))
            kw = {"location_deg": (float(rng.uniform(1.0, 6.0)), 0.0),
                  "scan_field_deg": (field, field), "snr_db": float(rng.uniform(25.0, 40.0)),
                  "n_repeats": int(rng.integers(2, 7)), **kw}
        ph = make_phantom(seed=seed, shape_px=shape_px, **kw)
        pre = preprocess_case(ph.volumes, ph.geometry)
        if slab not in pre.enface:
            raise ValueError(f"slab {slab!r} not in {sorted(pre.enface)}; pick one of those")
        image = pre.enface[slab]
        um_rc = tuple(float(u) for u in ph.geometry.enface_um_per_px)
        mask = capillary_truth_mask(ph.truth["vessels"], image.shape, um_rc, plexus="SVP")
        samples.append(Sample(image=normalize_image(image), subject_id=f"phantom-{seed}",
                              name=f"phantom-{seed}-{slab}", mask=mask,
                              um_per_px=float(np.mean(um_rc)), modality=f"phantom-{slab}",
                              extra={"um_per_px_rc": um_rc, "slab": slab,
                                     "eccentricity_deg": float(ph.truth["eccentricity_deg"]),
                                     "truth_area_fraction": float(mask.mean())}))
    return samples
