"""A run folder (``runs/NAME/``): the trained model with its contract and threshold, plus JSON.

``model.pt`` holds a state dict and plain-JSON metadata only, so it loads with
``torch.load(weights_only=True)``; every file is written to a temporary name and renamed, so a
crash never leaves a half-written file where a reader expects a whole one.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cxr_fast.contract import PreprocessContract
from cxr_fast.errors import NotFoundError, UserInputError

FORMAT_VERSION = 1
MODEL_FILE = "model.pt"
LAST_FILE = "last.pt"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
LOG_FILE = "train_log.jsonl"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write) -> None:
    """``write(handle)`` into ``path`` through a temporary file, fsynced, then renamed: a reader
    sees all of it or none, and a failed write leaves no partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` through a temporary file and a rename."""
    atomic_write(path, lambda handle: torch.save(obj, handle))


def atomic_write_json(data: Any, path: Path) -> None:
    """Pretty JSON through a temporary file and a rename."""
    text = json.dumps(data, indent=2, sort_keys=False) + "\n"
    atomic_write(path, lambda handle: handle.write(text.encode()))


def read_json(path: Path) -> Any:
    """Parsed JSON of ``path``."""
    return json.loads(path.read_text())


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_model(run_dir: Path, model: nn.Module, meta: dict) -> Path:
    """Write ``model.pt``: the state dict (on the CPU) and JSON-safe ``meta``."""
    json.dumps(meta)  # fail here, not at load time, if meta is not plain data
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    path = run_dir / MODEL_FILE
    atomic_torch_save({"format_version": FORMAT_VERSION, "state_dict": state, "meta": meta}, path)
    return path


@dataclass(frozen=True)
class RunInfo:
    """What a run folder says about its model."""

    path: Path
    arch: str
    contract: PreprocessContract
    threshold: float
    meta: dict
    config: dict

    @property
    def members(self) -> int:
        """Ensemble members in the run (1: a single model)."""
        return int(self.meta.get("members", 1))

    @property
    def temperature(self) -> float:
        """Logits are divided by this (1: not calibrated; see ``cxr-fast calibrate``)."""
        return float(self.meta.get("calibration", {}).get("temperature", 1.0))

    @property
    def bias(self) -> float:
        """Added to the tempered logits (0: not calibrated, or calibrated before Platt)."""
        return float(self.meta.get("calibration", {}).get("bias", 0.0))

    @property
    def calibrated(self) -> bool:
        """Whether the model's logits are site-calibrated (wrapped in ``TemperatureScaled``)."""
        return self.temperature != 1.0 or self.bias != 0.0

    def layer_names(self, layer: str) -> list[str]:
        """Where ``layer`` of the architecture sits in the loaded module: once per member."""
        from cxr_fast.models.ensemble import CALIBRATED_PREFIX, member_prefix

        names = (
            [layer]
            if self.members == 1
            else [f"{member_prefix(i)}.{layer}" for i in range(self.members)]
        )
        if self.calibrated:
            names = [f"{CALIBRATED_PREFIX}.{name}" for name in names]
        return names


def load_plain(path: Path, what: str, remedy: str) -> Any:
    """``torch.load(path, weights_only=True)`` of a file cxr-fast wrote (``what``: "checkpoint",
    "training state"). A file that is truncated, foreign, or carries a pickle the safe loader
    refuses is the user's to fix, not a bug: UserInputError, one line, ending in ``remedy``."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's message advises weights_only=False, which would run whatever the pickle names.
        names = _unsafe_globals(path)
        if names:
            raise UserInputError(
                f"{path} refused: loading it would run code from the file (its pickle calls "
                f"{', '.join(names[:3])}), so it is not a plain cxr-fast {what}; {remedy}"
            ) from None
        raise UserInputError(
            f"{path} refused: it holds a pickle only a loader that runs code from the file could "
            f"read, so it is not a plain cxr-fast {what}; {remedy}"
        ) from None
    except Exception as exc:  # zip and EOF errors alike: the file is not whole
        # The first sentence says what failed; torch goes on with guesses at why.
        reason = " ".join(str(exc).split()).split(". ")[0][:200] or type(exc).__name__
        raise UserInputError(
            f"{path} is unreadable (truncated or not a cxr-fast {what}: {reason}); {remedy}"
        ) from exc


def _unsafe_globals(path: Path) -> list[str]:
    """What a pickle-carrying torch file would import and call if loaded in full (read from its
    opcodes, nothing runs); [] when that cannot be told."""
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # not a torch zip archive: nothing to name
        return []


def _load_checkpoint(path: Path) -> dict:
    """``model.pt`` as a dict; a truncated or foreign file is the user's to fix, not a bug."""
    checkpoint = load_plain(path, "checkpoint", "restore it from a backup or train the run again")
    if not isinstance(checkpoint, dict) or not {"state_dict", "meta"} <= set(checkpoint):
        raise UserInputError(f"{path} is not a cxr-fast checkpoint (no state_dict and meta)")
    return checkpoint


def read_run(run_dir: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], RunInfo]:
    """State dict and :class:`RunInfo` of a run folder (no model is built)."""
    run_dir = Path(run_dir)
    path = run_dir / MODEL_FILE
    if not path.is_file():
        raise NotFoundError(f"{run_dir} is not a trained run: {MODEL_FILE} is missing")
    checkpoint = _load_checkpoint(path)
    if checkpoint.get("format_version") != FORMAT_VERSION:
        raise UserInputError(
            f"{path}: unsupported checkpoint format {checkpoint.get('format_version')}"
        )
    meta = checkpoint["meta"]
    config_path = run_dir / CONFIG_FILE
    info = RunInfo(
        path=run_dir,
        arch=meta["arch"],
        contract=PreprocessContract.from_dict(meta["contract"]),
        threshold=float(meta["threshold"]),
        meta=meta,
        config=read_json(config_path) if config_path.is_file() else {},
    )
    return checkpoint["state_dict"], info


def build_run_model(info: RunInfo) -> nn.Module:
    """An untrained module shaped like the run's: one model, or an ensemble of its members."""
    from cxr_fast.models import build_model
    from cxr_fast.models.ensemble import Ensemble

    if info.members == 1:
        return build_model(info.arch)
    return Ensemble([build_model(info.arch) for _ in range(info.members)])


def load_run(
    run_dir: str | os.PathLike[str], device: torch.device | str = "cpu", tta: bool = False
) -> tuple[nn.Module, RunInfo]:
    """The trained model (eval mode, channels_last, on ``device``) and its :class:`RunInfo`;
    for an ensemble run, one module averaging its members' logits."""

    state, info = read_run(run_dir)
    model = build_run_model(info)
    model.load_state_dict(state)
    if info.calibrated:
        from cxr_fast.models.ensemble import TemperatureScaled

        model = TemperatureScaled(model, info.temperature, info.bias)
    if tta:
        from cxr_fast.models.ensemble import TestTimeAugment

        model = TestTimeAugment(model)  # opt-in: three views per image, three times the cost
    model = model.to(device=device, memory_format=torch.channels_last).eval()
    return model, info
