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
    "stnkit.fields",
    "stnkit.transforms.piecewise_affine",
    "stnkit.transforms.bspline",
    "stnkit.transforms.displacement",
    "stnkit.export",
]
# Modules whose docstrings must hold at least one example.
WITH_EXAMPLES = {"stnkit.coords", "stnkit._registry", "stnkit.transforms", "stnkit.sampling", "stnkit.reference",
                 "stnkit.functional", "stnkit.module", "stnkit.localisation", "stnkit._io", "stnkit.fields",
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


SRC = Path(__file__).resolve().parent.parent / "src"
OTHER_MODULES = sorted(
    ".".join(p.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
    for p in (SRC / "stnkit").rglob("*.py") if ">>> " in p.read_text(encoding="utf-8"))
OTHER_MODULES = [m for m in OTHER_MODULES if m not in CORE_MODULES]


@pytest.mark.parametrize("name", OTHER_MODULES)
def test_every_other_modules_examples(name):
    """Any module with a ``>>>`` example (the experiments', a new one) runs it, without being listed."""
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
