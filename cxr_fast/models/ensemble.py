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
    """``model``'s logits divided by a fitted temperature plus a fitted bias (site calibration,
    Platt scaling): ranking and Grad-CAM maps are unchanged, probabilities mean what they say at
    that site."""

    def __init__(self, model: nn.Module, temperature: float, bias: float = 0.0) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.model = model
        self.temperature = float(temperature)
        self.bias = float(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) / self.temperature + self.bias


CALIBRATED_PREFIX = "model"


# Test-time augmentation: the film as it is, zoomed in (the central 90%, resized back) and
# zoomed out (shrunk to 90%, the border filled with the image's darkest value, as training's
# zoom-out fills with black). Three forward passes per image: three times the model's cost.
TTA_ZOOM = 0.9
TTA_VIEWS = ("identity", "zoom-in", "zoom-out")


class TestTimeAugment(nn.Module):
    """The mean of ``model``'s logits over :data:`TTA_VIEWS` of each input."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    @staticmethod
    def views(x: torch.Tensor) -> list[torch.Tensor]:
        """The augmented copies of a batch [N,1,S,S] (same size, same memory format)."""
        size = int(x.shape[-1])  # fixed by the contract: a constant in traced exports
        inner = max(1, round(size * TTA_ZOOM))
        start = (size - inner) // 2
        crop = x[..., start : start + inner, start : start + inner]
        zoom_in = nn.functional.interpolate(crop, size=x.shape[-2:], mode="bilinear")
        small = nn.functional.interpolate(x, size=(inner, inner), mode="bilinear")
        fill = x.amin(dim=(1, 2, 3), keepdim=True)
        zoom_out = fill.expand_as(x).clone()
        zoom_out[..., start : start + inner, start : start + inner] = small
        layout = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else None
        out = [x, zoom_in, zoom_out]
        return [v.contiguous(memory_format=layout) if layout else v for v in out]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.model(v) for v in self.views(x)], dim=0).mean(dim=0)
