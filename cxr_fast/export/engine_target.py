"""The GPU and TensorRT a TensorRT engine was built for, recorded at export, checked at load.

A serialised TensorRT engine runs only on the GPU architecture (compute capability) and the
TensorRT release it was built with; otherwise deserialisation fails deep inside the runtime
with an error that names neither. Recording both in the sidecar turns that into one line.
"""

from __future__ import annotations

import torch

from cxr_fast.device import cuda_device
from cxr_fast.export.common import ExportError


def tensorrt_version() -> str | None:
    """The TensorRT library version (what engines depend on), None when not importable."""
    try:
        import tensorrt
    except ImportError:
        return None
    return str(tensorrt.__version__)


def engine_target(device: torch.device) -> dict:
    """GPU name, compute capability and TensorRT version of ``device`` (a CUDA device)."""
    index = cuda_device(device).index
    major, minor = torch.cuda.get_device_capability(index)
    return {
        "gpu": torch.cuda.get_device_name(index),
        "compute_capability": f"{major}.{minor}",
        "tensorrt": tensorrt_version(),
    }


def check_engine_target(recorded: dict | None, current: dict, path: str) -> None:
    """ExportError unless an engine built for ``recorded`` can run on ``current``.

    Compute capability and TensorRT's major.minor must match; another GPU of the same
    architecture (A100 40 GB vs 80 GB) is allowed, as TensorRT itself allows it.
    """
    if not isinstance(recorded, dict):
        raise ExportError(
            f"{path}: the sidecar does not record the GPU and TensorRT the engine was built "
            "for; re-export it on this machine"
        )
    built = f"{recorded.get('gpu')} (compute capability {recorded.get('compute_capability')})"
    here = f"{current['gpu']} (compute capability {current['compute_capability']})"
    if recorded.get("compute_capability") != current["compute_capability"]:
        raise ExportError(
            f"{path} is a TensorRT engine built on {built}; this GPU is {here}. TensorRT engines "
            "run only on the GPU architecture they were built for: re-export on this GPU"
        )
    want, have = _major_minor(recorded.get("tensorrt")), _major_minor(current["tensorrt"])
    if want != have:
        raise ExportError(
            f"{path} was built with TensorRT {recorded.get('tensorrt')}, this host has "
            f"TensorRT {current['tensorrt']}: engines load only in the release that built "
            "them; re-export here or install that TensorRT"
        )


def _major_minor(version: str | None) -> tuple[str, ...] | None:
    return None if version is None else tuple(version.split(".")[:2])
