"""One capped reader worker for the fuzz tests (2 GiB address space, see fuzz_harness)."""
from __future__ import annotations

import pytest

from fuzz_harness import CappedReader


@pytest.fixture(scope="session")
def capped():
    with CappedReader(timeout_s=20.0) as reader:
        yield reader
