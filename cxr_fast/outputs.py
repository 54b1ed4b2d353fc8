"""Checks that an output location can be written before any work goes into filling it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from cxr_fast.errors import OutputError


def _why(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def writable_folder(folder: Path, option: str = "--out") -> Path:
    """Create ``folder`` (and its parents) and prove a file can be written in it; one-line
    :class:`OutputError` for a folder under a file, a read-only mount, /sys or /proc, or one
    the user may not write."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(
            f"cannot use {option} {folder}: a file of that name is in the way; choose another"
        ) from None
    except OSError as exc:
        raise OutputError(
            f"cannot create {folder} for {option}: {_why(exc)}; choose another location"
        ) from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".cxr-fast-write-test.", dir=folder)
    except OSError as exc:
        raise OutputError(
            f"cannot write in {folder} ({option}): {_why(exc)}; choose another location"
        ) from None
    os.close(fd)
    os.unlink(probe)
    return folder


def writable_file(path: Path, option: str = "--out") -> Path:
    """A file path whose folder is writable and which is not itself a folder."""
    if path.is_dir():
        raise OutputError(
            f"{option} {path} is a folder: give a file name such as {path / 'preds.parquet'}"
        )
    writable_folder(path.parent, option)
    return path
