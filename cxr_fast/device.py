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
