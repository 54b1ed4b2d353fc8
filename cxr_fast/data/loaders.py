"""The two loader factories: :func:`make_train_loader` for training epochs and
:func:`make_scoring_loader` for every stage that turns films into probabilities. Both take a
:class:`cxr_fast.data.loader_spec.LoaderSpec`, pick the backend and yield :class:`Batch`."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from cxr_fast.choices import LOADERS
from cxr_fast.data.augment import Augment
from cxr_fast.data.collecting_loader import CollectingLoader
from cxr_fast.data.dali_pipeline import DaliLoader, dali_available
from cxr_fast.data.discover import Record
from cxr_fast.data.file_item import FileItem
from cxr_fast.data.filecheck import dali_decodes, is_jpeg_file
from cxr_fast.data.loader_spec import LoaderSpec, TrainLoader, TrainMode
from cxr_fast.data.nvjpeg import nvjpeg_available
from cxr_fast.data.nvjpeg_loader import NvjpegLoader
from cxr_fast.data.torch_loader import TorchLoader
from cxr_fast.errors import UserInputError

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
    """The concrete backend (``dali``, ``nvjpeg`` or ``torch``) for a request, a device and
    the files. ``auto``: on CUDA, DALI when it imports and reads every file, else nvJPEG when
    every file is a JPEG, else PIL; on a CPU, the measured faster one."""
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
    if loader == "nvjpeg":
        return _nvjpeg_for(records)
    if loader == "torch" or device.type != "cuda":
        return "torch" if loader == "torch" else DEFAULT_CPU_LOADER
    # Asking only on CUDA keeps DALI's import off a CPU host's start-up.
    if dali_available() and dali_can_read(records):
        return "dali"
    if nvjpeg_available() and _first_not_jpeg(records) is None:
        return "nvjpeg"
    return "torch"


def _first_not_jpeg(records: Sequence[Record]) -> str | None:
    return next((r.path for r in records if not is_jpeg_file(r.path)), None)


def _nvjpeg_for(records: Sequence[Record]) -> str:
    """``nvjpeg`` when torchvision decodes JPEGs here and every record is one (by its header;
    scoring passes none: its loader routes each file itself)."""
    if not nvjpeg_available():
        raise UserInputError("--loader nvjpeg needs torchvision's decode_jpeg (torchvision)")
    first = _first_not_jpeg(records)
    if first is not None:
        raise UserInputError(
            f"--loader nvjpeg trains on JPEG files only (e.g. not {first}); use --loader torch"
        )
    return "nvjpeg"


def make_train_loader(
    spec: LoaderSpec, loader: str = "auto", *, augment: Augment | None = None, seed: int = 0
) -> TrainLoader:
    """One training epoch over ``spec``'s shard: shuffled by ``seed``, ``augment`` applied
    (None: no augmentation), a last partial batch dropped. ``loader``: ``auto``, ``dali`` or
    ``torch`` (:func:`resolve_loader`). The PIL loader leaves a file that fails to decode (one
    that went bad after the pre-flight check) out of its batch and lists it in ``skipped``."""
    train = TrainMode(augment=augment, seed=seed)
    backend = resolve_loader(loader, spec.device, spec.records)
    if backend == "dali":
        return DaliLoader(spec, train)
    if backend == "nvjpeg":
        return NvjpegLoader(spec, train)
    return TorchLoader(spec, train)


def make_scoring_loader(
    spec: LoaderSpec,
    loader: str = "auto",
    *,
    positions: Sequence[int] | None = None,
    skip_views: Sequence[str] = (),
    decoded: Sequence[FileItem] = (),
    keep_workers: bool = False,
) -> CollectingLoader:
    """Films in file order for every stage that turns them into probabilities (score,
    evaluate, calibrate, validation): every file of ``spec.records[positions]`` (default: the
    spec's shard) accounted for in the batches (``Batch.errors``, ``skipped``, ``sizes``,
    ``info``), each routed by its header (JPEGs to DALI with ``loader`` ``dali``, to
    torchvision's decoder with ``nvjpeg``, the rest to PIL), DICOM views in ``skip_views``
    skipped; see :mod:`cxr_fast.data.collecting_loader`.
    ``decoded``: files of the first ``positions`` already read, in order, batched first.
    ``keep_workers``: a loader iterated again (validation, every epoch) keeps its PIL worker
    processes between passes."""
    # The collecting loader sends what DALI cannot read to PIL itself (by each header, on its
    # DALI path only), so no file refuses --loader dali here, and no header is read before the
    # loader runs (on a CPU host, none at all).
    return CollectingLoader(
        spec,
        backend=resolve_loader(loader, spec.device, ()),
        positions=positions,
        skip_views=skip_views,
        decoded=decoded,
        keep_workers=keep_workers,
    )
