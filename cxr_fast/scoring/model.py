"""The one model interface of every stage that turns images into probabilities.

A run folder (one model or an ensemble), any exported file (TorchScript, pt2, ONNX, TensorRT;
its sidecar carries the contract and threshold) and a module in training memory all load into
a :class:`ScoringModel`: ``logits(x)`` for one batch, ``predict(batches)`` for a loader.
Score, serve, explain, evaluate, calibrate, report and training validation use it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cxr_fast.choices import BACKENDS
from cxr_fast.contract import PreprocessContract
from cxr_fast.data.batch import Batch
from cxr_fast.errors import CxrFastError, NotFoundError, UserInputError
from cxr_fast.export.source import source_run
from cxr_fast.gate import InputGate
from cxr_fast.messages import to_stderr
from cxr_fast.models.ensemble import TTA_VIEWS
from cxr_fast.precision import Precision, inference_precision
from cxr_fast.run_folder import CONFIG_FILE, MODEL_FILE, RunInfo, load_run, read_json, sha256
from cxr_fast.scoring.backend_choice import choose_for_run


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
    # The run's model.pt metadata, or the export's sidecar: calibration, members, policy.
    meta: dict = field(default_factory=dict)
    arch: str = ""
    # The run folder or exported file the model was loaded from (None: a module in memory).
    source: Path | None = None
    # The eager module behind ``forward`` (None for an export): put in eval mode to predict.
    module: nn.Module | None = None

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Float32 logits [N] for a batch (inference mode)."""
        with torch.inference_mode():
            return self.forward(x.to(self.device, non_blocking=True)).float().reshape(-1)

    def predict(
        self, batches: Iterable[Batch], progress: Callable[[int], None] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(record index int64, logit float32, label int64) for every sample, in batch order
        (a collecting loader's files that did not decode have none); ``progress(n)`` after
        each batch of ``n``."""
        if self.module is not None:
            self.module.eval()
        indices, logits, labels = [], [], []
        for batch in batches:
            if batch.x is None:
                continue
            logits.append(self.logits(batch.x).cpu())
            indices.append(batch.index.cpu())
            labels.append(batch.y.cpu())
            if progress is not None:
                progress(len(batch.index))
        if not logits:
            empty = np.zeros(0, dtype=np.int64)
            return empty, np.zeros(0, dtype=np.float32), empty
        return (
            torch.cat(indices).numpy(),
            torch.cat(logits).numpy(),
            torch.cat(labels).numpy(),
        )

    @property
    def members(self) -> int:
        """Ensemble members behind the model (1: a single model)."""
        return int(self.meta.get("members", 1))

    @property
    def temperature(self) -> float:
        """The site calibration's temperature (1: not calibrated), applied inside the model."""
        return float((self.meta.get("calibration") or {}).get("temperature", 1.0))

    @property
    def bias(self) -> float:
        """The site calibration's bias (0: not calibrated), applied inside the model."""
        return float((self.meta.get("calibration") or {}).get("bias", 0.0))

    @property
    def calibrated(self) -> bool:
        """Whether the logits are site-calibrated (``cxr-fast calibrate``)."""
        return self.temperature != 1.0 or self.bias != 0.0

    @property
    def tta(self) -> list[str] | None:
        """The test-time views averaged into each logit (None: the image as it is)."""
        if self.backend == "eager-tta":
            return list(TTA_VIEWS)
        return self.meta.get("tta") if self.is_export else None

    @property
    def is_export(self) -> bool:
        """Whether the model is an exported file (not a run folder or a module in memory)."""
        return self.source is not None and not self.source.is_dir()

    def run_folder(self) -> Path | None:
        """The run folder behind the model: its own, or for an export the run it was made from
        while that folder still holds the very model.pt (:func:`source_run`); else None."""
        if not self.is_export:
            return self.source
        return source_run(self.source, self.meta)

    def run_config(self) -> dict:
        """The config.json of :meth:`run_folder` (the training patients, for the leakage
        check); {} when there is none."""
        run = self.run_folder()
        path = None if run is None else run / CONFIG_FILE
        return read_json(path) if path is not None and path.is_file() else {}


def module_model(
    module: nn.Module, contract: PreprocessContract, precision: Precision
) -> ScoringModel:
    """A module in memory (training validation, out-of-fold predictions) as a ScoringModel at
    ``precision``, on the device its parameters are on; it has no threshold of its own."""
    weight = next(module.parameters(), None)
    device = torch.device("cpu") if weight is None else weight.device

    def forward(x: torch.Tensor) -> torch.Tensor:
        with precision.autocast(module):
            return module(x)

    return ScoringModel(
        forward=forward,
        contract=contract,
        threshold=0.5,
        backend="eager",
        model_id="in-memory",
        checksum="",
        device=device,
        precision=precision.name,
        module=module,
    )


def threshold_source(meta: dict) -> dict:
    """The threshold's provenance from a run's metadata or an export's sidecar: the policy, and
    the site calibration (temperature, bias, sample size and fingerprint) or the site
    adaptation (method, films, source run) when there is one."""
    calibration = meta.get("calibration")
    adaptation = meta.get("adaptation")
    adapted = {} if not adaptation else {"adaptation": _adaptation_source(adaptation)}
    return adapted | {
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


def _adaptation_source(adaptation: dict) -> dict:
    """What ``threshold_source`` says of a site adaptation."""
    keys = ("method", "films", "labels_read", "source_model_sha256")
    return {key: adaptation.get(key) for key in keys}


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
        meta=info.meta,
        arch=info.arch,
        source=run_dir,
        module=model,
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
        meta=sidecar,
        arch=sidecar["arch"],
        source=path,
    )


def _auto(
    run_dir: Path,
    device: torch.device,
    precision: str,
    load_eager: Callable[[], ScoringModel],
) -> ScoringModel:
    """The model ``--backend auto`` scores a run folder with (:mod:`backend_choice`): its
    fastest verified export, else ``load_eager()``; an explicit ``--precision`` other than
    ``auto`` keeps the eager model at that precision."""
    if precision != "auto":
        model = load_eager()
        return replace(model, choice=f"eager at --precision {precision}, as asked")
    path, why = choose_for_run(run_dir, device)
    if path is not None:
        try:
            return replace(_exported(path, "auto", device), choice=f"{path.name}: {why}")
        except CxrFastError as exc:  # e.g. the file changed after its sidecar was written
            to_stderr(f"cxr-fast: {path} unusable ({exc}); scoring with the eager model")
            why = f"{path.name} failed to load ({exc})"
    model = load_eager()
    return replace(model, choice=f"eager {model.precision}: {why}")


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
            return _auto(
                ref, device, precision, lambda: _eager(ref, device, tta, precision, loaded)
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


def load_model(
    ref: Path, device: torch.device, tta: bool = False, precision: str = "auto"
) -> ScoringModel:
    """The model ``ref`` names, as given: a run folder's (or ensemble's) own eager model at
    ``precision``, or the exported file itself. What evaluate and calibrate measure, so their
    numbers are those of that very model (``score --model REF --backend eager`` for a run,
    ``score --model EXPORT`` for an export)."""
    backend = "eager" if Path(ref).is_dir() else "auto"
    return load_scoring_model(Path(ref), backend, device, tta, precision)
