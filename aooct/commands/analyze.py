"""``aooct analyze``: cells, capillaries and nerve fiber bundles from images, volumes or cases.

Contract (stable; outside tools rely on it)
-------------------------------------------
``aooct analyze INPUT... --out OUT [--um-per-px F] [--target cones|rpe|capillaries|nfl|all]``

* ``INPUT`` — any mix of case folders (with ``case.json``), volume files (3-D ``.tif``/``.tiff``,
  ``.npy``, ``.dcm``), 2-D en face images (``.tif``/``.tiff``/``.png``/``.npy``) and folders of
  en face images (each image is one input). All inputs are analysed in ONE process; each
  model is loaded once.
* For each input, ``OUT/<input name without extension>/`` receives:

  - ``detections.csv`` — header ``row,col``; 0-based float pixel coordinates of the detected
    cell centres in the en face frame: the image itself for images, (B-scan, A-line) of the
    first volume for volumes and cases (preprocessing registers to repeat 0). These are the
    cones, or the RPE cells when ``--target rpe``; with ``--target all`` the RPE cells go to
    ``detections_rpe.csv``.
  - ``vessels.png`` — binary capillary mask (0/255, 8-bit), when capillaries are analysed.
  - ``metrics.json`` — keys where they apply: ``cone_count``, ``cone_density_cells_per_mm2``,
    ``cone_density_ci95`` ``[lo, hi]``, ``nnd_um_mean``, ``rpe_count``,
    ``capillary_area_density``, ``capillary_mean_diameter_um``, ``qc_flags`` (list of
    ``{name, severity, value, threshold, message}``), plus ``input``, ``kind``,
    ``um_per_px``, ``model_versions``, ``uncertainty`` and ``notes``. Physical metrics need
    a pixel size: from ``--um-per-px``, the case geometry, the file or its sidecar JSON;
    without one they are omitted and ``notes`` says so.
  - ``nfl.png`` — binary nerve-fiber-bundle mask, when NFL is analysed (extra file).
  - ``surfaces.npz`` — volumes and cases: arrays ``ILM``, ``ISOS``, ``COST``, ``RPE``, float32
    (n_bscans, n_alines), depth in px of the first volume at each (B-scan, A-line) — the
    frame of ``detections.csv``.
* Extra options (not part of the stable contract): ``--backend torch|onnx|tensorrt``,
  ``--device cpu|cuda|cuda:N``, ``--denoise nl_means|bm4d`` (single-volume speckle denoiser of
  ``aooct_core.preprocessing.denoise``, CPU; for volumes and cases the RPE, NFL and SVP slabs
  come from the denoised average, for en face images the image is denoised for the RPE,
  capillary and NFL targets; cones are never denoised; ``metrics.json`` gets ``denoise``).
  Uncertainty is always estimated by test-time augmentation (the identity, two mirror flips
  and a 180° rotation); its QC summary is in ``metrics.json["uncertainty"]``.
* Volumes and cases are preprocessed with ``aooct_core.preprocessing.preprocess_case``
  (reference repeat 0). Cone images sampled closer than 5 px per cone are resampled for
  detection (spacing from the normative density at the case's eccentricity, or from the
  image's power spectrum) and the points are mapped back to the input's pixel frame.
* ``--target`` default: ``all`` for cases and volumes (cones on IS/OS, RPE on the RPE slab,
  capillaries on the structural SVP slab, NFL on the NFL slab); ``cones`` for en face images.
* The analysis is :func:`ml.recipe.analyze_case`, the recipe the platform's assets run, so a
  case gives the same detections and metrics here and in the pipeline (its docstring gives
  the choices: IS/OS for cones, a 14 µm RPE spacing prior, vessel images resampled into the
  model's trained pixel sizes, an empty detection counting as fully uncertain).
* Outputs of an input are written to a temporary folder and renamed into place, so a
  failed input never leaves half-written results. A failing input prints one line
  ``aooct: error: <input>: <problem>`` on stderr; the other inputs are still processed and
  the command exits non-zero (2) at the end.
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import typer

from aooct.errors import CliError
from ml.recipe import SLAB_OF

TARGETS = ("cones", "rpe", "capillaries", "nfl", "all")
#: Layer surfaces written to ``surfaces.npz`` for volumes and cases (depth px of volume 0).
SURFACES_NPZ = ("ILM", "ISOS", "COST", "RPE")
_IMAGE_SUFFIXES = {".tif", ".tiff", ".png", ".npy", ".jpg", ".jpeg", ".bmp"}
_VOLUME_ONLY = {".dcm"}


def _kind_of(path: Path) -> str:
    """"case", "folder", "volume" or "image" for one INPUT path."""
    if path.is_dir():
        return "case" if (path / "case.json").is_file() else "folder"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    suffix = path.suffix.lower()
    if suffix in _VOLUME_ONLY:
        return "volume"
    if suffix in (".tif", ".tiff"):
        import tifffile
        with tifffile.TiffFile(path) as tf:
            n_pages = len(tf.pages)
            shape = tf.series[0].shape if tf.series else ()
        squeezed = [s for s in shape if s > 1]
        rgb = len(squeezed) == 3 and squeezed[-1] in (3, 4)
        return "volume" if (n_pages > 1 or len(squeezed) == 3) and not rgb else "image"
    if suffix == ".npy":
        arr = np.load(path, mmap_mode="r")
        return "volume" if arr.ndim == 3 and arr.shape[-1] not in (3, 4) else "image"
    if suffix in _IMAGE_SUFFIXES:
        return "image"
    raise ValueError(f"{path}: unsupported file type {suffix!r}; give a case folder, a volume "
                     "(.tif/.npy/.dcm), an en face image (.tif/.png/.npy) or a folder of images")


def _expand(inputs: list[Path]) -> list[tuple[Path, str]]:
    """(path, kind, or ``"error:<message>"`` when it could not be determined) per input.

    Probing reads file headers with third-party parsers; whatever one of them raises on a
    malformed file is reported for that input (with its type), never aborting the batch.
    """
    out = []
    for path in inputs:
        try:
            kind = _kind_of(path)
        except (OSError, ValueError) as exc:
            out.append((path, f"error:{exc}"))
            continue
        except Exception as exc:  # noqa: BLE001 - a parser's own error on a malformed file
            out.append((path, f"error:{path}: could not be read ({type(exc).__name__}: {exc})"))
            continue
        if kind == "folder":
            files = sorted(p for p in path.iterdir()
                           if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES)
            if not files:
                out.append((path, f"error:{path}: folder holds no case.json and no images"))
            out += [(p, "image") for p in files]
        else:
            out.append((path, kind))
    return out


def _targets_for(target: str | None, kind: str) -> list[str]:
    if target is None:
        target = "cones" if kind == "image" else "all"
    return ["cones", "rpe", "capillaries", "nfl"] if target == "all" else [target]


def _enface_for_volume(volumes: np.ndarray, geometry, denoise: str | None,
                       scale: str = "auto") -> tuple[dict, dict, dict]:
    """Preprocess (registered to repeat 0) → (en face slabs, surfaces, QC inputs).

    ``scale``: how the volumes are stored (case.json ``intensity_scale``), or "auto" to tell
    it from the speckle, as the platform does.
    """
    from aooct_core.preprocessing import preprocess_case
    pre = preprocess_case(volumes, geometry, reference=0, denoise=denoise, scale=scale)
    surfaces = {k: np.asarray(pre.surfaces_px[k], np.float32) for k in SURFACES_NPZ}
    qc = {"snr_db": float(pre.snr_db), "snr_is_lower_bound": bool(pre.snr_is_lower_bound),
          "registration_ok": bool(pre.registration_ok),
          "residual_motion_um": float(pre.motion.residual_lateral_um_rms),
          "saccade_ambiguity_um": float(pre.motion.saccade_ambiguity_um),
          "padded_fraction": float(pre.padded_fraction)}
    # NaN = not measurable (e.g. residual motion of a single volume): leave the check out.
    qc = {k: v for k, v in qc.items() if not (isinstance(v, float) and not np.isfinite(v))}
    return dict(pre.enface), surfaces, qc


def _unmeasured_notes(qc: dict) -> list[str]:
    # Unmeasured is not the same as good: say so, as the pipeline's QC does.
    notes = []
    if "residual_motion_um" not in qc:
        notes.append("residual lateral motion not measurable (a single volume has no repeat to compare "
                     "with): the residual_motion QC check was not run")
    if qc.get("snr_is_lower_bound"):
        notes.append("no vitreous above the ILM in the depth window: the SNR is a lower bound (the "
                     "noise floor taken from the darkest retinal rows) and the ILM is not reported")
    return notes


def _load_input(path: Path, kind: str, um_per_px: float | None, denoise: str | None = None) -> dict:
    """Read one input → {"slabs": {slab: image}, "surfaces", "um_per_px", "qc", "notes",
    "eccentricity_deg"}; slabs are named as ``ml.recipe.SLAB_OF`` expects them."""
    from aooct_core.geometry import Geometry, eccentricity_deg
    from aooct_core.io import load_case, probe_volume, read_enface, read_volume
    notes: list[str] = []
    if kind == "image":
        enf = read_enface(path, um_per_px=um_per_px)
        img = enf.image
        smooth = img
        if denoise is not None:
            from aooct_core.preprocessing import denoise_volume
            smooth = denoise_volume(img, method=denoise)
        # Cones are never denoised: the filter smooths away a mosaic near Nyquist sampling.
        slabs = {SLAB_OF["cones"]: img, **{SLAB_OF[t]: smooth for t in ("rpe", "capillaries", "nfl")}}
        return {"slabs": slabs, "surfaces": None, "um_per_px": enf.um_per_px, "qc": {},
                "notes": notes, "eccentricity_deg": None}
    if kind == "case":
        case = load_case(path)
        geometry = case.geometry
        if um_per_px is not None:
            geometry = Geometry(um_per_px, geometry.depth_um_per_px, um_per_px)
        slabs, surfaces, qc = _enface_for_volume(
            case.volumes(), geometry, denoise, case.acquisition.extra.get("intensity_scale") or "auto")
        notes += _unmeasured_notes(qc)
        return {"slabs": slabs, "surfaces": surfaces, "um_per_px": geometry.enface_um_per_px,
                "qc": qc, "notes": notes,
                "eccentricity_deg": eccentricity_deg(case.acquisition.location_deg)}
    info = probe_volume(path)
    spacing = dict(info.spacing_um)
    depth = spacing.get("depth")
    if depth is None:
        depth = 2.0
        notes.append("depth_um_per_px not in the file: assumed 2.0 µm/px for the slab limits")
    lateral = um_per_px or (spacing.get("bscan") and spacing.get("aline")
                            and (spacing["bscan"], spacing["aline"]))
    if not lateral:
        notes.append("lateral µm/px unknown (pass --um-per-px): physical metrics omitted")
    notes.append("retinal eccentricity unknown for a bare volume: cone spacing taken from the "
                 "image spectrum when it shows a clear mosaic ring; use a case folder for the "
                 "normative spacing at the case's location")
    pair = (lateral, lateral) if isinstance(lateral, (int, float)) else lateral
    # Preprocessing needs a lateral scale for its search windows only; 1 µm/px is used when
    # none is known and no physical metric is reported from it.
    geometry = Geometry(float(pair[0]) if pair else 1.0, float(depth), float(pair[1]) if pair else 1.0)
    slabs, surfaces, qc = _enface_for_volume(read_volume(path)[None], geometry, denoise)
    notes += _unmeasured_notes(qc)
    return {"slabs": slabs, "surfaces": surfaces, "um_per_px": tuple(pair) if pair else None,
            "qc": qc, "notes": notes, "eccentricity_deg": None}


def _write_png(path: Path, mask: np.ndarray) -> None:
    from PIL import Image
    Image.fromarray((np.asarray(mask, bool) * 255).astype(np.uint8)).save(path)


def _write_csv(path: Path, points_rc: np.ndarray) -> None:
    with open(path, "w") as fh:
        fh.write("row,col\n")
        for r, c in np.asarray(points_rc, np.float64).reshape(-1, 2):
            fh.write(f"{r:.3f},{c:.3f}\n")


def analyze_one(path: Path, kind: str, out_dir: Path, *, target: str | None,
                um_per_px: float | None, backend: str, device: str, denoise: str | None = None) -> Path:
    """Analyse one input with :func:`ml.recipe.analyze_case` and move its results
    atomically into ``out_dir/<name>``."""
    from ml.recipe import MIN_CELLS_FOR_METRICS, analyze_case
    data = _load_input(path, kind, um_per_px, denoise)
    um = data["um_per_px"]
    targets = _targets_for(target, kind)
    res = analyze_case(data["slabs"], um_per_px=um, eccentricity_deg=data["eccentricity_deg"],
                       qc_inputs=data["qc"], targets=targets, backend=backend, device=device,
                       from_volume=kind != "image")
    metrics: dict = {"input": str(path), "kind": kind,
                     "um_per_px": list(um) if um else None,
                     "model_versions": {t: r.model_version for t, r in res.structures.items()},
                     "uncertainty": {t: r.uncertainty for t, r in res.structures.items()},
                     "notes": data["notes"] + res.notes, "denoise": denoise}
    if um is None:
        metrics["notes"].append("µm/px unknown (pass --um-per-px or a sidecar JSON): "
                                "physical metrics omitted")
    name = output_name(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=out_dir))
    try:
        if data["surfaces"] is not None:
            with open(tmp / "surfaces.npz", "wb") as fh:
                np.savez(fh, **data["surfaces"])
        for t in ("cones", "rpe"):
            if t in res.structures:
                csv_name = "detections_rpe.csv" if (t == "rpe" and "cones" in targets) else "detections.csv"
                _write_csv(tmp / csv_name, res.structures[t].points_rc)
                metrics[f"{'cone' if t == 'cones' else 'rpe'}_count"] = res.structures[t].numbers["count"]
        if "cones" in res.metrics and metrics["cone_count"] >= MIN_CELLS_FOR_METRICS:
            mm = res.metrics["cones"]
            density = mm["density_cells_per_mm2"]
            metrics["cone_density_cells_per_mm2"] = float(density.value)
            metrics["cone_density_ci95"] = [density.ci_low, density.ci_high]
            metrics["nnd_um_mean"] = float(mm["nnd_um_mean"].value)
        if "capillaries" in res.structures:
            _write_png(tmp / "vessels.png", res.structures["capillaries"].mask)
            if "capillaries" in res.metrics:
                cm = res.metrics["capillaries"]
                metrics["capillary_area_density"] = float(cm["area_density"].value)
                metrics["capillary_mean_diameter_um"] = float(cm["mean_diameter_um"].value)
        if "nfl" in res.structures:
            _write_png(tmp / "nfl.png", res.structures["nfl"].mask)
        metrics["qc_flags"] = [{"name": f.name, "severity": f.severity, "value": f.value,
                                "threshold": f.threshold, "message": f.message} for f in res.qc_flags]
        (tmp / "metrics.json").write_text(json.dumps(_finite_or_null(metrics), indent=2,
                                                     default=_json_default, allow_nan=False))
        final = out_dir / name
        _replace_dir(tmp, final)
        return final
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _finite_or_null(obj):
    """NaN/inf → None so that metrics.json is strict JSON (a metric that is undefined, e.g.
    the mean diameter of an empty mask, is reported as null, never as a made-up number)."""
    if isinstance(obj, dict):
        return {k: _finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_null(v) for v in obj]
    if isinstance(obj, (float, np.floating)) and not np.isfinite(obj):
        return None
    return obj


def _json_default(obj):
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, np.bool_):
        return bool(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def output_name(path: Path) -> str:
    """The name of an input's result folder: the file's stem, or the folder's own name.

    The path is resolved first, so ``.``, ``..`` and ``case/`` name the folder they point at
    (``Path(".").name`` is empty, which once made the whole output folder one input's
    result folder and deleted it on the next run).

    Raises
    ------
    ValueError
        For an input without a name (the file-system root).
    """
    resolved = path.resolve()
    name = resolved.stem if resolved.is_file() else resolved.name
    if not name or name in (".", "..") or name.startswith("."):
        raise ValueError(f"{path}: cannot name a result folder after it (resolved to "
                         f"{resolved}); give the case folder by its own name")
    return name


def _is_our_result(folder: Path) -> bool:
    """True when ``folder`` looks like an earlier ``aooct analyze`` result of one input."""
    if not folder.is_dir() or folder.is_symlink() or not (folder / "metrics.json").is_file():
        return False
    allowed = {"metrics.json", "detections.csv", "detections_rpe.csv", "vessels.png", "nfl.png",
               "surfaces.npz"}
    return all(p.is_file() and p.name in allowed for p in folder.iterdir())


def _replace_dir(tmp: Path, final: Path) -> None:
    """Move ``tmp`` to ``final``; an older ``final`` is removed only after the swap.

    Only an earlier result of this command is ever replaced: a folder (or file) of that name
    holding anything else is refused, so a mistyped ``--out`` never deletes a user's data.
    """
    if final.resolve() == tmp.parent.resolve() or tmp.parent.resolve() not in final.resolve().parents:
        raise ValueError(f"{final}: result folder would not be inside the output folder {tmp.parent}")
    old = None
    if final.exists() or final.is_symlink():
        if not _is_our_result(final):
            raise ValueError(f"{final} already exists and is not an aooct analyze result "
                             "(it holds other files); move it away or choose another --out")
        old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old.", dir=final.parent))
        final.rename(old / final.name)
    tmp.rename(final)
    if old is not None:
        shutil.rmtree(old)


def analyze(
    inputs: list[Path] = typer.Argument(..., help="Case folders, volume files, en face images or folders of images."),
    out: Path = typer.Option(..., "--out", help="Output folder; one sub-folder per input."),
    um_per_px: float = typer.Option(None, "--um-per-px", help="Lateral pixel size in µm (overrides the input's)."),
    target: str = typer.Option(None, "--target",
                               help="cones|rpe|capillaries|nfl|all (default: all for cases/volumes, cones for images)."),
    backend: str = typer.Option("torch", "--backend", help="Inference backend: torch|onnx|tensorrt."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or cuda:N."),
    denoise: str = typer.Option(None, "--denoise",
                                help="nl_means|bm4d: speckle denoiser for the RPE, capillary and NFL "
                                     "images (CPU; off by default; cones never)."),
) -> None:
    """Detect cells and segment vessels/nerve fibers; write detections.csv, vessels.png, metrics.json."""
    if target is not None and target not in TARGETS:
        raise CliError(f"--target must be one of {'|'.join(TARGETS)}; got {target!r}")
    from aooct_core.preprocessing.denoise import DENOISE_METHODS
    if denoise is not None and denoise not in DENOISE_METHODS:
        raise CliError(f"--denoise must be one of {'|'.join(DENOISE_METHODS)}; got {denoise!r}")
    if um_per_px is not None and not (np.isfinite(um_per_px) and um_per_px > 0):
        raise CliError(f"--um-per-px must be a positive number of µm; got {um_per_px}")
    from ml.backends import BACKENDS
    from ml.recipe import check_device
    if backend not in BACKENDS:
        raise CliError(f"--backend must be one of {'|'.join(BACKENDS)}; got {backend!r}")
    try:  # refused here, before any input is read, not once per input
        device = check_device(device)
    except ValueError as exc:
        raise CliError(f"--device: {exc}") from exc
    out.mkdir(parents=True, exist_ok=True)
    failures, seen = 0, set()
    for path, kind in _expand(list(inputs)):
        try:
            if kind.startswith("error:"):
                raise ValueError(kind[len("error:"):])
            name = output_name(path)
            if name in seen:
                raise ValueError(f"another input already wrote {out / name}; rename one of them")
            seen.add(name)
            final = analyze_one(path, kind, out, target=target, um_per_px=um_per_px,
                                backend=backend, device=device, denoise=denoise)
            print(f"{path}: ok → {final}")
        except Exception as exc:  # noqa: BLE001 - reported per input; the run fails at the end
            failures += 1
            detail = str(exc) if isinstance(exc, (ValueError, OSError)) else f"{type(exc).__name__}: {exc}"
            # Reader errors already start with the file name; do not say it twice.
            where = "" if detail.startswith(str(path)) else f"{path}: "
            print(f"aooct: error: {where}{detail}", file=sys.stderr)
    if failures:
        raise CliError(f"{failures} input(s) failed; see the errors above")


def register(app: typer.Typer) -> None:
    """Add the ``analyze`` command to the ``aooct`` app."""
    app.command(name="analyze")(analyze)
