"""Probabilities from logits (a model runs over batches through ``ScoringModel.predict``)."""

from __future__ import annotations

import numpy as np
import torch


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Probabilities from logits, float32, computed without overflow."""
    return torch.sigmoid(torch.from_numpy(np.asarray(logits, dtype=np.float32))).numpy()
