"""Make ``import ml`` resolve to the project package, not this ``tests/ml`` folder.

pytest (rootdir import mode "prepend") puts ``tests/`` on ``sys.path``; there ``ml`` would
be found as a namespace package (this folder) before the editable install's finder runs.
Putting the repository root first fixes that without touching the project config.
"""
import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[2])
if sys.path[:1] != [_ROOT]:
    sys.path.insert(0, _ROOT)
_ml = sys.modules.get("ml")
if _ml is not None and getattr(_ml, "__file__", None) is None:  # a namespace stand-in
    del sys.modules["ml"]
