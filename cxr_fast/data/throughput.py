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
        if batch.x is None:  # a scoring loader's batch of files that did not decode
            continue
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
    from cxr_fast.data.loader_spec import LoaderSpec
    from cxr_fast.data.loaders import make_scoring_loader, make_train_loader, resolve_loader
    from cxr_fast.device import resolve_device

    records = require_images(discover(config.root), str(config.root))
    contract = PreprocessContract(image_size=config.image_size)
    # Eval mode is the scoring loader's, which routes each file by its header itself.
    checked = records if config.train else ()
    backend = resolve_loader(config.loader, resolve_device(config.device), checked)

    def build() -> Iterable[Batch]:
        spec = LoaderSpec(
            records, contract, config.batch_size, workers=config.workers, device=config.device
        )
        return (make_train_loader if config.train else make_scoring_loader)(spec, backend)

    return len(records), backend, build
