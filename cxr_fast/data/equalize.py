"""Histogram equalisation of one grey uint8 image, for the ``normalize="equalize"`` contract.

The host decoders use :func:`equalize_uint8`; the DALI graph uses ``fn.equalize``. Both compute
the OpenCV ``equalizeHist`` mapping, so the two paths give the same pixels for the same input
(tests/data/test_equalize.py checks it against DALI when DALI is installed).
"""

from __future__ import annotations

import numpy as np

LEVELS = 256


def equalize_lut(plane: np.ndarray) -> np.ndarray:
    """The 256-entry uint8 lookup table that equalises ``plane``'s histogram: the cumulative
    count above the darkest occupied level, scaled to 0..255 and rounded. A one-level image maps
    to itself (there is no contrast to spread)."""
    hist = np.bincount(plane.ravel(), minlength=LEVELS).astype(np.int64)
    darkest = int(np.flatnonzero(hist)[0]) if plane.size else 0
    rest = plane.size - int(hist[darkest])
    if rest == 0:
        return np.arange(LEVELS, dtype=np.uint8)
    cdf = np.cumsum(hist) - hist[darkest]
    lut = np.rint(cdf * (255.0 / rest))
    lut[:darkest] = 0
    return np.clip(lut, 0, 255).astype(np.uint8)


def equalize_uint8(plane: np.ndarray) -> np.ndarray:
    """``plane`` (uint8, any shape) with its grey levels histogram-equalised."""
    if plane.dtype != np.uint8:
        raise TypeError(f"equalisation needs uint8 pixels, got {plane.dtype}")
    return equalize_lut(plane)[plane]
