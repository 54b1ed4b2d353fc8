"""TensorRT through Torch-TensorRT's dynamo frontend, saved as an ExportedProgram.

Follows the current Torch-TensorRT documentation (looked up, not guessed):
- compile with a dynamic batch: ``torch_tensorrt.compile(model, ir="dynamo",
  arg_inputs=[torch_tensorrt.Input(min_shape=..., opt_shape=..., max_shape=..., dtype=...)])``
  https://docs.pytorch.org/TensorRT/user_guide/compilation/dynamic_shapes.html
- precision: ``use_explicit_typing`` (default True) makes TensorRT keep the dtypes of the model
  and its inputs, and ``enabled_precisions`` is marked DEPRECATED
  https://docs.pytorch.org/TensorRT/user_guide/compilation/compilation_settings.html
  (``torch_tensorrt.compile`` keeps the argument for the legacy TorchScript/FX frontends only,
  py/torch_tensorrt/_compile.py). So fp16 is requested the explicit way: fp16 weights behind
  float32 casts (HalfPrecision), and no ``enabled_precisions`` is passed.
- save and load: ``torch_tensorrt.save(trt_gm, path, output_format="exported_program",
  arg_inputs=[example], dynamic_shapes=...)`` ("Method 1", explicit torch.export.Dim), then
  ``torch.export.load(path).module()`` with torch_tensorrt imported
  https://docs.pytorch.org/TensorRT/user_guide/runtime_performance/saving_models.html
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from cxr_fast.export.common import CONTRACT_FILE, ExportError
from cxr_fast.export.pt2 import batch_dim

NOT_INSTALLED = "Torch-TensorRT is not installed: pip install 'cxr-fast[trt]'"
NO_CUDA = "TensorRT export needs a CUDA GPU; none is visible"


def require_tensorrt() -> ModuleType:
    """The ``torch_tensorrt`` module, or ExportError saying exactly what is missing.

    CUDA is checked first: on a host without a GPU, installing the package would not help.
    """
    if not torch.cuda.is_available():
        raise ExportError(NO_CUDA)
    try:
        import torch_tensorrt
    except ImportError as exc:
        raise ExportError(NOT_INSTALLED) from exc
    return torch_tensorrt


def save_tensorrt(
    module: nn.Module,
    example: torch.Tensor,
    path: Path,
    contract: dict,
    *,
    fp16: bool,
    opt_batch: int,
    max_batch: int,
) -> None:
    """Compile ``module`` (on CUDA) for batch sizes 1..``max_batch`` and save it."""
    trt = require_tensorrt()
    image = tuple(example.shape[1:])
    spec = trt.Input(
        min_shape=(1, *image),
        opt_shape=(opt_batch, *image),
        max_shape=(max_batch, *image),
        dtype=torch.float32,  # the HalfPrecision wrapper casts inside the engine
    )
    compiled = trt.compile(
        module.eval(),
        ir="dynamo",
        arg_inputs=[spec],
        # fp32 engines otherwise round to TF32 and could not meet the fp32 tolerance.
        disable_tf32=not fp16,
    )
    trt.save(
        compiled,
        str(path),
        output_format="exported_program",
        arg_inputs=[example.contiguous()],
        dynamic_shapes=({0: batch_dim(max_batch)},),
        extra_files={CONTRACT_FILE: json.dumps(contract)},
    )


def load_tensorrt(path: Path, device: torch.device) -> tuple[nn.Module, dict]:
    """The engine-backed module and the contract embedded in the file ({} when absent)."""
    if device.type != "cuda":
        raise ExportError("a TensorRT export runs on CUDA only: load it with device='cuda'")
    require_tensorrt()  # registers the TensorRT engine ops torch.export.load needs
    extra = {CONTRACT_FILE: ""}
    program = torch.export.load(str(path), extra_files=extra)
    text = extra[CONTRACT_FILE]
    if isinstance(text, bytes):
        text = text.decode()
    return program.module(), json.loads(text) if text else {}
