"""int8: post-training static quantization with PyTorch FX graph mode, for the CPU.

PyTorch 2.14 moved the newer PT2E flow (prepare_pt2e/convert_pt2e) to torchao, which is not a
dependency of cxr-fast; FX graph mode still ships with torch, quantizes the registry's convnets
(conv+BN+ReLU fusion, per-channel weights), and its output traces to TorchScript.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import nn

from cxr_fast.export.common import ExportError

QUANTIZED_ENGINE = "x86"


def require_int8_kernels() -> None:
    """ExportError when this PyTorch build has no x86 quantized kernels (FBGEMM/oneDNN)."""
    if QUANTIZED_ENGINE not in torch.backends.quantized.supported_engines:
        raise ExportError(
            "int8 needs PyTorch's x86 quantized kernels, which this CPU/build lacks "
            f"(available: {', '.join(torch.backends.quantized.supported_engines)})"
        )


def quantize_int8(
    model: nn.Module, example: torch.Tensor, calibration: Iterable[torch.Tensor], arch: str
) -> nn.Module:
    """An int8 copy of ``model`` (CPU), its activation ranges observed on ``calibration``.

    Call inside :func:`cxr_fast.export.notes.warnings_to_notes`: torch.ao warns on every use.
    """
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    require_int8_kernels()
    model = copy.deepcopy(model).cpu().eval()
    mapping = get_default_qconfig_mapping(QUANTIZED_ENGINE)
    stem = _stem_conv(model)
    if stem is not None:
        # The stem convolution sees the raw grey image (one input channel, ~2% of the compute).
        # Quantizing it caused most of int8's error: on the Kaggle cnn at 224 px, keeping it
        # fp32 cut the largest held-out probability change from 0.24 to 0.06.
        mapping = mapping.set_module_name(stem, None)
    saved_engine = torch.backends.quantized.engine
    torch.backends.quantized.engine = QUANTIZED_ENGINE
    try:
        try:
            prepared = prepare_fx(model, mapping, example_inputs=(example,))
        except Exception as exc:  # torch.fx raises many types for untraceable code
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ExportError(
                f"int8: torch.fx cannot trace the {arch} architecture ({first}); "
                "export it as fp32 instead"
            ) from exc
        with torch.no_grad():
            seen = 0
            for x in calibration:
                prepared(x)
                seen += len(x)
        if not seen:
            raise ExportError("int8 calibration needs at least one image")
        return _constant_qparams(convert_fx(prepared))
    finally:
        torch.backends.quantized.engine = saved_engine


def _constant_qparams(module: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Store the output scale and zero point that FX hands to ``torch.ops.quantized`` functions
    (the residual ``add``/``add_relu`` of a ResNet) as Python numbers instead of 0-d tensors.

    Those ops take Python numbers; given a tensor, ``torch.jit.trace`` converts it and warns
    that the trace "might not generalize to other inputs". The values are constants fixed by
    calibration, so the trace was right; as numbers they are traced as the constants they are,
    and the warning (which used to reach the user as an export note) has no cause left.
    """
    changed = False
    for node in module.graph.nodes:
        if node.op != "get_attr":
            continue
        value = getattr(module, node.target, None)
        feeds_quantized_op = any(
            user.op == "call_function" and "quantize" in str(user.target) for user in node.users
        )
        if isinstance(value, torch.Tensor) and value.ndim == 0 and feeds_quantized_op:
            number = value.item()
            delattr(module, node.target)
            setattr(module, node.target, number)
            changed = True
    if changed:
        module.recompile()
    return module


def _stem_conv(model: nn.Module) -> str | None:
    """Name of the first convolution, the one that sees the image."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return name
    return None
