"""Load an exported file by its sidecar, checking that file, sidecar and contract agree."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn

from cxr_fast.device import cuda_device, resolve_device
from cxr_fast.export.common import FORMATS, ExportError, sidecar_path
from cxr_fast.export.engine_target import check_engine_target, engine_target
from cxr_fast.export.onnx import load_onnx
from cxr_fast.export.pt2 import load_pt2
from cxr_fast.export.sidecar import read_sidecar
from cxr_fast.export.tensorrt import load_tensorrt, require_tensorrt
from cxr_fast.export.torchscript import load_torchscript
from cxr_fast.fp32 import ieee_fp32
from cxr_fast.run_folder import sha256


class ExportedModel:
    """An exported model as a function: float32 ``x`` [N,1,S,S] -> float32 logits [N,1].

    Inputs are moved to the model's device; any N works, in either memory format: a batch above
    the export's ``batch_max`` (a TensorRT engine's or pt2 program's largest batch) runs in
    pieces of ``batch_max``. ``module`` is the underlying TorchScript / torch.export / TensorRT
    module. On CUDA every call runs with the model's GPU current: a TensorRT engine executes
    on the current device and moves nothing itself.
    """

    def __init__(
        self,
        module: nn.Module,
        device: torch.device,
        image_size: int,
        contiguous: bool = False,
        batch_max: int | None = None,
        ieee: bool = False,
    ) -> None:
        if batch_max is not None and batch_max < 1:
            raise ValueError(f"batch_max must be at least 1, got {batch_max}")
        self.module = module
        self.device = cuda_device(device) if device.type == "cuda" else device
        self.image_size = image_size
        self.contiguous = contiguous
        self.batch_max = batch_max
        self.ieee = ieee

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
        on_gpu = torch.cuda.device(self.device) if self.device.type == "cuda" else nullcontext()
        # An export whose graph does not carry its precision runs as it was verified.
        precision = ieee_fp32() if self.ieee else nullcontext()
        with torch.no_grad(), on_gpu, precision:
            if self.batch_max is None or len(x) <= self.batch_max:
                return self.module(x).float()
            return torch.cat([self.module(part).float() for part in x.split(self.batch_max)])


def check_device(fmt: str, precision: str, device: torch.device) -> None:
    """ExportError when an export of ``fmt`` and ``precision`` cannot run on ``device``."""
    if precision == "int8" and device.type != "cpu":
        raise ExportError("an int8 export runs on the CPU only: load it with device='cpu'")
    if precision == "fp16" and device.type != "cuda":
        raise ExportError("an fp16 export runs on CUDA only: load it with device='cuda'")
    if fmt == "tensorrt" and device.type != "cuda":
        raise ExportError("a TensorRT export runs on CUDA only: load it with device='cuda'")


def open_artifact(
    path: Path,
    fmt: str,
    precision: str,
    contract: dict,
    device: torch.device,
    batch_max: int | None = None,
) -> ExportedModel:
    """Load ``path`` as ``fmt`` on ``device``; ExportError unless its embedded contract equals
    ``contract`` (the sidecar's) and the precision can run on ``device``. Batches above
    ``batch_max`` are split (see :class:`ExportedModel`)."""
    check_device(fmt, precision, device)
    if fmt == "torchscript":
        module, embedded = load_torchscript(path, device)
    elif fmt == "pt2":
        module, embedded = load_pt2(path, device)
    elif fmt == "tensorrt":
        module, embedded = load_tensorrt(path, device)
    elif fmt == "onnx":
        module, embedded = load_onnx(path, device)
    else:
        raise ExportError(f"unknown export format {fmt!r}")
    if not embedded:
        raise ExportError(f"{path} carries no preprocessing contract inside; re-export it")
    if embedded != contract:
        raise ExportError(
            f"{path}: the contract inside the file differs from its sidecar's "
            "(one of them was edited); re-export the run"
        )
    return ExportedModel(
        module,
        device,
        int(contract["image_size"]),
        contiguous=fmt == "tensorrt",
        batch_max=batch_max,
        # Verified under IEEE fp32 (verify.probabilities); a pt2 program follows the process's
        # TF32 flags when it runs (a TorchScript trace carries its own, ONNX Runtime and
        # TensorRT are verified as they score).
        ieee=fmt == "pt2" and precision == "fp32",
    )


def file_kind(path: Path) -> tuple[str, tuple[str, ...]]:
    """What ``path`` holds, read from its layout: (a name for people, the export formats it can
    be). TorchScript and torch.export archives are zips of different layouts (TensorRT's is a
    torch.export one); ONNX is a protobuf, never a zip. An unknown layout may be any format."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile:
        return "an ONNX model (not a zip archive)", ("onnx",)
    inside = {name.split("/", 1)[-1] for name in names}
    if "constants.pkl" in inside and any(name.startswith("code/") for name in inside):
        return "a TorchScript archive", ("torchscript",)
    if "archive_format" in inside or any(name.startswith("models/") for name in inside):
        return "a torch.export archive", ("pt2", "tensorrt")
    return "an archive of unknown layout", FORMATS


def _check_format(path: Path, fmt: str) -> None:
    """ExportError unless the file can be what its sidecar's format says: an edited format
    would otherwise reach a loader that fails on another format's bytes with its own trace."""
    what, formats = file_kind(path)
    if fmt not in formats:
        raise ExportError(
            f"{sidecar_path(path)} says format {fmt!r}, but {path} is {what}: the sidecar was "
            "edited; re-export the run"
        )


def load_exported(
    path: Path, device: str = "cpu"
) -> tuple[Callable[[torch.Tensor], torch.Tensor], dict]:
    """Load an exported file (format from its sidecar) -> (callable mapping x[N,1,S,S] to
    logits [N,1], sidecar dict).

    The sidecar holds 'contract' (PreprocessContract.to_dict()), 'threshold', 'arch', 'format',
    'precision', 'source_sha256' (SHA-256 of the run's model.pt), 'batch_size',
    'max_abs_diff', 'tolerance', 'cxr_fast' and 'torch' versions and 'created' (TensorRT:
    'engine', the GPU and TensorRT it was built for). ExportError for a missing or unknown
    sidecar, a file changed since export, a contract that differs inside and beside the file,
    TensorRT without CUDA/torch_tensorrt, or an engine built for another GPU architecture or
    TensorRT release.
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
    if sidecar["format"] == "tensorrt" and target.type == "cuda":
        require_tensorrt()  # a missing package is the first thing to say
        # Before deserialising: a foreign engine fails there with an error naming nothing.
        check_engine_target(sidecar.get("engine"), engine_target(target), str(path))
    # What the sidecar says the file cannot run on comes first; then whether it is that format.
    check_device(sidecar["format"], sidecar["precision"], target)
    _check_format(path, sidecar["format"])
    batch_max = (sidecar.get("input") or {}).get("batch_max")
    model = open_artifact(
        path, sidecar["format"], sidecar["precision"], sidecar["contract"], target, batch_max
    )
    return model, sidecar
