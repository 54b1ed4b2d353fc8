"""What a scoring output was made with, kept beside its partial chunks so that ``--resume``
never mixes rows of two models (or thresholds, contracts, backends, archives) in one file."""

from __future__ import annotations

import json
from pathlib import Path

from cxr_fast.errors import ResumeMismatchError
from cxr_fast.run_folder import atomic_write_json
from cxr_fast.scoring.gating import gate_settings

IDENTITY_FILE = "_identity.json"
# Field -> how a refusal names it. Order: the most telling difference is named first.
FIELDS = {
    "model_sha256": "model checksum",
    "contract": "preprocessing contract",
    "threshold": "threshold",
    "backend": "backend",
    "precision": "precision",
    "archive": "archive root",
    "shard": "shard",
    "gate": "input gate (--accept-ood, --modalities)",
}


def identity(model, archive: Path, shard: tuple[int, int] | None, accept_ood: bool = False) -> dict:
    """The identity of a scoring run with ``model`` (a ScoringModel) over ``archive``."""
    return {
        "gate": gate_settings(model, accept_ood),
        "model_sha256": model.checksum,
        "contract": model.contract.to_dict(),
        "threshold": model.threshold,
        "backend": model.backend,
        "precision": model.precision,
        "archive": str(archive.resolve()),
        "shard": list(shard) if shard else None,
    }


def _short(value) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= 24 else text[:12] + "…"


def record(staging: Path, current: dict) -> None:
    """Write ``current`` into a new staging folder (before its first chunk)."""
    atomic_write_json(current, staging / IDENTITY_FILE)


def check(staging: Path, current: dict, out: Path) -> None:
    """ResumeMismatchError unless the partial output in ``staging`` was made like ``current``."""
    path = staging / IDENTITY_FILE
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        raise ResumeMismatchError(
            f"cannot resume {out}: its partial results do not say which model wrote them "
            "(an older cxr-fast or a damaged folder); pass --overwrite to start over"
        ) from None
    for key, name in FIELDS.items():
        if saved.get(key) != current.get(key):
            raise ResumeMismatchError(
                f"cannot resume {out}: its partial results were written with {name} "
                f"{_short(saved.get(key))}, this run has {_short(current.get(key))}; resume with "
                "the same model and options, or pass --overwrite to start over"
            )


def algorithm(model) -> dict:
    """What an answer sent out of cxr-fast names as its algorithm (a DICOM SR's TID 4019):
    architecture, the model file's checksum, cxr-fast's version, the run's threshold and the
    site calibration, if any. Unlike :func:`identity` it holds nothing of where films came from,
    so the same model gives the same identity to every input path (score, listen, DICOMweb)."""
    from cxr_fast import __version__

    return {
        "name": "cxr-fast",
        "arch": model.arch or model.model_id.split(":", 1)[0],
        "model_sha256": model.checksum,
        "version": __version__,
        "threshold": model.threshold,
        "calibration": (model.threshold_source or {}).get("calibration"),
    }


def model_metadata(model) -> dict:
    """The Parquet file metadata that names the model, alike in every output of rows (score,
    listen): model, checksum, algorithm (what an SR names), contract, threshold and its source,
    backend and precision."""
    return {
        "cxr_fast_model_id": model.model_id,
        "cxr_fast_model_sha256": model.checksum,
        # What an answer sent out (a DICOM SR) names as its algorithm: score --store-sr reads it
        "cxr_fast_algorithm": algorithm(model),
        "cxr_fast_contract": model.contract.to_dict(),
        "cxr_fast_threshold": model.threshold,
        "cxr_fast_threshold_source": model.threshold_source,
        "cxr_fast_backend": model.backend,
        "cxr_fast_precision": model.precision,
    }
