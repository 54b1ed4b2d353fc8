"""``score --model RUN --backend auto``: the fastest verified export in ``RUN/export/``, else the
eager model.

An export is a candidate only when all of these hold, each read from its sidecar:

- it was made from this run's ``model.pt`` (``source_sha256`` equals the checkpoint's SHA-256),
  so retraining or recalibrating the run into the same folder never scores with a stale file;
- it was verified on this kind of device (``device``: ``export`` writes a sidecar only after
  the file, reloaded, matched the eager model there), and it loads here (the file's SHA-256,
  its contract, the onnx extra or Torch-TensorRT, a TensorRT engine's GPU);
- it was measured faster than the eager model at the ``auto`` precision on the host that built
  it (``speed.speedup_vs_eager`` > 1); the fastest one wins.

Otherwise the eager model runs at ``--precision`` (bf16 autocast where the CPU has it). The
choice and its reason go into the summary line and the Parquet metadata.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from cxr_fast.errors import CxrFastError
from cxr_fast.export.common import EXPORT_DIR, sidecar_path
from cxr_fast.run_folder import MODEL_FILE, sha256

# What a user types to build the export `auto` looks for.
EXPORT_HINT = "cxr-fast export {run} --format auto"


@dataclass(frozen=True)
class Candidate:
    """A verified export of the run for this device, and how much faster than eager it ran."""

    path: Path
    sidecar: dict
    speedup: float


def candidates(run_dir: Path, device: torch.device) -> tuple[list[Candidate], list[str]]:
    """(usable exports of ``run_dir`` for ``device``, fastest first; why each other export
    under RUN/export/ was passed over)."""
    from cxr_fast.export.sidecar import read_sidecar

    folder = Path(run_dir) / EXPORT_DIR
    if not folder.is_dir():
        return [], []
    source_sha = sha256(Path(run_dir) / MODEL_FILE)
    found, passed = [], []
    for side in sorted(folder.glob("*.json")):
        path = side.with_name(side.name.removesuffix(".json"))
        if path.name.startswith(".") or sidecar_path(path) != side:
            continue
        try:
            sidecar = read_sidecar(path)
        except CxrFastError as exc:
            passed.append(f"{path.name}: {exc}")
            continue
        reason = _unusable(sidecar, source_sha, device)
        if reason is not None:
            passed.append(f"{path.name}: {reason}")
            continue
        found.append(Candidate(path, sidecar, float(sidecar["speed"]["speedup_vs_eager"])))
    found.sort(key=lambda c: -c.speedup)
    return found, passed


def _unusable(sidecar: dict, source_sha: str, device: torch.device) -> str | None:
    """Why an export cannot stand in for the run on ``device`` (None: it can)."""
    if sidecar.get("source_sha256") != source_sha:
        return "made from another model.pt (re-export it)"
    if sidecar.get("tta"):
        return "a test-time-augmented export (score --tta uses the run folder)"
    verified_on = torch.device(str(sidecar.get("device", "cpu"))).type
    if verified_on != device.type:
        return f"verified on {verified_on}, not {device.type}"
    speed = sidecar.get("speed")
    if not isinstance(speed, dict) or "speedup_vs_eager" not in speed:
        return "no speed measured at export (made by an older cxr-fast)"
    if float(speed["speedup_vs_eager"]) <= 1.0:
        return f"not faster than the eager model ({float(speed['speedup_vs_eager']):.2f}x)"
    if sidecar["format"] == "onnx":
        from cxr_fast.export.onnx import EXTRA_HINT, onnx_missing

        if onnx_missing(runtime_only=True):
            return f"needs onnxruntime ({EXTRA_HINT})"
    return None


def choose_for_run(run_dir: Path, device: torch.device) -> tuple[Path | None, str]:
    """(the export to score with, or None for eager; one line saying why)."""
    found, passed = candidates(run_dir, device)
    if found:
        best = found[0]
        return best.path, (
            f"the fastest verified export of this model.pt for {device.type} in RUN/export, "
            f"{best.speedup:.1f}x the eager model where it was built"
        )
    hint = EXPORT_HINT.format(run=run_dir)
    why = "; ".join(passed) if passed else "none"
    return None, f"no verified export for {device.type} in RUN/export ({why}); `{hint}` builds one"
