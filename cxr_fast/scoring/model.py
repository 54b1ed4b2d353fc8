"""The model a scoring run uses: a run folder (eager) or an exported file, with its contract."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from cxr_fast.choices import BACKENDS
from cxr_fast.contract import PreprocessContract
from cxr_fast.errors import NotFoundError, UserInputError
from cxr_fast.gate import InputGate
from cxr_fast.precision import inference_precision
from cxr_fast.run_folder import MODEL_FILE, RunInfo, load_run, sha256


@dataclass(frozen=True)
class ScoringModel:
    """A callable x -> logits and everything a prediction row and its metadata need."""

    forward: Callable[[torch.Tensor], torch.Tensor]
    contract: PreprocessContract
    threshold: float
    backend: str
    model_id: str
    checksum: str
    device: torch.device
    # Where the threshold came from: the run's policy, or a site calibration (metadata only).
    threshold_source: dict | None = None
    precision: str = "fp32"  # what the forward computes in (autocast, or the export's)
    choice: str | None = None  # why --backend auto picked this model (backend_choice.py)
    # The input gate stored with the weights (model.pt meta, or the export's sidecar).
    gate: InputGate | None = None

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Float32 logits [N] for a batch (inference mode)."""
        with torch.inference_mode():
            return self.forward(x.to(self.device, non_blocking=True)).float().reshape(-1)


def threshold_source(meta: dict) -> dict:
    """The threshold's provenance from a run's metadata or an export's sidecar: the policy, and
    the site calibration (temperature, bias, sample size and fingerprint) when there is one."""
    calibration = meta.get("calibration")
    return {
        "policy": (meta.get("threshold_choice") or {}).get("policy"),
        "members": meta.get("members", 1),
        "calibration": None
        if not calibration
        else {
            "temperature": calibration["temperature"],
            "bias": calibration.get("bias", 0.0),
            "sample": calibration["sample"],
            "source_model_sha256": calibration["source_model_sha256"],
        },
    }


def _eager(
    run_dir: Path,
    device: torch.device,
    tta: bool = False,
    precision: str = "auto",
    loaded: tuple[torch.nn.Module, RunInfo] | None = None,
) -> ScoringModel:
    model, info = load_run(run_dir, device, tta=tta) if loaded is None or tta else loaded
    scoring = eager_scoring_model(model, info, device, precision)
    # The backend name travels into the metadata and the resume check: TTA rows never mix.
    return replace(scoring, backend="eager-tta") if tta else scoring


def eager_scoring_model(
    model: torch.nn.Module, info: RunInfo, device: torch.device, precision: str = "auto"
) -> ScoringModel:
    """Wrap a run's already loaded eager model (from :func:`load_run`) for scoring at
    ``precision`` (a ``--precision`` name, see :func:`inference_precision`)."""
    run_dir = info.path
    resolved = inference_precision(device, precision)

    def forward(x: torch.Tensor) -> torch.Tensor:
        with resolved.autocast(model):
            return model(x)

    return ScoringModel(
        forward=forward,
        contract=info.contract,
        threshold=info.threshold,
        backend="eager",
        model_id=f"{info.arch}:{run_dir.resolve()}",
        checksum=sha256(run_dir / MODEL_FILE),
        device=device,
        threshold_source=threshold_source(info.meta),
        precision=resolved.name,
        gate=InputGate.from_meta(info.meta, info.contract),
    )


def _exported(path: Path, backend: str, device: torch.device) -> ScoringModel:
    from cxr_fast.export import load_exported

    forward, sidecar = load_exported(path, device=str(device))
    if backend not in ("auto", sidecar["format"]):
        raise UserInputError(f"{path} is a {sidecar['format']} export, not {backend}")
    contract = PreprocessContract.from_dict(sidecar["contract"])
    return ScoringModel(
        forward=forward,
        contract=contract,
        threshold=float(sidecar["threshold"]),
        backend=f"{sidecar['format']}-{sidecar['precision']}",
        model_id=f"{sidecar['arch']}:{path.resolve()}",
        checksum=sidecar["file_sha256"],  # load_exported checked the file against it
        device=device,
        threshold_source=threshold_source(sidecar),
        precision=sidecar["precision"],
        gate=InputGate.from_meta(sidecar, contract),
    )


def load_scoring_model(
    ref: Path,
    backend: str,
    device: torch.device,
    tta: bool = False,
    precision: str = "auto",
    loaded: tuple[torch.nn.Module, RunInfo] | None = None,
) -> ScoringModel:
    """``ref`` is a run folder or an exported file (its sidecar says the format). For a run
    folder ``backend`` auto takes its fastest verified export for ``device`` when there is one
    (:mod:`cxr_fast.scoring.backend_choice`), else the eager model at ``precision``; eager
    always uses the eager model. ``tta`` averages the run's logits over the test-time views
    (run folders only, eager: an export carries TTA inside when it was exported with
    ``--tta``). ``loaded``: the run's eager model and info as :func:`load_run` gave them for
    ``device`` (explain and serve hold it for Grad-CAM), used rather than loaded again when the
    eager model is the one that scores."""
    if backend not in BACKENDS:
        raise UserInputError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if ref.is_dir():
        if backend not in ("auto", "eager"):
            raise UserInputError(
                f"--backend {backend} needs an exported file: run `cxr-fast export {ref} "
                f"--format {backend}` and pass --model with the file it writes"
            )
        if backend == "auto" and not tta:
            from cxr_fast.scoring.backend_choice import load_auto

            return load_auto(
                ref,
                device,
                precision,
                lambda path: _exported(path, "auto", device),
                lambda: _eager(ref, device, tta, precision, loaded),
            )
        return _eager(ref, device, tta, precision, loaded)
    if tta:
        raise UserInputError(
            f"--tta applies to a run folder; {ref} is an export (export it with --tta instead)"
        )
    if precision != "auto":
        raise UserInputError(
            f"--precision applies to a run folder's eager model; {ref} is an export, which "
            "computes at the precision it was exported with"
        )
    if not ref.is_file():
        raise NotFoundError(f"no such model: {ref}")
    if ref.name == MODEL_FILE:
        raise UserInputError(
            f"{ref} is a run's checkpoint: pass the run folder itself (--model {ref.parent})"
        )
    return _exported(ref, backend, device)
