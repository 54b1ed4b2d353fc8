"""Run a model over batches: logits in loader order, with each sample's record index."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import nn

from cxr_fast.data.batch import Batch
from cxr_fast.precision import Precision


def predict_logits(
    model: nn.Module,
    batches: Iterable[Batch],
    precision: Precision,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(record index int64, logit float32, label int64) for every sample, in batch order
    (a collecting loader's files that did not decode have none)."""
    model.eval()
    indices, logits, labels = [], [], []
    with torch.inference_mode():
        for batch in batches:
            if batch.x is None:
                continue
            with precision.autocast(model):
                out = model(batch.x)
            logits.append(out.float().reshape(-1).cpu())
            indices.append(batch.index.cpu())
            labels.append(batch.y.cpu())
            if progress is not None:
                progress(len(batch.index))
    if not logits:
        empty = np.zeros(0, dtype=np.int64)
        return empty, np.zeros(0, dtype=np.float32), empty
    return (
        torch.cat(indices).numpy(),
        torch.cat(logits).numpy(),
        torch.cat(labels).numpy(),
    )


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Probabilities from logits, float32, computed without overflow."""
    return torch.sigmoid(torch.from_numpy(np.asarray(logits, dtype=np.float32))).numpy()
