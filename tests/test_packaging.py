"""The version is kept in one place and the changelog names it; the installed metadata agrees."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import stnkit

ROOT = Path(__file__).resolve().parent.parent


def test_installed_version_is_the_package_version():
    assert importlib.metadata.version("stnkit") == stnkit.__version__


def test_pyproject_reads_the_version_from_the_package():
    text = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in text and 'attr = "stnkit.__version__"' in text
    assert not re.search(r"^version\s*=", text, re.MULTILINE), "a second, literal version in pyproject.toml"


def test_changelog_names_the_version():
    first = re.search(r"^## \[([^\]]+)\]", (ROOT / "CHANGELOG.md").read_text(), re.MULTILINE)
    assert first and first.group(1) == stnkit.__version__
