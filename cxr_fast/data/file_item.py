"""One file as a decoding worker reads it for scoring: pixels and size, or the reason it has
none. Free of torch, so the scorer's head start (:mod:`cxr_fast.scoring.head_start`) can decode
in a process forked before torch is imported."""

from __future__ import annotations

from collections.abc import Collection
from typing import NamedTuple

import numpy as np

from cxr_fast.contract import PreprocessContract
from cxr_fast.data.decode import ImageReadError, ImageSkipped, read_image


class FileItem(NamedTuple):
    """One file of a batch: ``pixels`` (uint8 [S,S]) and ``size``, or ``error`` (the reason);
    ``skipped`` marks DICOM objects that are not scored rather than failed."""

    position: int
    label: int | None
    pixels: np.ndarray | None
    size: tuple[int, int] | None
    error: str | None
    info: dict
    skipped: bool


def read_item(
    path: str,
    position: int,
    label: int | None,
    contract: PreprocessContract,
    skip_views: Collection[str] = (),
) -> FileItem:
    """Decode ``path`` per ``contract``; never raises for the file's own faults."""
    try:
        read = read_image(path, contract, skip_views)
        return FileItem(position, label, read.pixels, read.size, None, read.info, False)
    except ImageReadError as exc:  # ImageSkipped included
        skipped = isinstance(exc, ImageSkipped)
        return FileItem(position, label, None, None, exc.reason, exc.info, skipped)
    except Exception as exc:  # never let one file stop the run
        return FileItem(position, label, None, None, f"{type(exc).__name__}: {exc}", {}, False)
