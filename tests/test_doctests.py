"""The Examples sections of ``aooct_core`` run as tests (documentation that is checked)."""
from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import aooct_core

MODULES = sorted(m.name for m in pkgutil.walk_packages(aooct_core.__path__, "aooct_core."))


@pytest.mark.parametrize("name", MODULES)
def test_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
