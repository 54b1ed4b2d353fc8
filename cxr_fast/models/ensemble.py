"""An ensemble of same-architecture members: the mean of their logits, as one module.

Exports, scoring and Grad-CAM take it like any single model: only the run-folder loader knows
that a run holds members.
"""

from __future__ import annotations

import torch
from torch import nn


class Ensemble(nn.Module):
    """``forward(x)`` = mean over members of ``member(x)`` (logits, [N,1])."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(x) for member in self.members], dim=0).mean(dim=0)


def member_prefix(i: int) -> str:
    """The dotted name of member ``i`` inside an :class:`Ensemble` (Grad-CAM layer names)."""
    return f"members.{i}"


class TemperatureScaled(nn.Module):
    """``model``'s logits divided by a fitted temperature (site calibration): ranking and
    Grad-CAM maps are unchanged, probabilities mean what they say at that site."""

    def __init__(self, model: nn.Module, temperature: float) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.model = model
        self.temperature = float(temperature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) / self.temperature


CALIBRATED_PREFIX = "model"
