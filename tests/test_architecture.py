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


#: The project's packages: a name starting with "_" in one of them is private to its module.
PACKAGES = ("aooct_core", "ml", "api", "aooct_assets", "resources", "ui", "aooct")


def test_no_module_imports_a_private_name_from_another():
    """Issue 24: modules meet through public names (``__all__``), never another's ``_helper``."""
    import ast

    found = []
    for path in sorted(REPO_ROOT.rglob("*.py")):
        rel = path.relative_to(REPO_ROOT)
        if rel.parts[0] not in PACKAGES:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom):
                continue
            ours = node.level > 0 or (node.module or "").split(".")[0] in PACKAGES
            found += [f"{rel}:{node.lineno}: {node.module}.{a.name}" for a in node.names
                      if ours and a.name.startswith("_") and not a.name.startswith("__")]
    assert found == [], "private names imported across modules:\n" + "\n".join(found)
