"""The cheap pixel checks: an image with next to no grey levels, or a colour picture."""

from __future__ import annotations

import numpy as np
import torch

from cxr_fast.gate.appearance import grey_histogram, histogram_quantiles

# The 1st to 99th percentile of a radiograph spans much of the grey scale; a blank, a flat
# test pattern or a nearly empty page spans a few levels (on [0, 1]).
MIN_SPAN = 0.03
# Mean chroma (max - min of R, G, B, on 0-255) above which a picture is in colour: a radiograph
# stored as RGB has equal channels, JPEG noise leaves a level or two.
MAX_CHROMA = 12.0


def span_reason(
    images: np.ndarray | torch.Tensor, histogram: torch.Tensor | None = None
) -> list[str | None]:
    """Per image of ``images`` [N, H, W] on [0, 1]: a reason when it is near-constant.
    ``histogram``: their :func:`grey_histogram`, when the caller has it already."""
    if histogram is None:
        flat = torch.as_tensor(images, dtype=torch.float32).reshape(len(images), -1)
        histogram = grey_histogram(flat)
    low, high = histogram_quantiles(histogram, (0.01, 0.99)).T.numpy()
    return [
        None
        if span >= MIN_SPAN
        else f"near-constant image (1st-99th percentile span {span * 255:.0f} of 255 grey levels)"
        for span in high - low
    ]


def colour_reason(info: dict | None) -> str | None:
    """A reason when decoding measured a colour picture (``info["chroma"]``, mean max - min of
    R, G and B over a small copy: cxr_fast/data/decode.py)."""
    value = (info or {}).get("chroma")
    if value is None or value <= MAX_CHROMA:
        return None
    return f"colour picture (mean chroma {value:.0f}; a radiograph is grey)"
