"""One precision policy: ``fp32``, ``amp-bf16`` or ``amp-fp16`` -> an autocast context and a
GradScaler that is enabled only for fp16 (bf16 has fp32's exponent range and needs none)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from cxr_fast.choices import PRECISIONS
from cxr_fast.device import cuda_has_native_bf16
from cxr_fast.errors import UserInputError

_DTYPES = {"amp-bf16": torch.bfloat16, "amp-fp16": torch.float16}


@dataclass(frozen=True)
class Precision:
    """A resolved precision for one device type."""

    name: str
    device_type: str

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype, None for fp32."""
        return _DTYPES.get(self.name)

    def autocast(self) -> contextlib.AbstractContextManager:
        """Context for the forward pass *and* the loss."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def scaler(self) -> torch.amp.GradScaler:
        """A GradScaler, enabled only for fp16."""
        return torch.amp.GradScaler(self.device_type, enabled=self.name == "amp-fp16")


def cpu_has_native_bf16() -> bool:
    """True where the CPU computes bf16 natively (AVX512-BF16 or AMX), by torch's own checks.

    oneDNN also runs bf16 on plain AVX-512 or AVX2 by emulation, which is slower than fp32, so
    ``torch.ops.mkldnn._is_mkldnn_bf16_supported()`` (true there too) is not the question.
    """
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def resolve_precision(name: str, device: torch.device) -> Precision:
    """``auto`` -> bf16 autocast on CUDA where supported, else fp16 with a GradScaler; on the CPU
    bf16 autocast where the processor has native bf16 (:func:`cpu_has_native_bf16`), else fp32."""
    if name not in PRECISIONS:
        raise UserInputError(f"precision must be one of {', '.join(PRECISIONS)}, got {name!r}")
    if name == "auto":
        if device.type != "cuda":
            name = "amp-bf16" if cpu_has_native_bf16() else "fp32"
        else:
            name = "amp-bf16" if cuda_has_native_bf16(device) else "amp-fp16"
    if name == "amp-fp16" and device.type != "cuda":
        raise UserInputError(
            "--precision amp-fp16 needs a CUDA device; use fp32 or amp-bf16 on CPU"
        )
    return Precision(name=name, device_type=device.type)


def inference_precision(device: torch.device) -> Precision:
    """The precision every inference stage (evaluate, score, serve, explain, calibrate,
    out-of-fold predictions) runs at, so they all give the same probability for a film: fp32
    on the CPU (bf16 there is for training, where it doubles the step rate), the ``auto``
    choice on CUDA."""
    return resolve_precision("fp32" if device.type != "cuda" else "auto", device)
