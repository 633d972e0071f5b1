"""The docstring examples of the core modules run and print what they say."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

CORE_MODULES = [
    "stnkit",
    "stnkit.coords",
    "stnkit._registry",
    "stnkit._validate",
    "stnkit.transforms",
    "stnkit.transforms.base",
    "stnkit.transforms.matrix",
    "stnkit.transforms.tps",
    "stnkit.transforms._linear",
    "stnkit.sampling",
    "stnkit.reference",
    "stnkit.functional",
    "stnkit.module",
    "stnkit.localisation",
    "stnkit._io",
    "stnkit.errors",
    "stnkit.export",
]
# Modules whose docstrings must hold at least one example.
WITH_EXAMPLES = {"stnkit.coords", "stnkit._registry", "stnkit.transforms", "stnkit.sampling", "stnkit.reference",
                 "stnkit.functional", "stnkit.module", "stnkit.localisation", "stnkit._io",
                 "stnkit.export"}


@pytest.mark.parametrize("name", CORE_MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
    if name in WITH_EXAMPLES:
        assert result.attempted > 0, f"{name} has no docstring example"


DOCS = sorted((Path(__file__).resolve().parent.parent / "docs").glob("*.md"))


@pytest.mark.parametrize("page", [p for p in DOCS if ">>> " in p.read_text()], ids=lambda p: p.name)
def test_documentation_examples(page):
    """The ``>>>`` examples of the documentation site's pages run and print what they say."""
    result = doctest.testfile(str(page), module_relative=False,
                              optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {page.name}"


def test_documentation_pages_hold_examples():
    assert len([p for p in DOCS if ">>> " in p.read_text()]) >= 3
