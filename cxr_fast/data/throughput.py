"""Measure how fast a loader delivers batches."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from cxr_fast.data.batch import Batch


@dataclass(frozen=True)
class StreamStats:
    """Images delivered, wall seconds, and their ratio."""

    images: int
    seconds: float

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")


def stream(
    build: Callable[[], Iterable[Batch]], progress: Callable[[int], None] | None = None
) -> StreamStats:
    """Build a loader and pull every batch once, timing both: DALI starts decoding while it is
    built and a DataLoader starts its workers per pass, so construction is part of the cost."""
    images = 0
    start = time.perf_counter()
    for batch in build():
        if batch.x is None:  # a scoring loader's batch of files that did not decode
            continue
        if batch.x.is_cuda:
            torch.cuda.synchronize(batch.x.device)
        images += batch.x.shape[0]
        if progress is not None:
            progress(batch.x.shape[0])
    return StreamStats(images=images, seconds=time.perf_counter() - start)
