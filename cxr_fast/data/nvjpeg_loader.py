"""The training loader of the nvJPEG path (``--loader nvjpeg``; scoring uses the collecting
loader's nvJPEG batches): JPEG bytes read in threads, a batch decoded in one torchvision
``decode_jpeg`` call on the device, the contract and the torch path's augmentation there.

A file of the batch that torchvision cannot decode is decoded by PIL (the pixels the PIL path
gives it); one PIL cannot decode either is left out of its batch, named on stderr and listed in
:attr:`NvjpegLoader.skipped`, as :class:`cxr_fast.data.torch_loader.TorchLoader` does.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future

import torch

from cxr_fast.data.augment import augment_image, sample_generator
from cxr_fast.data.batch import Batch, drops_last, labels_tensor, num_batches
from cxr_fast.data.decode import ImageReadError, read_gray
from cxr_fast.data.loader_spec import LoaderSpec, TrainMode
from cxr_fast.data.nvjpeg import contract_planes, decode_gray, read_ahead, to_model_input
from cxr_fast.messages import to_stderr


class NvjpegLoader:
    """Iterable of :class:`Batch` decoded by torchvision on ``spec.device``: ``spec``'s shard,
    in train mode with ``train`` (see :mod:`cxr_fast.data.loader_spec` for both)."""

    def __init__(self, spec: LoaderSpec, train: TrainMode | None = None) -> None:
        self.spec, self.train = spec, train
        self.device = spec.device
        self._positions = spec.positions()
        # On the device once: no copy per batch (the decode synchronises anyway).
        labels = labels_tensor([spec.records[p].label for p in self._positions])
        self._labels = labels.to(self.device)
        self._generator = torch.Generator().manual_seed(train.seed if train is not None else 0)
        self.epoch = 0
        self.skipped: list[tuple[str, str]] = []  # (path, reason) of files left out

    def __len__(self) -> int:
        return num_batches(len(self._positions), self.spec.batch_size, self.train is not None)

    def _order(self) -> list[int]:
        """Local indices of this pass: shuffled by the seed in train mode, else file order."""
        n = len(self._positions)
        if self.train is None:
            return list(range(n))
        order = torch.randperm(n, generator=self._generator).tolist()
        size = self.spec.batch_size
        return order[: n - n % size] if drops_last(n, size, True) else order

    def __iter__(self) -> Iterator[Batch]:
        order, size = self._order(), self.spec.batch_size
        chunks = [order[i : i + size] for i in range(0, len(order), size)]
        paths = [[self._path(i) for i in chunk] for chunk in chunks]
        for chunk, reads in zip(chunks, read_ahead(paths, self.spec.workers), strict=True):
            batch = self._batch(chunk, reads)
            if batch is not None:
                yield batch
        if self.train is not None:
            self.epoch += 1

    def _path(self, local: int) -> str:
        return self.spec.records[self._positions[local]].path

    def _batch(self, chunk: list[int], reads: list[Future]) -> Batch | None:
        """One batch of local indices ``chunk`` from their pending reads (None: none decoded)."""
        contract = self.spec.contract
        try:
            x = contract_planes(decode_gray([f.result() for f in reads], self.device), contract)
        except (RuntimeError, OSError, ValueError):
            chunk, x = self._one_by_one(chunk)
            if not chunk:
                return None
        if self.train is not None and self.train.augment is not None:
            x = torch.stack([self._augmented(plane, i) for plane, i in zip(x, chunk, strict=True)])
        return Batch(
            x=to_model_input(x, contract),
            y=self._labels[torch.tensor(chunk, dtype=torch.int64, device=self.device)],
            index=torch.tensor([self._positions[i] for i in chunk], dtype=torch.int64),
        )

    def _augmented(self, plane: torch.Tensor, local: int) -> torch.Tensor:
        generator = sample_generator(self.train.seed, self.epoch, local)
        return augment_image(plane, self.train.augment, generator)

    def _one_by_one(self, chunk: list[int]) -> tuple[list[int], torch.Tensor | None]:
        """A failed batch's files each through PIL; those that fail there are skipped."""
        kept, planes = [], []
        for i in chunk:
            try:
                pixels, _ = read_gray(self._path(i), self.spec.contract)
            except ImageReadError as exc:
                self.skipped.append((self._path(i), exc.reason))
                to_stderr(f"cxr-fast: skipped {self._path(i)}: {exc.reason}")
                continue
            kept.append(i)
            planes.append(torch.from_numpy(pixels).unsqueeze(0))
        if not planes:
            return [], None
        return kept, torch.stack(planes).to(self.device)
