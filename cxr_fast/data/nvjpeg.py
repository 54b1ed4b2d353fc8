"""torchvision's JPEG decoder as a loader backend (``--loader nvjpeg``): a batch of JPEG files'
bytes decoded in one ``torchvision.io.decode_jpeg`` call on the batch's device (nvJPEG on CUDA,
libjpeg-turbo on a CPU), then the contract's crop, resize and scaling there with torch ops.

It needs only torch and torchvision, so it is the GPU path of hosts without DALI (conda, CUDA
13, ARM). Decoding is the whole image (no draft scaling as in the PIL path), as DALI does.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from cxr_fast.contract import PreprocessContract
from cxr_fast.data.batch import normalise_uint8
from cxr_fast.data.equalize import equalize_uint8


@functools.cache
def nvjpeg_available() -> bool:
    """True when torchvision's ``decode_jpeg`` imports (every supported torchvision has it)."""
    try:
        from torchvision.io import decode_jpeg  # noqa: F401
    except ImportError:  # a broken or absent torchvision: the PIL path still works
        return False
    return True


def read_bytes(path: str) -> torch.Tensor:
    """A file's bytes as a uint8 tensor (what ``decode_jpeg`` takes); OSError when unreadable,
    ValueError when empty."""
    data = Path(path).read_bytes()
    if not data:
        raise ValueError(f"{path}: empty file")
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def read_ahead(chunks: Sequence[Sequence[str]], workers: int) -> Iterator[list[Future]]:
    """Each chunk's pending reads (:func:`read_bytes`) in order, in ``workers`` threads; the
    next chunk's reads start before the current one is handed out, so decoding one batch
    overlaps reading the next."""
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="cxr-read") as pool:
        pending = [pool.submit(read_bytes, path) for path in chunks[0]] if chunks else []
        for k in range(len(chunks)):
            current = pending
            if k + 1 < len(chunks):
                pending = [pool.submit(read_bytes, path) for path in chunks[k + 1]]
            yield current


def decode_gray(datas: Sequence[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """JPEG bytes -> grey uint8 [1,H,W] planes on ``device``, in one batched call. Raises
    RuntimeError when any file does not decode; libjpeg's warnings about corrupt data count as
    failures too, since the PIL path refuses those files and every loader must give the same
    rows."""
    from torchvision.io import ImageReadMode, decode_jpeg

    target = "cuda" if device.type == "cuda" else "cpu"
    if device.type == "cuda":
        # torchvision's CUDA decoder writes on a stream of its own, not ordered against the
        # caller's: memory the caching allocator hands it may still be read by work queued on
        # ours, and the batch came out corrupted on H100s (pytorch/vision#9606). Drain ours.
        torch.cuda.current_stream(device).synchronize()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        # torchvision 0.29 deprecates its image codecs for TorchCodec (docs/gpu.md): still
        # there, and the GPU host's older torchvision has no such notice.
        warnings.filterwarnings("ignore", "The image decoding", DeprecationWarning)
        try:
            with torch.cuda.device(device) if device.type == "cuda" else nullcontext():
                planes = decode_jpeg(list(datas), mode=ImageReadMode.GRAY, device=target)
        except UserWarning as warning:
            raise RuntimeError(f"corrupt JPEG data: {warning}") from None
    return list(planes)


def _interpolation(name: str):
    from torchvision.transforms.v2 import InterpolationMode

    # NEAREST_EXACT is PIL's nearest (pixel centres); NEAREST is OpenCV's legacy one.
    modes = {
        "linear": InterpolationMode.BILINEAR,
        "cubic": InterpolationMode.BICUBIC,
        "nearest": InterpolationMode.NEAREST_EXACT,
    }
    return modes[name]


def contract_plane(plane: torch.Tensor, contract: PreprocessContract) -> torch.Tensor:
    """One grey uint8 [1,H,W] plane -> uint8 [1,S,S]: the contract's central crop (to whole
    pixels) and antialiased resize, as PIL's ``resize`` does them."""
    from torchvision.transforms.v2 import functional as TF

    height, width = plane.shape[-2:]
    if contract.crop != 1.0:
        left, top, right, bottom = contract.crop_box(width, height)
        plane = plane[:, round(top) : round(bottom), round(left) : round(right)]
    size = contract.image_size
    return TF.resize(
        plane, [size, size], interpolation=_interpolation(contract.interpolation), antialias=True
    )


def contract_planes(planes: Sequence[torch.Tensor], contract: PreprocessContract) -> torch.Tensor:
    """Decoded planes of any sizes -> uint8 [N,1,S,S] per the contract (equalised when it says
    so, with the host decoders' :func:`equalize_uint8`, the one formula of every loader)."""
    x = torch.stack([contract_plane(plane, contract) for plane in planes])
    if contract.normalize == "equalize":
        # Rare (a contract measured and not adopted): the host round trip is not worth a twin.
        host = np.stack([equalize_uint8(plane) for plane in x.cpu().numpy()])
        x = torch.from_numpy(host).to(x.device)
    return x


def to_model_input(
    x: torch.Tensor, contract: PreprocessContract, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """uint8 [N,1,S,S] -> the model's float [N,1,S,S] channels_last input per the contract."""
    return normalise_uint8(x.permute(0, 2, 3, 1), contract, dtype)


def decode_batch(
    datas: Sequence[torch.Tensor], contract: PreprocessContract, device: torch.device
) -> torch.Tensor:
    """JPEG bytes -> the model's input on ``device`` (:func:`decode_gray`, then the contract)."""
    return to_model_input(contract_planes(decode_gray(datas, device), contract), contract)
