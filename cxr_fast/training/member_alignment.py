"""One scale for an ensemble's members, fitted on their out-of-fold films.

An ensemble's threshold is chosen on pooled out-of-fold logits (each training film scored by the
member that never saw its patient) and applied to the mean of every member's logits. Members
trained apart can speak on different scales, most of all after short training: the pooled
scores are then a mixture that ranks worse than each fold alone, and the ensemble's mean lies
where none of them was measured. Mapping every member by an affine (scale, shift) onto the
pooled scale, matched by the mean and spread of its own out-of-fold logits, makes the pooled
scores and the ensemble's speak alike; members that already agree are left nearly as they are.
The map is folded into each member's final linear layer, so the ensemble stays the plain mean of
its members, with no extra operation for an export to carry.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

# A member whose out-of-fold logits hardly vary says nothing about its scale: leave it alone.
MIN_SPREAD = 1e-6


def fit_alignment(logits: np.ndarray, folds: np.ndarray, members: int) -> list[tuple[float, float]]:
    """(scale, shift) per member ``k`` from its out-of-fold ``logits`` (those with
    ``folds == k``), mapping its mean and standard deviation onto the pooled ones."""
    logits = np.asarray(logits, dtype=np.float64)
    mean, spread = float(logits.mean()), float(logits.std())
    alignment = []
    for k in range(members):
        own = logits[np.asarray(folds) == k]
        own_spread = float(own.std()) if own.size else 0.0
        if own_spread < MIN_SPREAD or spread < MIN_SPREAD:
            alignment.append((1.0, 0.0))
            continue
        scale = spread / own_spread
        alignment.append((scale, mean - scale * float(own.mean())))
    return alignment


def apply_alignment(
    logits: np.ndarray, folds: np.ndarray, alignment: list[tuple[float, float]]
) -> np.ndarray:
    """Out-of-fold ``logits`` with each film's member's (scale, shift) applied."""
    scale = np.array([a for a, _ in alignment])[folds]
    shift = np.array([b for _, b in alignment])[folds]
    return (scale * np.asarray(logits, dtype=np.float64) + shift).astype(np.float32)


def fold_into_head(member: nn.Module, scale: float, shift: float) -> None:
    """Make ``member`` output ``scale * logit + shift`` by rewriting its one-logit final
    linear layer (every architecture of the registry ends in one)."""
    heads = [m for m in member.modules() if isinstance(m, nn.Linear) and m.out_features == 1]
    if len(heads) != 1 or heads[0].bias is None:
        raise ValueError("a member needs exactly one one-logit linear layer with a bias")
    with torch.no_grad():
        heads[0].weight.mul_(scale)
        heads[0].bias.mul_(scale).add_(shift)
