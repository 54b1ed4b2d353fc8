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
- devices: the tracer makes its inputs on ``torch.cuda.current_device()`` (``default_device()``
  in torch_tensorrt/dynamo/_defaults.py), an engine binds to the current device when it is
  deserialised, and inputs are moved to the engine's GPU only in MULTI_DEVICE_SAFE_MODE (off by
  default, torch_tensorrt/runtime/_multi_device_safe_mode.py). So compile, save, load (and
  every call, see loading.py) run inside ``torch.cuda.device(device)``, and compile gets
  ``device=`` as well: ``--device cuda:1`` then never mixes GPUs.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from cxr_fast.device import cuda_device
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
    device: torch.device,
) -> None:
    """Compile ``module`` for batch sizes 1..``max_batch``, tuned for ``opt_batch``, and save it.

    ``module`` and ``example`` are already on ``device``, a CUDA device."""
    trt = require_tensorrt()
    device = cuda_device(device)
    image = tuple(example.shape[1:])
    spec = trt.Input(
        min_shape=(1, *image),
        opt_shape=(opt_batch, *image),
        max_shape=(max_batch, *image),
        dtype=torch.float32,  # the HalfPrecision wrapper casts inside the engine
    )
    with torch.cuda.device(device):
        compiled = trt.compile(
            module.eval(),
            ir="dynamo",
            arg_inputs=[spec],
            device=device,
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
    with torch.cuda.device(cuda_device(device)):  # the engine binds to the current device
        module = torch.export.load(str(path), extra_files=extra).module()
    text = extra[CONTRACT_FILE]
    if isinstance(text, bytes):
        text = text.decode()
    return module, json.loads(text) if text else {}
