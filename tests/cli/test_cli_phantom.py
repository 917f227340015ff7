"""Tests of ``aooct phantom``."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from aooct.cli import app
from aooct.errors import CliError

SMALL = ["--shape", "8x240x16", "--repeats", "2"]


def test_phantom_writes_a_loadable_case(tmp_path):
    from aooct_core.io import load_case

    out = tmp_path / "ph"
    result = CliRunner().invoke(app, ["phantom", str(out), "--seed", "3", *SMALL, "--location-deg", "3,-1"])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output
    case = load_case(out)
    assert np.asarray(case.volumes()).shape == (2, 8, 240, 16)
    assert case.acquisition.location_deg == (3.0, -1.0)
    truth = json.loads((out / "truth.json").read_text())
    assert truth["seed"] == 3 and len(truth["motion_px"]) == 2


@pytest.mark.parametrize("args, match", [
    (["--shape", "12x3"], "--shape"),
    (["--location-deg", "2"], "--location-deg"),
    (["--scan-field-deg", "a,b"], "--scan-field-deg"),
    (["--eye", "XX"], "--eye"),
    (["--shape", "8x64x8"], "too shallow"),
    (["--axial-length-mm", "3"], "axial_length_mm"),
])
def test_bad_arguments_give_one_clear_line(tmp_path, args, match):
    result = CliRunner().invoke(app, ["phantom", str(tmp_path / "x"), *args])
    assert result.exit_code != 0
    assert isinstance(result.exception, CliError)
    message = str(result.exception)
    assert match in message and "\n" not in message
    assert not (tmp_path / "x").exists()


def test_existing_different_case_needs_overwrite(tmp_path):
    out = tmp_path / "ph"
    runner = CliRunner()
    assert runner.invoke(app, ["phantom", str(out), "--seed", "1", *SMALL]).exit_code == 0
    result = runner.invoke(app, ["phantom", str(out), "--seed", "2", *SMALL])
    assert isinstance(result.exception, CliError) and "--overwrite" in str(result.exception)
    result = runner.invoke(app, ["phantom", str(out), "--seed", "2", *SMALL, "--overwrite"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "truth.json").read_text())["seed"] == 2


def test_real_entry_point_prints_one_error_line_and_exits_nonzero(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "aooct.cli", "phantom", str(tmp_path / "x"), "--shape", "1x2"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("aooct: error: --shape")
