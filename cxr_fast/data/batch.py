"""The batch every loader yields, whichever backend produced it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import NamedTuple

import numpy as np
import torch

from cxr_fast.contract import PER_IMAGE_EPSILON, PreprocessContract


class Batch(NamedTuple):
    """``x`` [N,1,H,W] channels_last floats, ``y`` [N] int64 labels (-1 unknown), ``index`` [N]
    int64 positions in the record list the loader was built from.

    The scoring loader (:func:`cxr_fast.data.loaders.make_scoring_loader`) accounts for every
    file it was given: ``sizes`` holds each decoded image's original (width, height); ``errors``
    (position, reason) the files that could not be decoded, ``skipped`` (position, reason)
    those deliberately not decoded (DICOM objects that are not images, ``skip_views``), and
    ``info`` position -> extra columns (DICOM identifiers, decoder warnings) of any of them.
    ``x`` is None when no file of the batch decoded.
    """

    x: torch.Tensor | None
    y: torch.Tensor
    index: torch.Tensor
    sizes: Sequence[tuple[int, int]] | None = None
    errors: Sequence[tuple[int, str]] = ()
    skipped: Sequence[tuple[int, str]] = ()
    info: Mapping[int, dict] = MappingProxyType({})

    @property
    def files(self) -> int:
        """How many files the batch accounts for: decoded, failed and skipped."""
        return len(self.index) + len(self.errors) + len(self.skipped)


def labels_tensor(labels: list[int | None]) -> torch.Tensor:
    """Record labels as an int64 tensor, -1 where unknown."""
    return torch.tensor([-1 if label is None else label for label in labels], dtype=torch.int64)


def to_device_async(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host ``tensor`` on ``device`` without the host waiting for the copy.

    A copy from pageable memory to a GPU returns only when the GPU has the data: a host/GPU
    synchronisation on every step for a few bytes of labels. Pinned first, it is queued on
    the stream like the kernels that read it. On the CPU it is the tensor itself.
    """
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def normalise_uint8(
    images: torch.Tensor, contract: PreprocessContract, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """uint8 [N,H,W,1] (HWC, as decoders produce) -> [N,1,H,W] channels_last per the contract.

    The permute of an NHWC buffer *is* a channels_last NCHW tensor, so no copy is made for layout.
    """
    x = images.permute(0, 3, 1, 2).to(dtype)
    scale, offset = contract.affine
    x = x.mul_(scale).add_(offset) if offset else x.mul_(scale)
    if contract.normalize == "per-image":
        x = standardise_per_image(x)
    return x


def standardise_per_image(x: torch.Tensor) -> torch.Tensor:
    """Each [1,H,W] image of ``x`` to zero mean and unit variance (population variance plus
    :data:`PER_IMAGE_EPSILON`, as DALI's ``fn.normalize`` computes it); layout is kept."""
    stats = x.float()
    mean = stats.mean(dim=(1, 2, 3), keepdim=True)
    var = stats.var(dim=(1, 2, 3), keepdim=True, unbiased=False)
    return ((stats - mean) * torch.rsqrt(var + PER_IMAGE_EPSILON)).to(x.dtype)


def stack_gray(
    planes: Sequence[np.ndarray], contract: PreprocessContract, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """uint8 [S,S] planes from the host decoder -> the model's [N,1,S,S] input."""
    return normalise_uint8(torch.from_numpy(np.stack(planes)).unsqueeze(-1), contract, dtype)


def drops_last(n: int, batch_size: int, train: bool) -> bool:
    """Training drops a last partial batch (BatchNorm needs more than one sample) unless that
    would leave nothing; evaluation never drops a sample."""
    return train and n > batch_size


def num_batches(n: int, batch_size: int, train: bool) -> int:
    """Batches per pass over ``n`` samples under the :func:`drops_last` rule."""
    return n // batch_size if drops_last(n, batch_size, train) else -(-n // batch_size)
