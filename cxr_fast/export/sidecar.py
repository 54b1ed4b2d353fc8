"""The JSON sidecar beside every exported file: what the file is, where it came from, and how
closely it matched the eager model. Scoring reads the contract and threshold from here.

The fields a prediction's meaning depends on (contract, threshold, architecture) are sealed by
``meaning_sha256``, a hash of their canonical JSON written at export: an edited threshold or
contract is refused at load instead of silently changing every prediction. The seal guards
against edits by hand, not against forgery. To change the threshold for a site, use
``cxr-fast calibrate`` and export the calibrated run.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from cxr_fast import __version__
from cxr_fast.data.discover import Record
from cxr_fast.export.common import (
    EXPORT_PRECISIONS,
    FORMATS,
    TRT_OPT_BATCH,
    ExportError,
    sidecar_path,
)
from cxr_fast.export.engine_target import engine_target
from cxr_fast.gate import GATE_KEY
from cxr_fast.models.ensemble import TTA_VIEWS
from cxr_fast.run_folder import RunInfo, atomic_write_json
from cxr_fast.versions import package_version

SIDECAR_VERSION = 1
REQUIRED_KEYS = (
    "format",
    "precision",
    "contract",
    "threshold",
    "arch",
    "source_sha256",
    "file_sha256",
    # null for a run that was not site-calibrated; its absence means the sidecar was edited.
    "calibration",
)
# What scoring reads from a calibrated export's ``calibration`` (scoring.model.threshold_source).
CALIBRATION_KEYS = ("temperature", "sample", "source_model_sha256")


# The fields whose edit would change what the model's outputs mean; the input gate too when
# the run has one (sidecars written before the gate have none, and their seal still holds).
SEALED_KEYS = ("contract", "threshold", "arch")
SEAL_KEY = "meaning_sha256"


def seal(fields: dict) -> str:
    """SHA-256 of the canonical JSON of the sealed fields."""
    keys = (*SEALED_KEYS, GATE_KEY) if fields.get(GATE_KEY) is not None else SEALED_KEYS
    text = json.dumps({key: fields[key] for key in keys}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def versions() -> dict:
    """Versions a loader may need to match (TorchScript and pt2 archives are not forward
    compatible across PyTorch releases)."""
    found = {"cxr_fast": __version__, "torch": torch.__version__}
    trt = package_version("torch-tensorrt") or package_version("torch_tensorrt")
    if trt is not None:
        found["torch_tensorrt"] = trt
    return found


def export_fields(
    info: RunInfo,
    *,
    fmt: str,
    precision: str,
    out: Path,
    file_sha: str,
    source: Path,
    source_sha: str,
    tta: bool,
    device: torch.device,
    batch_size: int,
    batch_max: int | None,
    diff: float,
    tolerance: float,
    verification: dict,
    int8: dict | None,
    speed: dict | None,
    notes: list[str],
) -> dict:
    """The sidecar's fields for a verified export of ``info``'s run (before the versions and
    the seal :func:`write_sidecar` adds). ``source_sha256`` and ``device`` say which model.pt it
    was made from and where it was verified: ``score --backend auto`` uses an export only for
    that checkpoint on that kind of device; ``speed`` is what it ranks them by."""
    return {
        "format": fmt,
        "precision": precision,
        "file": out.name,
        "file_sha256": file_sha,
        "arch": info.arch,
        "contract": info.contract.to_dict(),
        "threshold": info.threshold,
        # How the threshold (and any Platt scaling, inside the exported graph) came to be.
        "threshold_choice": info.meta.get("threshold_choice"),
        "calibration": info.meta.get("calibration"),
        **({"adaptation": info.meta["adaptation"]} if "adaptation" in info.meta else {}),
        # The input gate, as the run stores it: an export refuses the films its run refuses.
        GATE_KEY: info.meta.get(GATE_KEY),
        "members": info.members,
        "tta": list(TTA_VIEWS) if tta else None,
        "source": str(Path(source).resolve()),
        "source_sha256": source_sha,
        "input": {
            "shape": ["N", 1, info.contract.image_size, info.contract.image_size],
            "dtype": "float32",
            "batch_min": 1,
            "batch_max": batch_max,
        },
        "output": "logits [N, 1] float32; P(PNEUMONIA) = sigmoid(logit)",
        "device": str(device),
        **({"engine": engine_target(device)} if fmt == "tensorrt" else {}),
        **({"batch_opt": TRT_OPT_BATCH} if fmt == "tensorrt" else {}),
        "batch_size": batch_size,
        "max_abs_diff": diff,
        "tolerance": tolerance,
        "verification": verification,
        **({"int8": int8} if int8 is not None else {}),
        **({"speed": speed} if speed is not None else {}),
        "notes": notes,
    }


def label_counts(records: list[Record]) -> dict:
    """Images per class among ``records`` (for the verification record)."""
    labels = np.array([-1 if r.label is None else r.label for r in records])
    return {
        "normal": int((labels == 0).sum()),
        "pneumonia": int((labels == 1).sum()),
        "unlabeled": int((labels < 0).sum()),
    }


def write_sidecar(path: Path, fields: dict) -> Path:
    """Write ``fields`` (plus version keys and the time) as ``path``'s sidecar, atomically."""
    data = {
        "sidecar_version": SIDECAR_VERSION,
        **fields,
        SEAL_KEY: seal(fields),
        **versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    target = sidecar_path(path)
    atomic_write_json(data, target)
    return target


def read_sidecar(path: Path) -> dict:
    """The checked sidecar of exported file ``path``, or ExportError."""
    side = sidecar_path(path)
    if not side.is_file():
        raise ExportError(
            f"{path} has no sidecar {side.name}: only files written by `cxr-fast export` "
            "can be loaded (the sidecar holds their contract and threshold)"
        )
    try:
        data = json.loads(side.read_text())
    except (OSError, ValueError) as exc:
        raise ExportError(f"{side} is not a readable sidecar: {exc}") from exc
    if not isinstance(data, dict) or data.get("sidecar_version") != SIDECAR_VERSION:
        version = data.get("sidecar_version") if isinstance(data, dict) else None
        raise ExportError(f"{side}: unsupported sidecar version {version!r}")
    missing = [key for key in REQUIRED_KEYS if key not in data]
    if missing:
        raise ExportError(
            f"{side} lacks {', '.join(missing)} (edited, or written by an older cxr-fast); "
            "re-export the run"
        )
    if data["format"] not in FORMATS:
        raise ExportError(f"{side}: unknown export format {data['format']!r}")
    if data["precision"] not in EXPORT_PRECISIONS:
        raise ExportError(f"{side}: unknown precision {data['precision']!r}")
    if SEAL_KEY not in data:
        raise ExportError(f"{side} has no {SEAL_KEY} (written by an older cxr-fast): re-export")
    if data[SEAL_KEY] != seal(data):
        raise ExportError(
            f"{side} was edited: its {', '.join(SEALED_KEYS)} no longer match {SEAL_KEY}; "
            "re-export the run (to change the threshold, use `cxr-fast calibrate`)"
        )
    problem = unsealed_problem(data)
    if problem is not None:
        raise ExportError(f"{side} was edited outside its seal: {problem}; re-export the run")
    return data


def unsealed_problem(data: dict) -> str | None:
    """What is wrong with the fields outside the seal that loading, scoring and ``score
    --backend auto`` read (None: nothing). The seal keeps the meaning of a prediction; these
    fields only describe it, but an edited one must fail in one line, not deep in a loader."""
    for key in ("file_sha256", "source_sha256"):
        if not isinstance(data[key], str):
            return f"{key} is not a SHA-256 string"
    calibration = data["calibration"]
    if calibration is not None:
        if not isinstance(calibration, dict):
            return "calibration is neither null nor an object"
        missing = [key for key in CALIBRATION_KEYS if key not in calibration]
        if missing:
            return f"calibration lacks {', '.join(missing)}"
        if not _number(calibration["temperature"]) or calibration["temperature"] <= 0:
            return "calibration.temperature is not a positive number"
        if not _number(calibration.get("bias", 0.0)):
            return "calibration.bias is not a number"
        if not isinstance(calibration["sample"], dict):
            return "calibration.sample is not an object"
        if not isinstance(calibration["source_model_sha256"], str):
            return "calibration.source_model_sha256 is not a SHA-256 string"
    if not isinstance(data.get("threshold_choice"), dict | None):
        return "threshold_choice is neither null nor an object"
    members = data.get("members", 1)
    if not _number(members) or members != int(members) or members < 1:
        return "members is not a positive whole number"
    shape = data.get("input")
    if shape is not None:
        if not isinstance(shape, dict):
            return "input is not an object"
        batch_max = shape.get("batch_max")
        if batch_max is not None and (not isinstance(batch_max, int) or batch_max < 1):
            return "input.batch_max is neither null nor a positive whole number"
    device = data.get("device", "cpu")
    if not _device_name(device):
        return f"device {device!r} is not a torch device name"
    speed = data.get("speed")
    if speed is not None and not (
        isinstance(speed, dict) and _number(speed.get("speedup_vs_eager"))
    ):
        return "speed is neither null nor an object with a numeric speedup_vs_eager"
    if "engine" in data and data["format"] != "tensorrt":
        return f"it records a TensorRT engine but names the format {data['format']!r}"
    return None


def _number(value: object) -> bool:
    """A finite JSON number (not a bool, which Python counts as an int)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _device_name(value: object) -> bool:
    """A device name torch parses (``cpu``, ``cuda:1``)."""
    if not isinstance(value, str):
        return False
    try:
        torch.device(value)
    except RuntimeError:
        return False
    return True
