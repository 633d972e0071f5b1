"""The version is kept in one place and the changelog names it; the installed metadata agrees."""

from __future__ import annotations

import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

import stnkit

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parent.parent


def test_installed_version_is_the_package_version():
    assert importlib.metadata.version("stnkit") == stnkit.__version__


def test_pyproject_reads_the_version_from_the_package():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in config["project"], "a second, literal version in pyproject.toml"
    assert "version" in config["project"]["dynamic"]
    assert config["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "stnkit.__version__"}


def test_changelog_names_the_version():
    """The first released section is the package's version; an ``[Unreleased]`` section may precede it."""
    sections = re.findall(r"^## \[([^\]]+)\]", (ROOT / "CHANGELOG.md").read_text(), re.MULTILINE)
    released = [v for v in sections if v != "Unreleased"]
    assert released and released[0] == stnkit.__version__
