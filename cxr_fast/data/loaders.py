"""One entry point for every loader: pick the backend, build it, get :class:`Batch` batches."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from cxr_fast.choices import LOADERS
from cxr_fast.contract import PreprocessContract
from cxr_fast.data.augment import Augment
from cxr_fast.data.collecting_loader import CollectingLoader
from cxr_fast.data.dali_pipeline import DaliLoader, dali_available
from cxr_fast.data.discover import Record
from cxr_fast.data.file_item import FileItem
from cxr_fast.data.filecheck import dali_decodes
from cxr_fast.data.shard import shard_range
from cxr_fast.data.torch_loader import TorchLoader
from cxr_fast.device import resolve_device
from cxr_fast.errors import UserInputError

ON_ERROR = ("skip", "collect")

# Chosen by measurement (`make bench`, docs/benchmarks.md): on a CPU host the PIL path with JPEG
# draft decoding beats DALI-CPU on full-resolution films, because DALI decodes every pixel.
DEFAULT_CPU_LOADER = "torch"


def dali_can_read(records: Sequence[Record]) -> bool:
    """True when DALI decodes every record to the same pixels as PIL, by each file's header
    (not its name): JPEG, or PNG that is not 16-bit, palette or with alpha (one intensity rule
    for every loader; see :func:`cxr_fast.data.filecheck.dali_decodes`)."""
    return _first_unreadable(records) is None


def _first_unreadable(records: Sequence[Record]) -> str | None:
    """The first record DALI should not decode, or None."""
    return next((r.path for r in records if not dali_decodes(r.path)), None)


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
    preferred = "dali" if device.type == "cuda" else DEFAULT_CPU_LOADER
    # Asking only when DALI would be chosen keeps its import off a CPU host's start-up.
    if preferred == "torch" or not dali_available() or not dali_can_read(records):
        return "torch"
    return "dali"


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
    on_error: str = "skip",
    positions: Sequence[int] | None = None,
    skip_views: Sequence[str] = (),
    decoded: Sequence[FileItem] = (),
) -> DaliLoader | TorchLoader | CollectingLoader:
    """Build the loader for ``records``: float32 batches ``x[N,1,S,S]`` channels_last on
    ``device`` (autocast, not the loader, lowers precision), each a :class:`Batch`.

    Eval mode (``train=False``) keeps file order and the last partial batch; train mode shuffles,
    applies ``augment`` (None: no augmentation) and drops a last partial batch.
    ``workers`` is DALI's thread count or the DataLoader's worker processes.

    ``on_error``: ``"skip"`` (training and the pre-flight-checked stages) leaves a file that
    fails to decode out of its batch and lists it in the loader's ``skipped``. ``"collect"``
    (eval mode only) accounts for every file in the batches themselves (``Batch.errors``,
    ``skipped``, ``sizes``, ``info``), routes each file by its header (JPEGs to DALI, the rest
    to PIL) and reads ``records[positions]`` (default: this shard's records), skipping DICOM
    views in ``skip_views``: see :mod:`cxr_fast.data.collecting_loader`. ``decoded``
    (collect mode): files of the first ``positions`` already read, in order, batched first.
    """
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {', '.join(ON_ERROR)}, got {on_error!r}")
    if batch_size < 1:
        raise UserInputError(f"batch size must be at least 1, got {batch_size}")
    if not records:
        raise UserInputError("no images to load")
    target = resolve_device(device)
    if on_error == "collect":
        if train:
            raise ValueError("a collecting loader is for inference: train must be False")
        if positions is None:
            positions = list(shard_range(len(records), shard_id, num_shards))
        # The collecting loader sends what DALI cannot read to PIL itself (by each header, on
        # its DALI path only), so no file refuses --loader dali here, and no header is read
        # before the loader runs (on a CPU host, none at all).
        return CollectingLoader(
            records,
            positions,
            contract,
            backend=resolve_loader(loader, target, ()),
            batch_size=batch_size,
            workers=workers,
            device=target,
            skip_views=skip_views,
            decoded=decoded,
        )
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
