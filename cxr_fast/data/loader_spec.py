"""What every loader is built from (:class:`LoaderSpec`), and what only training adds
(:class:`TrainMode`). Each loader argument is documented here, once."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from cxr_fast.contract import PreprocessContract
from cxr_fast.data.augment import Augment
from cxr_fast.data.batch import Batch
from cxr_fast.data.discover import Record
from cxr_fast.data.shard import shard_range
from cxr_fast.device import resolve_device
from cxr_fast.errors import UserInputError


@dataclass(frozen=True)
class LoaderSpec:
    """The files and how to batch them, shared by every loader.

    - ``records``: the files (path and label); a batch's ``index`` holds positions in it.
    - ``contract``: the preprocessing; batches are float32 ``x[N,1,S,S]`` channels_last
      (autocast, not the loader, lowers precision).
    - ``batch_size``: images per batch, at least 1.
    - ``workers``: DALI's thread count (at least one is used) or the PIL loader's worker
      processes (0: decode in this process).
    - ``device``: where batches land, ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (resolved to a
      :class:`torch.device` when the spec is made).
    - ``shard_id`` of ``num_shards``: the part of ``records`` this process reads
      (:func:`cxr_fast.data.shard.shard_range`; one per rank in distributed training).
    """

    records: Sequence[Record]
    contract: PreprocessContract
    batch_size: int
    workers: int = 2
    device: torch.device | str = "cpu"
    shard_id: int = 0
    num_shards: int = 1

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise UserInputError(f"batch size must be at least 1, got {self.batch_size}")
        if not self.records:
            raise UserInputError("no images to load")
        if isinstance(self.device, str):
            object.__setattr__(self, "device", resolve_device(self.device))

    def positions(self) -> list[int]:
        """The positions in ``records`` this shard reads, in file order."""
        return list(shard_range(len(self.records), self.shard_id, self.num_shards))

    def dali_device(self) -> tuple[str, int]:
        """DALI's (device, device_id) for :attr:`device`: ``gpu`` on CUDA, else ``cpu``."""
        return ("gpu" if self.device.type == "cuda" else "cpu"), self.device.index or 0


@dataclass(frozen=True)
class TrainMode:
    """Training instead of evaluation: shuffle, apply ``augment`` (None: no augmentation) and
    drop a last partial batch; ``seed`` fixes the order and the augmentations. Without it a
    loader keeps file order and the last partial batch."""

    augment: Augment | None = None
    seed: int = 0


class TrainLoader(Protocol):
    """What :func:`cxr_fast.data.loaders.make_train_loader` returns, whichever backend."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[Batch]: ...
