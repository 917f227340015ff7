"""The dependency arrows stay one-way: aooct_core and ml import no platform packages."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_import_linter_contracts_hold():
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_core_and_ml_import_without_platform_packages():
    # The GPU box has torch/CuPy/scikit-image but no Dagster: importing the pure layers must
    # not pull platform packages in transitively either.
    code = (
        "import sys, importlib, pkgutil\n"
        "import aooct_core, ml\n"
        "for pkg in (aooct_core, ml):\n"
        "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        importlib.import_module(m.name)\n"
        "bad = sorted(n for n in ('dagster', 'sqlalchemy', 'boto3', 'mlflow', 'streamlit') if n in sys.modules)\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"platform packages imported by aooct_core/ml: {result.stdout}"
