"""What a film looks like, in a few numbers: the appearance descriptor the content check of the
input gate measures distances on.

It is computed from the model's input batch (the contract's resized grey image), so every
backend, eager or exported, and every loader sees the same numbers for the same film. The parts
describe what separates a frontal chest radiograph from a page, a photo, a slice of another
modality or a test pattern: the coarse layout (8x8 block means, row and column profiles: dark
lungs either side of a bright mediastinum), the grey-level histogram and quantiles, edge and
fine-texture energy at two scales, the share of flat patches, and left-right symmetry.
"""

from __future__ import annotations

import numpy as np
import torch

from cxr_fast.contract import PreprocessContract

# Changing the descriptor changes what a stored gate means: fits record this, loads check it.
DESCRIPTOR_VERSION = 1
# The descriptor is computed at this size, whatever the contract's (a power of two, so the
# block and band means divide evenly).
SIDE = 64
_BLOCKS = 8
_BANDS = 16
_BINS = 16
_QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
# A 4x4 patch whose grey levels vary by less than this (on [0, 1]) is flat: scans and patterns
# have many, a radiograph's noise and anatomy leave few.
_FLAT_STD = 0.004


def unit_pixels(x: torch.Tensor, contract: PreprocessContract) -> torch.Tensor:
    """The model input ``x`` [N,1,S,S] back on a [0, 1] grey scale, [N, SIDE, SIDE] float32.

    A global mean/std is undone exactly; a per-image standardisation cannot be, so those
    images are min-max rescaled (fit and scoring both go through here, so they agree)."""
    x = x.detach().float().cpu()
    if contract.normalize == "per-image":
        low = x.amin(dim=(1, 2, 3), keepdim=True)
        x = (x - low) / (x.amax(dim=(1, 2, 3), keepdim=True) - low).clamp_min(1e-6)
    elif contract.mean is not None:
        x = x * (contract.std or 1.0) + contract.mean
    x = torch.nn.functional.adaptive_avg_pool2d(x.contiguous(), (SIDE, SIDE))
    return x[:, 0].clamp_(0.0, 1.0)


def describe(
    images: np.ndarray | torch.Tensor, histogram: torch.Tensor | None = None
) -> np.ndarray:
    """Descriptors [N, D] (float64) of grey images [N, SIDE, SIDE] on [0, 1]. Computed in
    float32 torch ops: this runs on every scored batch. ``histogram``: their
    :func:`grey_histogram`, when the caller has it already."""
    x = torch.as_tensor(images, dtype=torch.float32)
    n, side = x.shape[0], x.shape[1]
    b = side // _BLOCKS
    blocks = x.reshape(n, _BLOCKS, b, _BLOCKS, b).mean(dim=(2, 4)).reshape(n, -1)
    rows = x.reshape(n, _BANDS, side // _BANDS, side).mean(dim=(2, 3))
    cols = x.reshape(n, side, _BANDS, side // _BANDS).mean(dim=(1, 3))
    flat = x.reshape(n, -1)
    fine = grey_histogram(flat) if histogram is None else histogram
    hist = fine.reshape(n, _BINS, -1).sum(dim=2)
    quantiles = histogram_quantiles(fine, _QUANTILES)
    mean = flat.mean(dim=1)
    std = ((flat * flat).mean(dim=1) - mean * mean).clamp_min(0).sqrt()
    edges = _edges(x)
    half = x.reshape(n, side // 2, 2, side // 2, 2).mean(dim=(2, 4))
    laplace = (
        (4 * x[:, 1:-1, 1:-1] - x[:, :-2, 1:-1] - x[:, 2:, 1:-1] - x[:, 1:-1, :-2] - x[:, 1:-1, 2:])
        .abs()
        .mean(dim=(1, 2))
    )
    tiles = x.reshape(n, side // 4, 4, side // 4, 4)
    tile_mean = tiles.mean(dim=(2, 4))
    patches = ((tiles * tiles).mean(dim=(2, 4)) - tile_mean * tile_mean).clamp_min(0).sqrt()
    flat_share = (patches < _FLAT_STD).float().mean(dim=(1, 2))
    symmetry = _correlation(flat, x.flip(2).reshape(n, -1))
    columns = [blocks, rows, cols, hist, quantiles]
    scalars = [mean, std, edges, _edges(half), laplace]
    scalars += [(edges + 1e-4).log(), (laplace + 1e-4).log(), flat_share, symmetry]
    return torch.cat([*columns, torch.stack(scalars, dim=1)], dim=1).double().numpy()


def grey_histogram(flat: torch.Tensor, levels: int = 256) -> torch.Tensor:
    """Share of each image's pixels [N, P] (on [0, 1]) in each of ``levels`` grey levels."""
    bins = (flat * levels).long().clamp_(0, levels - 1)
    counts = torch.zeros(flat.shape[0], levels).scatter_add_(1, bins, torch.ones_like(flat))
    return counts / flat.shape[1]


def histogram_quantiles(histogram: torch.Tensor, quantiles: tuple[float, ...]) -> torch.Tensor:
    """Quantiles [N, Q] of each image from its :func:`grey_histogram` (to the grey level:
    a sort per image would cost more than the rest of the descriptor)."""
    levels = histogram.shape[1]
    cdf = histogram.cumsum(dim=1)
    wanted = torch.tensor(quantiles, dtype=cdf.dtype).expand(len(cdf), -1).contiguous()
    index = torch.searchsorted(cdf, wanted).clamp_(max=levels - 1)
    return (index.to(torch.float32) + 0.5) / levels


def _edges(x: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels, across and down."""
    return x.diff(dim=2).abs().mean(dim=(1, 2)) + x.diff(dim=1).abs().mean(dim=(1, 2))


def _correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise Pearson correlation; 0 where either row is constant."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    norm = ((a * a).sum(dim=1) * (b * b).sum(dim=1)).sqrt()
    return torch.where(norm > 1e-12, (a * b).sum(dim=1) / norm.clamp_min(1e-12), 0.0)
