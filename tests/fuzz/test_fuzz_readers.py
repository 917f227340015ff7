"""Fuzzing the readers: every input either reads or raises InputError, within 2 GiB.

The seed corpus (``fuzz_seeds``) is made by code; ``fuzz_mutate`` applies bit flips,
truncation, chunk edits and format-aware edits of the size fields (TIFF IFD entries, the
``.npy`` header, DICOM Rows/Columns/NumberOfFrames and lengths, PNG IHDR, case.json
values); ``fuzz_bombs`` adds compression bombs and sparse files. Every reader for the
suffix runs in a worker with a 2 GiB address-space cap (``fuzz_harness``).

The default run is a fixed (derandomized) hypothesis sample bounded to ~30 s on two
cores; ``make test-slow`` runs 30,000 more inputs including the bombs.
``bench/fuzz_readers.py`` runs 100,000+ and records the figures in bench/RESULTS.md.
"""
from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz_harness import READERS
from fuzz_inputs import fuzz_inputs
from fuzz_mutate import mutate
from fuzz_seeds import all_seeds

SEEDS = all_seeds()
_OK = ("ok", "input_error")


def test_seed_corpus_reads(capped):
    """The seeds are valid files: the volume seeds read as volumes, the images as images."""
    outcomes = {}
    for name, suffix, data in SEEDS:
        for reader in READERS[suffix]:
            outcomes[name, reader] = capped.read(reader, suffix, data)
            assert outcomes[name, reader].kind in _OK, (name, reader, outcomes[name, reader])
    assert outcomes["tiff_deflate", "read_volume"].kind == "ok"
    assert outcomes["tiff_lzma", "read_volume"].kind == "ok"
    assert outcomes["npy_fortran", "read_volume"].kind == "ok"
    assert outcomes["dcm_rle", "read_volume"].kind == "ok"
    assert outcomes["dcm_deflated", "read_volume"].kind == "ok"
    assert outcomes["png_i16", "read_enface"].kind == "ok"
    assert outcomes["case_full", "load_case"].kind == "ok"
    assert outcomes["png_named_bmp", "read_enface"].kind == "input_error"  # a .png is a PNG


@settings(max_examples=2500, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(index=st.integers(0, len(SEEDS) - 1), rng_seed=st.integers(0, 2**32 - 1))
def test_mutants_raise_only_input_error(capped, index, rng_seed):
    name, suffix, data = SEEDS[index]
    mutant = mutate(random.Random(rng_seed), data, suffix)
    for reader in READERS[suffix]:
        outcome = capped.read(reader, suffix, mutant)
        assert outcome.kind in _OK, (name, rng_seed, reader, outcome)


@pytest.mark.slow
def test_long_fuzz_with_bombs(capped):
    """30,000 inputs (bombs and sparse files first; another seed than the bench's)."""
    findings = []
    for i, name, suffix, data, extend_to in fuzz_inputs(30_000, seed=117):
        for reader in READERS[suffix]:
            outcome = capped.read(reader, suffix, data, extend_to)
            if outcome.kind not in _OK:
                findings.append((name, reader, outcome))
    assert not findings, findings[:10]
