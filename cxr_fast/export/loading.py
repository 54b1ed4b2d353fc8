"""Load an exported file by its sidecar, checking that file, sidecar and contract agree."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from cxr_fast.device import resolve_device
from cxr_fast.export.common import ExportError
from cxr_fast.export.pt2 import load_pt2
from cxr_fast.export.sidecar import read_sidecar
from cxr_fast.export.tensorrt import load_tensorrt
from cxr_fast.export.torchscript import load_torchscript
from cxr_fast.run_folder import sha256


class ExportedModel:
    """An exported model as a function: float32 ``x`` [N,1,S,S] -> float32 logits [N,1].

    Inputs are moved to the model's device; any N the export allows works, in either memory
    format. ``module`` is the underlying TorchScript / torch.export / TensorRT module.
    """

    def __init__(
        self, module: nn.Module, device: torch.device, image_size: int, contiguous: bool = False
    ) -> None:
        self.module = module
        self.device = device
        self.image_size = image_size
        self.contiguous = contiguous

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        size = self.image_size
        if x.ndim != 4 or x.shape[1] != 1 or tuple(x.shape[2:]) != (size, size):
            # A traced graph would happily run other sizes and return confident nonsense.
            raise ValueError(
                f"expected input [N, 1, {size}, {size}] per the model's contract, "
                f"got {list(x.shape)}"
            )
        x = x.to(device=self.device, dtype=torch.float32)
        if self.contiguous:
            x = x.contiguous()  # TensorRT engine bindings are dense NCHW
        with torch.no_grad():
            return self.module(x).float()


def open_artifact(
    path: Path, fmt: str, precision: str, contract: dict, device: torch.device
) -> ExportedModel:
    """Load ``path`` as ``fmt`` on ``device``; ExportError unless its embedded contract equals
    ``contract`` (the sidecar's) and the precision can run on ``device``."""
    if precision == "int8" and device.type != "cpu":
        raise ExportError("an int8 export runs on the CPU only: load it with device='cpu'")
    if precision == "fp16" and device.type != "cuda":
        raise ExportError("an fp16 export runs on CUDA only: load it with device='cuda'")
    if fmt == "torchscript":
        module, embedded = load_torchscript(path, device)
    elif fmt == "pt2":
        module, embedded = load_pt2(path, device)
    elif fmt == "tensorrt":
        module, embedded = load_tensorrt(path, device)
    else:
        raise ExportError(f"unknown export format {fmt!r}")
    if not embedded:
        raise ExportError(f"{path} carries no preprocessing contract inside; re-export it")
    if embedded != contract:
        raise ExportError(
            f"{path}: the contract inside the file differs from its sidecar's "
            "(one of them was edited); re-export the run"
        )
    return ExportedModel(module, device, int(contract["image_size"]), contiguous=fmt == "tensorrt")


def load_exported(
    path: Path, device: str = "cpu"
) -> tuple[Callable[[torch.Tensor], torch.Tensor], dict]:
    """Load an exported file (format from its sidecar) -> (callable mapping x[N,1,S,S] to
    logits [N,1], sidecar dict).

    The sidecar holds 'contract' (PreprocessContract.to_dict()), 'threshold', 'arch', 'format',
    'precision', 'source_sha256' (SHA-256 of the run's model.pt), 'batch_size',
    'max_abs_diff', 'tolerance', 'cxr_fast' and 'torch' versions and 'created'. ExportError for
    a missing or unknown sidecar, a file changed since export, a contract that differs inside
    and beside the file, or TensorRT without CUDA/torch_tensorrt.
    """
    path = Path(path)
    sidecar = read_sidecar(path)
    if not path.is_file():
        raise ExportError(f"{path} does not exist (its sidecar does)")
    if sha256(path) != sidecar["file_sha256"]:
        raise ExportError(
            f"{path} is not the file its sidecar describes (changed after export); re-export it"
        )
    try:
        target = resolve_device(str(device))
    except ValueError as exc:
        raise ExportError(str(exc)) from exc
    model = open_artifact(
        path, sidecar["format"], sidecar["precision"], sidecar["contract"], target
    )
    return model, sidecar
