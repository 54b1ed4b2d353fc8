"""Fallback loader: a PyTorch DataLoader over PIL decoding, for hosts without DALI and for
formats DALI does not take. It yields the same :class:`Batch` as the DALI loader.

A file that cannot be decoded (one that went bad after the pre-flight check) is left out of
its batch, named on stderr and listed in :attr:`TorchLoader.skipped`: never a crash in a worker.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from cxr_fast.contract import PreprocessContract
from cxr_fast.data.augment import Augment, augment_image
from cxr_fast.data.batch import (
    Batch,
    drops_last,
    labels_tensor,
    normalise_uint8,
    to_device_async,
)
from cxr_fast.data.decode import ImageReadError, read_gray
from cxr_fast.data.loader_spec import LoaderSpec, TrainMode
from cxr_fast.data.workers import steady_memory_worker
from cxr_fast.messages import to_stderr


class _ImageDataset(Dataset):
    def __init__(
        self, paths: Sequence[str], contract: PreprocessContract, augment: Augment | None, seed: int
    ) -> None:
        self.paths = list(paths)
        self.contract = contract
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[np.ndarray | str, int]:
        """(pixels, index), or (the reason, index) for a file that cannot be decoded."""
        try:
            pixels, _ = read_gray(self.paths[index], self.contract)
        except ImageReadError as exc:
            return exc.reason, index
        if self.augment is not None:
            # One generator per (seed, epoch, sample): the same sample gets the same transform
            # whatever worker loads it, so runs are reproducible.
            generator = torch.Generator().manual_seed(hash((self.seed, self.epoch, index)))
            image = augment_image(torch.from_numpy(pixels).unsqueeze(0), self.augment, generator)
            pixels = image.squeeze(0).numpy()
        return pixels, index


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
    ``train`` (see :mod:`cxr_fast.data.loader_spec` for both)."""

    def __init__(
        self,
        spec: LoaderSpec,
        train: TrainMode | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        records, positions = spec.records, spec.positions()
        seed = train.seed if train is not None else 0
        self.contract = spec.contract
        self.device = spec.device
        self.dtype = dtype
        self._positions = torch.tensor(positions, dtype=torch.int64)
        self._labels = labels_tensor([records[i].label for i in positions])
        self._dataset = _ImageDataset(
            [records[i].path for i in positions],
            spec.contract,
            train.augment if train is not None else None,
            seed,
        )
        self._train = train is not None
        self.skipped: list[tuple[str, str]] = []  # (path, reason) of files left out
        # On the CPU the workers normalise, so the main process (which runs the model) only
        # receives finished batches; for CUDA, uint8 crosses the bus (4x fewer bytes) and the
        # GPU normalises.
        self._on_gpu = self.device.type == "cuda"
        collate = functools.partial(
            _collate, contract=None if self._on_gpu else spec.contract, dtype=dtype
        )
        generator = torch.Generator().manual_seed(seed)
        workers = spec.workers
        self._loader = DataLoader(
            self._dataset,
            batch_size=spec.batch_size,
            shuffle=self._train,
            drop_last=drops_last(len(positions), spec.batch_size, self._train),
            num_workers=workers,
            worker_init_fn=steady_memory_worker,
            collate_fn=collate,
            generator=generator,
            persistent_workers=False,
            pin_memory=self._on_gpu,
            prefetch_factor=4 if workers else None,
        )

    def __len__(self) -> int:
        return len(self._loader)

    def __iter__(self) -> Iterator[Batch]:
        for images, local, failed in self._loader:
            for i, reason in failed:
                path = self._dataset.paths[i]
                self.skipped.append((path, reason))
                to_stderr(f"cxr-fast: skipped {path}: {reason}")
            if images is None:
                continue
            x = images.to(self.device, non_blocking=True)
            if self._on_gpu:
                x = normalise_uint8(x, self.contract, self.dtype)
            y = to_device_async(self._labels[local], self.device)
            yield Batch(x=x, y=y, index=self._positions[local])
        if self._train:
            self._dataset.epoch += 1
