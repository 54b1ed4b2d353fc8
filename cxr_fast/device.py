"""Device selection shared by every stage."""

from __future__ import annotations

import torch

from cxr_fast.errors import UserInputError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` -> CUDA when present, else CPU; ``cuda`` without a GPU is a user error."""
    if device not in DEVICES and not device.startswith("cuda:"):
        raise UserInputError(
            f"device must be one of {', '.join(DEVICES)} or cuda:N, got {device!r}"
        )
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserInputError(f"--device {device} was asked for, but CUDA is not available here")
    return torch.device(device)


def cuda_device(device: torch.device) -> torch.device:
    """``device`` with its index: plain ``cuda`` means the current CUDA device.

    APIs that take a device index (``torch.cuda.device``, TensorRT engines) need the number,
    and "the current device" is a process-wide setting that can change under them.
    """
    if device.type != "cuda":
        raise ValueError(f"expected a CUDA device, got {device}")
    if device.index is not None:
        return device
    return torch.device("cuda", torch.cuda.current_device())


def cuda_has_native_bf16(device: torch.device) -> bool:
    """True where ``device`` (not merely the current GPU) computes bf16 natively (sm80+).

    ``torch.cuda.is_bf16_supported()`` asks about the current device and, by default, counts
    emulation: it is True on sm75 (T4), where bf16 convolutions are emulated and slower than
    fp16, so the question is asked without emulation with ``device`` made current.
    """
    with torch.cuda.device(cuda_device(device)):
        return torch.cuda.is_bf16_supported(including_emulation=False)
