"""Measure how fast a loader delivers batches."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from cxr_fast.data.batch import Batch

if TYPE_CHECKING:
    from cxr_fast.configs import StreamConfig


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
        if batch.x.is_cuda:
            torch.cuda.synchronize(batch.x.device)
        images += batch.x.shape[0]
        if progress is not None:
            progress(batch.x.shape[0])
    return StreamStats(images=images, seconds=time.perf_counter() - start)


def plan_stream(config: StreamConfig) -> tuple[int, str, Callable[[], Iterable[Batch]]]:
    """``cxr-fast data stream``: the images under ``config.root``, the loader backend that will
    read them and a function that builds the loader (for :func:`stream` to time)."""
    from cxr_fast.contract import PreprocessContract
    from cxr_fast.data.discover import discover, require_images
    from cxr_fast.data.loaders import make_loader, resolve_loader
    from cxr_fast.device import resolve_device

    records = require_images(discover(config.root), str(config.root))
    contract = PreprocessContract(image_size=config.image_size)
    backend = resolve_loader(config.loader, resolve_device(config.device), records)

    def build() -> Iterable[Batch]:
        return make_loader(
            records,
            contract,
            batch_size=config.batch_size,
            loader=backend,
            device=config.device,
            train=config.train,
            workers=config.workers,
        )

    return len(records), backend, build
