"""Coverage-guided fuzzing of the readers (atheris, ``atheris_readers.py``) as a test.

libFuzzer runs in its own process from the code-made seeds with a fixed seed, for a fixed
time; any input a reader answers with something other than :class:`InputError`, a
``MemoryError`` under 2 GiB or a 20 s hang fails the test and is written to ``tmp_path``
(save it in ``crashers/``, see ``atheris_readers.py``). ``make test-slow`` runs it longer.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris", reason="atheris has wheels for Linux x86_64 only (pip install atheris)")

TARGET = Path(__file__).with_name("atheris_readers.py")


def _fuzz(tmp_path: Path, *, seconds: int, seed: int) -> str:
    corpus, artifacts = tmp_path / "corpus", tmp_path / "crashes"
    artifacts.mkdir()
    proc = subprocess.run(
        [sys.executable, str(TARGET), str(corpus), f"-max_total_time={seconds}", "-timeout=20",
         f"-seed={seed}", "-max_len=200000", f"-artifact_prefix={artifacts}/"],
        capture_output=True, text=True, timeout=seconds + 240, cwd=TARGET.parent)
    found = sorted(artifacts.iterdir())
    assert proc.returncode == 0 and not found, (
        f"libFuzzer found {len(found)} input(s) ({', '.join(map(str, found))}); its output "
        f"ends:\n{proc.stderr[-4000:]}")
    done = [line for line in proc.stderr.splitlines() if "DONE" in line or line.startswith("Done ")]
    assert done, proc.stderr[-2000:]
    return done[-1]


def test_readers_survive_coverage_guided_fuzzing(tmp_path):
    print(_fuzz(tmp_path, seconds=25, seed=17))


@pytest.mark.slow
def test_readers_survive_a_long_coverage_guided_run(tmp_path):
    print(_fuzz(tmp_path, seconds=300, seed=20261204))
