"""The docstring examples of the core modules run and print what they say."""

from __future__ import annotations

import doctest
import importlib

import pytest

CORE_MODULES = [
    "stn",
    "stn.coords",
    "stn._registry",
    "stn._validate",
    "stn.transforms",
    "stn.transforms.base",
    "stn.transforms.matrix",
    "stn.transforms.tps",
    "stn.transforms._linear",
    "stn.sampling",
    "stn.reference",
    "stn.functional",
    "stn.module",
    "stn.localisation",
    "stn._io",
]
# Modules whose docstrings must hold at least one example.
WITH_EXAMPLES = {"stn.coords", "stn._registry", "stn.transforms", "stn.sampling", "stn.reference",
                 "stn.functional", "stn.module", "stn.localisation", "stn._io"}


@pytest.mark.parametrize("name", CORE_MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
    if name in WITH_EXAMPLES:
        assert result.attempted > 0, f"{name} has no docstring example"
