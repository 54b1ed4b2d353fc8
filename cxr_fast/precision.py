"""One precision policy: ``fp32``, ``amp-bf16`` or ``amp-fp16`` -> an autocast context and a
GradScaler that is enabled only for fp16 (bf16 has fp32's exponent range and needs none)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

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

    def autocast(self, model: nn.Module | None = None) -> contextlib.AbstractContextManager:
        """Context for the forward pass *and* the loss. With ``model`` (inference), the
        convolutions that see the grey image itself stay fp32 (:func:`image_convs_fp32`)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        cast = torch.autocast(device_type=self.device_type, dtype=self.dtype)
        if model is None:
            return cast
        stack = contextlib.ExitStack()
        stack.enter_context(cast)
        stack.enter_context(image_convs_fp32(model, self.device_type, self.dtype))
        return stack

    def scaler(self) -> torch.amp.GradScaler:
        """A GradScaler, enabled only for fp16."""
        return torch.amp.GradScaler(self.device_type, enabled=self.name == "amp-fp16")


@contextlib.contextmanager
def image_convs_fp32(model: nn.Module, device_type: str, dtype: torch.dtype = torch.bfloat16):
    """Run the convolutions that take the grey image (one input channel: each member's stem)
    in fp32 inside an autocast block.

    A bf16 input keeps 8 bits of mantissa, so autocast rounds the image itself before the
    first layer; on the Kaggle sample that alone moved probabilities by up to 0.077 (cnn) and
    0.022 (5-member ensemble) against fp32. With the stem in fp32 the largest change drops to
    0.004 and 0.001 (docs/benchmarks.md). The stem's output is handed on in ``dtype``: left in
    fp32 the layers after it ran in fp32 too, and the cnn fell from 1,074 to 461 images/s.
    """
    handles = []

    def enter(module, args):
        module._cxr_fast_fp32 = torch.autocast(device_type=device_type, enabled=False)
        module._cxr_fast_fp32.__enter__()
        return tuple(a.float() if torch.is_tensor(a) else a for a in args)

    def leave(module, args, output):
        module._cxr_fast_fp32.__exit__(None, None, None)
        del module._cxr_fast_fp32
        return output.to(dtype)  # the layers after the stem compute in the autocast dtype

    for module in model.modules():
        if isinstance(module, nn.Conv2d) and module.in_channels == 1:
            handles.append(module.register_forward_pre_hook(enter))
            handles.append(module.register_forward_hook(leave))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


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


def inference_precision(device: torch.device, name: str = "auto") -> Precision:
    """The precision an inference stage (evaluate, score, serve, explain, calibrate,
    out-of-fold predictions) runs at; ``name`` is the user's ``--precision``. ``auto``, as in
    training: bf16 autocast on CPUs with native bf16 (about twice fp32's speed; probabilities
    within 0.01 of fp32 and ROC-AUC within 0.002 on the Kaggle sample, docs/benchmarks.md) and
    fp32 on other CPUs; bf16 (else fp16) on CUDA. Every stage resolves the same name the same
    way, so they all give the same probability for a film."""
    return resolve_precision(name, device)
