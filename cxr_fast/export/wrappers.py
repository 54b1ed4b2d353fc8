"""Small modules that become part of an exported graph."""

from __future__ import annotations

import torch
from torch import nn


class HalfPrecision(nn.Module):
    """fp16 weights and activations behind a float32 interface.

    The casts live inside the exported graph, so callers always pass float32 images (as every
    loader makes them) and get float32 logits, whatever precision the file runs at.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.half()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.half()).float()
