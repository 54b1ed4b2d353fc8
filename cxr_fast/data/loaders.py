"""One entry point for every loader: pick the backend, build it, get :class:`Batch` batches."""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from cxr_fast.choices import LOADERS
from cxr_fast.contract import PreprocessContract
from cxr_fast.data.augment import Augment
from cxr_fast.data.dali_pipeline import DALI_EXTENSIONS, DaliLoader, dali_available
from cxr_fast.data.discover import Record
from cxr_fast.data.filecheck import png_needs_pil
from cxr_fast.data.torch_loader import TorchLoader
from cxr_fast.device import resolve_device
from cxr_fast.errors import UserInputError

# Chosen by measurement (`make bench`, docs/benchmarks.md): on a CPU host the PIL path with JPEG
# draft decoding beats DALI-CPU on full-resolution films, because DALI decodes every pixel.
DEFAULT_CPU_LOADER = "torch"


def dali_can_read(records: Sequence[Record]) -> bool:
    """True when DALI decodes every record to the same pixels as PIL: not DICOM, and no PNG
    that is 16-bit, palette or with alpha (one intensity rule for every loader; see
    :func:`cxr_fast.data.filecheck.png_needs_pil`)."""
    return _first_unreadable(records) is None


def _first_unreadable(records: Sequence[Record]) -> str | None:
    """The first record DALI should not decode, or None."""
    for record in records:
        extension = os.path.splitext(record.path)[1].lower()
        if extension not in DALI_EXTENSIONS:
            return record.path
        if extension == ".png" and png_needs_pil(record.path):
            return record.path
    return None


def resolve_loader(loader: str, device: torch.device, records: Sequence[Record]) -> str:
    """The concrete backend (``dali`` or ``torch``) for a request, a device and the files."""
    if loader not in LOADERS:
        raise UserInputError(f"loader must be one of {', '.join(LOADERS)}, got {loader!r}")
    if loader == "dali":
        if not dali_available():
            raise UserInputError("--loader dali needs NVIDIA DALI: pip install nvidia-dali-cuda120")
        first = _first_unreadable(records)
        if first is not None:
            raise UserInputError(
                f"--loader dali cannot read DICOM files nor decode 16-bit, palette or alpha PNGs "
                f"as PIL does (e.g. {first}); use --loader torch"
            )
        return "dali"
    if loader == "torch":
        return "torch"
    if not dali_available() or not dali_can_read(records):
        return "torch"
    return "dali" if device.type == "cuda" else DEFAULT_CPU_LOADER


def make_loader(
    records: Sequence[Record],
    contract: PreprocessContract,
    *,
    batch_size: int,
    loader: str = "auto",
    device: str = "auto",
    train: bool = False,
    augment: Augment | None = None,
    shard_id: int = 0,
    num_shards: int = 1,
    workers: int = 2,
    seed: int = 0,
) -> DaliLoader | TorchLoader:
    """Build the loader for ``records``: float32 batches ``x[N,1,S,S]`` channels_last on
    ``device`` (autocast, not the loader, lowers precision).

    Eval mode (``train=False``) keeps file order and the last partial batch; train mode shuffles,
    applies ``augment`` (None: no augmentation) and drops a last partial batch.
    ``workers`` is DALI's thread count or the DataLoader's worker processes.
    """
    if batch_size < 1:
        raise UserInputError(f"batch size must be at least 1, got {batch_size}")
    if not records:
        raise UserInputError("no images to load")
    target = resolve_device(device)
    common = dict(
        batch_size=batch_size,
        train=train,
        augment=augment,
        shard_id=shard_id,
        num_shards=num_shards,
        seed=seed,
    )
    if resolve_loader(loader, target, records) == "dali":
        return DaliLoader(
            records,
            contract,
            device="gpu" if target.type == "cuda" else "cpu",
            device_id=target.index or 0,
            num_threads=max(1, workers),
            **common,
        )
    return TorchLoader(records, contract, num_workers=workers, device=str(target), **common)
