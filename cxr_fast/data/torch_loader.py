"""Fallback loader: a PyTorch DataLoader over PIL decoding, for hosts without DALI and for
formats DALI does not take. It yields the same :class:`Batch` as the DALI loader.

A file that cannot be decoded (one that went bad after the pre-flight check) is left out of
its batch, named on stderr and listed in :attr:`TorchLoader.skipped`: never a crash in a worker.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from cxr_fast.contract import PreprocessContract
from cxr_fast.data.augment import Augment, augment_image, sample_generator
from cxr_fast.data.batch import (
    Batch,
    labels_tensor,
    normalise_uint8,
    num_batches,
    to_device_async,
)
from cxr_fast.data.decode import ImageReadError, read_gray
from cxr_fast.data.discover import Record
from cxr_fast.data.loader_spec import LoaderSpec, TrainMode
from cxr_fast.data.shard import shard_range
from cxr_fast.data.workers import steady_memory_worker
from cxr_fast.messages import to_stderr


class _Key(NamedTuple):
    """What a worker needs to load one sample: everything of the epoch travels in the key, so
    that worker processes that live across epochs need no news from the main process."""

    path: str
    index: int  # the sample's position in this epoch's shard
    seed: int
    epoch: int


class _ImageDataset(Dataset):
    def __init__(self, contract: PreprocessContract, augment: Augment | None) -> None:
        self.contract = contract
        self.augment = augment

    def __getitem__(self, key: _Key) -> tuple[np.ndarray | str, int]:
        """(pixels, index), or (the reason, index) for a file that cannot be decoded."""
        try:
            pixels, _ = read_gray(key.path, self.contract)
        except ImageReadError as exc:
            return exc.reason, key.index
        if self.augment is not None:
            generator = sample_generator(key.seed, key.epoch, key.index)
            image = augment_image(torch.from_numpy(pixels).unsqueeze(0), self.augment, generator)
            pixels = image.squeeze(0).numpy()
        return pixels, key.index


class _EpochBatches(Sampler):
    """The batches of keys of one pass (shuffled in train mode), drawn as a new DataLoader
    with ``torch.Generator().manual_seed(seed)`` and ``shuffle`` drew them: its workers' base
    seed, then the permutation. Passes without :meth:`start` continue the generator and count
    ``epoch`` on, as iterating one such DataLoader again did."""

    def __init__(self, batch_size: int, train: bool) -> None:
        self.batch_size, self.train = batch_size, train
        self.paths: list[str] = []

    def start(self, paths: Sequence[str], seed: int) -> None:
        """A new epoch: these files, this seed."""
        self.paths, self.seed, self.epoch = list(paths), seed, 0
        self._generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return num_batches(len(self.paths), self.batch_size, self.train)

    def __iter__(self) -> Iterator[list[_Key]]:
        n = len(self.paths)
        torch.empty((), dtype=torch.int64).random_(generator=self._generator)  # the base seed
        order = torch.randperm(n, generator=self._generator).tolist() if self.train else range(n)
        keys = [_Key(self.paths[i], i, self.seed, self.epoch) for i in order]
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            yield keys[start : start + self.batch_size]
        if self.train:  # RandomSampler's last draw, made when its pass runs out
            torch.randperm(n, generator=self._generator)


def _collate(
    items: list[tuple[np.ndarray | str, int]],
    contract: PreprocessContract | None,
    dtype: torch.dtype,
) -> tuple[torch.Tensor | None, torch.Tensor, list[tuple[int, str]]]:
    """Stack uint8 [H,W] images to [N,H,W,1]; normalise them to NCHW floats when a contract is
    given. (numpy all the way to one tensor per batch: measurably cheaper per image.) Files
    that failed come back as (index, reason) beside the batch (None when none decoded)."""
    good = [(pixels, i) for pixels, i in items if not isinstance(pixels, str)]
    failed = [(i, reason) for reason, i in items if isinstance(reason, str)]
    if not good:
        return None, torch.zeros(0, dtype=torch.int64), failed
    images, indices = zip(*good, strict=True)
    batch = torch.from_numpy(np.stack(images)).unsqueeze(-1)
    if contract is not None:
        batch = normalise_uint8(batch, contract, dtype)
    return batch, torch.tensor(indices, dtype=torch.int64), failed


class TorchLoader:
    """Iterable of :class:`Batch` from PIL-decoded files: ``spec``'s shard, in train mode with
    ``train`` (see :mod:`cxr_fast.data.loader_spec` for both). :meth:`set_epoch` gives the
    same loader the next epoch's records and seed: its worker processes live on."""

    def __init__(
        self,
        spec: LoaderSpec,
        train: TrainMode | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.spec = spec
        self.contract = spec.contract
        self.device = spec.device
        self.dtype = dtype
        self._train = train is not None
        self.skipped: list[tuple[str, str]] = []  # (path, reason) of files left out
        # On the CPU the workers normalise, so the main process (which runs the model) only
        # receives finished batches; for CUDA, uint8 crosses the bus (4x fewer bytes) and the
        # GPU normalises.
        self._on_gpu = self.device.type == "cuda"
        collate = functools.partial(
            _collate, contract=None if self._on_gpu else spec.contract, dtype=dtype
        )
        self._batches = _EpochBatches(spec.batch_size, self._train)
        self.set_epoch(spec.records, train.seed if train is not None else 0)
        workers = spec.workers
        self._loader = DataLoader(
            _ImageDataset(spec.contract, train.augment if train is not None else None),
            batch_sampler=self._batches,
            num_workers=workers,
            worker_init_fn=steady_memory_worker,
            collate_fn=collate,
            # Its own generator: the workers' base seed must not come from the global one.
            generator=torch.Generator(),
            persistent_workers=workers > 0,
            pin_memory=self._on_gpu,
            prefetch_factor=4 if workers else None,
        )

    def set_epoch(self, records: Sequence[Record], seed: int) -> None:
        """Load ``records`` (this spec's shard of them) with ``seed`` from the next pass on, as
        a new loader over them would."""
        positions = shard_range(len(records), self.spec.shard_id, self.spec.num_shards)
        self._positions = torch.tensor(positions, dtype=torch.int64)
        self._labels = labels_tensor([records[i].label for i in positions])
        self._batches.start([records[i].path for i in positions], seed)

    def __len__(self) -> int:
        return len(self._loader)

    def __iter__(self) -> Iterator[Batch]:
        paths = self._batches.paths
        for images, local, failed in self._loader:
            for i, reason in failed:
                self.skipped.append((paths[i], reason))
                to_stderr(f"cxr-fast: skipped {paths[i]}: {reason}")
            if images is None:
                continue
            x = images.to(self.device, non_blocking=True)
            if self._on_gpu:
                x = normalise_uint8(x, self.contract, self.dtype)
            y = to_device_async(self._labels[local], self.device)
            yield Batch(x=x, y=y, index=self._positions[local])
        self._batches.epoch += 1
