"""``export --format auto``: the export that scores fastest on this host, from measurements.

- CUDA with Torch-TensorRT: TensorRT fp16. CUDA without it: pt2 fp32.
- A CPU with x86 int8 kernels: int8, through the path measured fastest for the architecture
  on this kind of CPU (docs/benchmarks.md, "int8 paths"): ONNX Runtime's QDQ where the onnx
  extra is installed, except for architectures where torch.ao FX ran faster; FX otherwise.
- Any other CPU: TorchScript fp32.
"""

from __future__ import annotations

import torch

from cxr_fast.export.int8 import QUANTIZED_ENGINE
from cxr_fast.export.onnx import onnx_missing

# Architectures whose int8 model ran faster through torch.ao FX (TorchScript) than through
# ONNX Runtime on the development CPU (AMD EPYC, AVX-512 VNNI; docs/benchmarks.md, model alone,
# batch 16: cnn 2,566 vs 2,066 images/s, resnet18 308 vs 263). The others are unmeasured.
FX_INT8_FASTER = frozenset({"cnn", "resnet18"})


def auto_export(arch: str, device: torch.device) -> tuple[str, str, str]:
    """(format, precision, why) of the fastest export of ``arch`` for ``device``."""
    if device.type == "cuda":
        try:
            import torch_tensorrt  # noqa: F401
        except ImportError:
            return "pt2", "fp32", "CUDA without Torch-TensorRT: pt2 fp32"
        return "tensorrt", "fp16", "CUDA with Torch-TensorRT: TensorRT fp16"
    if QUANTIZED_ENGINE not in torch.backends.quantized.supported_engines:
        return "torchscript", "fp32", "no x86 int8 kernels in this PyTorch: TorchScript fp32"
    if arch in FX_INT8_FASTER:
        return "torchscript", "int8", f"int8; for {arch} torch.ao FX ran faster than ONNX Runtime"
    missing = onnx_missing()
    if missing is not None:
        return (
            "torchscript",
            "int8",
            f"int8 through torch.ao FX ({missing} missing; ONNX Runtime int8 is the choice "
            f"for {arch}: pip install 'cxr-fast[onnx]')",
        )
    fx = ", ".join(sorted(FX_INT8_FASTER))
    return "onnx", "int8", f"int8 through ONNX Runtime (torch.ao FX is faster only for {fx})"
