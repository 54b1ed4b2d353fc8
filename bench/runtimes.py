"""The model of a run on every CPU runtime worth comparing, each as ``forward(x) -> logits``.

cxr-fast's own int8 paths are built by the functions ``cxr-fast export`` calls (torch.ao FX
traced to TorchScript; ONNX Runtime static QDQ); the runtimes a user might pick instead are
OpenVINO (the optional extra ``cxr-fast[bench]``) and torchao's PT2E int8 with
``X86InductorQuantizer``, lowered by ``torch.compile`` (inductor, which compiles C++ kernels
on the scoring host), by AOTInductor (the same compilation ahead of time, into a package that
loads without a compiler) or by ``lower_pt2e_quantized_to_x86`` (oneDNN's int8 kernels from an
FX graph, no compiler). A missing package raises :class:`Skipped` with one line.
"""

from __future__ import annotations

import copy
import importlib.util
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from cxr_fast.export.int8 import quantize_int8
from cxr_fast.export.onnx import EXTRA_HINT, load_onnx, onnx_missing, quantize_onnx_int8
from cxr_fast.export.torchscript import load_torchscript, save_torchscript

Forward = Callable[[torch.Tensor], torch.Tensor]
BENCH_HINT = "pip install 'cxr-fast[bench]'"
# OpenVINO's CPU plugin hint: LATENCY runs one request on all the cores it is given, as the
# scorer calls the model (one batch at a time); THROUGHPUT would split them into streams.
OPENVINO_HINT = "LATENCY"


class Skipped(Exception):
    """A runtime that cannot be built here; the message is the one line to print."""


def require(package: str, hint: str = BENCH_HINT) -> None:
    """Skipped when ``package`` cannot be imported."""
    if importlib.util.find_spec(package) is None:
        raise Skipped(f"{package} not installed ({hint})")


def fx_int8(
    model: nn.Module, example: torch.Tensor, calibration: Sequence[torch.Tensor], arch: str
) -> Forward:
    """cxr-fast's int8 TorchScript (torch.ao FX), saved and reloaded as ``export`` does."""
    with warnings.catch_warnings(), tempfile.TemporaryDirectory(prefix="bench-fx-") as tmp:
        warnings.simplefilter("ignore")  # torch.ao and TorchScript deprecation warnings
        module = quantize_int8(model, example, calibration, arch)
        path = Path(tmp) / "model.int8.ts"
        save_torchscript(module, example, path, {})
        loaded, _ = load_torchscript(path, torch.device("cpu"))
    return loaded


def onnx_int8(
    model: nn.Module, example: torch.Tensor, calibration: Sequence[torch.Tensor], folder: Path
) -> Forward:
    """cxr-fast's ONNX Runtime int8 (static QDQ, per-channel), in ``folder``."""
    missing = onnx_missing()
    if missing is not None:
        raise Skipped(f"{missing} not installed ({EXTRA_HINT})")
    path = folder / f"model-{example.shape[-1]}.int8.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_onnx_int8(model, example, path, {}, 64, calibration)
    module, _ = load_onnx(path, torch.device("cpu"))
    return module


def openvino(model: nn.Module, example: torch.Tensor, threads: int) -> tuple[Forward, str]:
    """The eager model converted by ``openvino.convert_model`` and compiled for the CPU with
    the LATENCY hint, and the inference precision OpenVINO chose (bf16 on a CPU with it)."""
    require("openvino")
    import openvino as ov

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracing converter's TracerWarnings
        converted = ov.convert_model(copy.deepcopy(model).eval(), example_input=example)
    compiled = ov.Core().compile_model(
        converted,
        "CPU",
        {"PERFORMANCE_HINT": OPENVINO_HINT, "INFERENCE_NUM_THREADS": threads},
    )
    request = compiled.create_infer_request()

    def forward(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(request.infer(x.contiguous().numpy())[0].copy())

    return forward, compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()


def pt2e_int8(
    model: nn.Module, example: torch.Tensor, calibration: Sequence[torch.Tensor]
) -> torch.fx.GraphModule:
    """torchao PT2E static int8 with ``X86InductorQuantizer``'s default config (every conv,
    the stem included), calibrated on ``calibration``: a graph of quantize/dequantize ops,
    to be lowered by :func:`pt2e_compiled` or :func:`pt2e_lowered`."""
    require("torchao")
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = xiq.X86InductorQuantizer()
    quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
    # Captured at the timing batch's static shape, as torchao's x86 tutorial does; calibration
    # images go through in batches of that size (the last one topped up from the first).
    images = torch.cat(list(calibration))
    n = len(example)
    if len(images) % n:
        images = torch.cat([images, images[: n - len(images) % n]])
    with torch.no_grad():
        captured = torch.export.export(copy.deepcopy(model).eval(), (example,), strict=True)
        prepared = prepare_pt2e(captured.module(), quantizer)
        for start in range(0, len(images), n):
            prepared(images[start : start + n].contiguous(memory_format=torch.channels_last))
    return convert_pt2e(prepared)


def pt2e_compiled(quantized: torch.fx.GraphModule, example: torch.Tensor) -> tuple[Forward, float]:
    """``torch.compile`` with inductor freezing, as torchao documents for x86 int8, and the
    seconds the first call (the compilation) took. Static shapes: the caller pads batches."""
    import torch._inductor.config as inductor_config

    compiled = torch.compile(quantized, dynamic=False)

    def forward(x: torch.Tensor) -> torch.Tensor:
        with inductor_config.patch(freezing=True):
            return compiled(x)

    started = time.perf_counter()
    with torch.no_grad():
        forward(example)
    return forward, time.perf_counter() - started


def pt2e_lowered(quantized: torch.fx.GraphModule, example: torch.Tensor) -> Forward:
    """torchao's ``lower_pt2e_quantized_to_x86``: the int8 patterns replaced by oneDNN's
    quantized convolutions in an FX graph, no C++ compiler involved."""
    from torchao.quantization.pt2e.lowering import lower_pt2e_quantized_to_x86

    with torch.no_grad():
        return lower_pt2e_quantized_to_x86(quantized, (example,))


def pt2e_aoti(quantized: torch.fx.GraphModule, example: torch.Tensor, folder: Path) -> Forward:
    """AOTInductor: the same inductor compilation done once, ahead of time, into a package
    (``aoti_compile_and_package``) that ``aoti_load_package`` runs without a C++ compiler.
    Static shapes, like :func:`pt2e_compiled`."""
    import torch._inductor.config as inductor_config

    path = folder / f"pt2e-{example.shape[-1]}-{id(quantized)}.int8.pt2"
    with torch.no_grad(), inductor_config.patch(freezing=True):
        program = torch.export.export(quantized, (example,), strict=True)
        torch._inductor.aoti_compile_and_package(program, package_path=str(path))
    return torch._inductor.aoti_load_package(str(path))
