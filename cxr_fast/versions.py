"""Versions of cxr-fast, Python and installed packages, recorded in run folders, exports,
predictions and benchmark results."""

from __future__ import annotations

import platform
from collections.abc import Iterable
from importlib import metadata

from cxr_fast import __version__


def package_version(name: str) -> str | None:
    """Installed version of ``name``, None when it is not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def versions(packages: Iterable[str]) -> dict[str, str | None]:
    """cxr-fast's and Python's versions, then each of ``packages`` (None where missing)."""
    found: dict[str, str | None] = {
        "cxr_fast": __version__,
        "python": platform.python_version(),
    }
    found.update({name: package_version(name) for name in packages})
    return found
