"""``aooct phantom OUT --seed N``: write a ground-truth AO-OCT phantom case folder."""
from __future__ import annotations

from pathlib import Path

import typer

from aooct.errors import CliError


def _floats(text: str, *, n: int, option: str, example: str) -> tuple[float, ...]:
    parts = [p.strip() for p in text.replace("x", ",").split(",")]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != n:
        raise CliError(f"{option} must be {n} numbers like {example}; got {text!r}")
    return values


def _shape(text: str) -> tuple[int, int, int]:
    parts = text.lower().split("x")
    if len(parts) != 3 or not all(p.strip().isdigit() for p in parts):
        raise CliError(f"--shape must be BSCANSxDEPTHxALINES like 128x256x128; got {text!r}")
    return tuple(int(p) for p in parts)  # type: ignore[return-value]


def phantom(
    out: Path = typer.Argument(..., help="Case folder to create (case.json, vol_XX.tif, truth.json)."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives identical files."),
    repeats: int = typer.Option(3, "--repeats", help="Number of repeated volumes."),
    shape: str = typer.Option("128x256x128", "--shape", help="BSCANSxDEPTHxALINES of each volume."),
    location_deg: str = typer.Option("2,0", "--location-deg",
                                     help="Retinal location HORIZONTAL,VERTICAL in deg (+ = temporal, superior)."),
    axial_length_mm: float = typer.Option(24.0, "--axial-length-mm", help="Axial length (Bennett eye model)."),
    scan_field_deg: str = typer.Option("1,1", "--scan-field-deg", help="Scan field BSCAN,ALINE in deg."),
    depth_um_per_px: float = typer.Option(2.0, "--depth-um-per-px", help="Axial sampling in tissue."),
    motion_scale: float = typer.Option(1.0, "--motion-scale", help="Eye-motion magnitude factor (0 = none)."),
    dim_bscan_fraction: float = typer.Option(0.0, "--dim-bscan-fraction", help="Fraction of dim/blink B-scans."),
    snr_db: float = typer.Option(35.0, "--snr-db", help="RPE-to-noise-floor ratio in dB."),
    eye: str = typer.Option("OD", "--eye", help="OD or OS."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing different case folder."),
) -> None:
    """Generate a realistic AO-OCT phantom with exact ground truth (cones, vessels, layers, motion)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from aooct_core.io import InputError
    from aooct_core.phantom import make_phantom, write_phantom

    if eye not in ("OD", "OS"):
        raise CliError(f"--eye must be OD or OS; got {eye!r}")
    shape_px = _shape(shape)
    location = _floats(location_deg, n=2, option="--location-deg", example="2,0")
    field = _floats(scan_field_deg, n=2, option="--scan-field-deg", example="1,1")
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), transient=True) as bar:
        task = bar.add_task("rendering repeats", total=repeats)
        try:
            ph = make_phantom(seed=seed, n_repeats=repeats, shape_px=shape_px, location_deg=location,
                              axial_length_mm=axial_length_mm, scan_field_deg=field,
                              depth_um_per_px=depth_um_per_px, motion_scale=motion_scale,
                              dim_bscan_fraction=dim_bscan_fraction, snr_db=snr_db, eye=eye,
                              progress=lambda done, total: bar.update(task, completed=done))
        except ValueError as exc:
            raise CliError(str(exc)) from None
        write_task = bar.add_task("writing case folder", total=1)
        try:
            folder = write_phantom(out, ph, overwrite=overwrite)
        except (InputError, OSError) as exc:
            raise CliError(str(exc)) from None
        bar.update(write_task, completed=1)
    cones = ph.truth["cones"]
    typer.echo(f"wrote {folder} ({repeats} x {shape_px[0]}x{shape_px[1]}x{shape_px[2]} px, "
               f"{ph.geometry.aline_um_per_px:.3f} µm/px lateral, {len(cones['positions_rc'])} cones at "
               f"{cones['true_density_cells_per_mm2']:.0f} cells/mm², {len(ph.truth['vessels'])} capillary segments)")


def register(app: typer.Typer) -> None:
    """Add the ``phantom`` command to the ``aooct`` app."""
    app.command(name="phantom")(phantom)
