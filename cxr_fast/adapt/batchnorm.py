"""AdaBN: a model's BatchNorm statistics re-estimated on a site's own films.

Every BatchNorm layer normalises with the running mean and variance of the training films. At a
site whose films are brighter, blurrier or differently framed, those statistics are off and the
scores move (Li et al., "Revisiting batch normalization for practical domain adaptation", 2016).
Re-estimating them on the site's films needs no label. In an ensemble each member's layers are
re-estimated on the same films; each member's head, with the affine alignment training folded
into it (``training/member_alignment.py``), is a linear layer and stays as trained.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from cxr_fast.data.batch import Batch


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The model's BatchNorm layers that keep running statistics."""
    return [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]


def reestimate_batchnorm(
    model: nn.Module,
    batches: Iterable[Batch],
    device: torch.device,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Replace every BatchNorm layer's running mean and variance in ``model`` by their cumulative
    average over ``batches`` (fp32, no gradients, nothing else changes); returns the films seen.
    The model is left in eval mode."""
    layers = batchnorm_layers(model)
    saved = [(m.momentum, m.num_batches_tracked.clone()) for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average: every film counts alike
    model.eval()
    for m in layers:
        m.train()
    seen = 0
    try:
        with torch.no_grad():
            for batch in batches:
                if batch.x is None or len(batch.index) < 2:
                    continue  # a batch of one has no variance to estimate
                model(batch.x.to(device).float())
                seen += len(batch.index)
                if progress is not None:
                    progress(len(batch.index))
    finally:
        for m, (momentum, tracked) in zip(layers, saved, strict=True):
            m.momentum = momentum
            m.num_batches_tracked.copy_(tracked)
        model.eval()
    return seen
