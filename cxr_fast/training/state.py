"""Resumable training state (``last.pt``): everything needed to continue a killed run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from cxr_fast.errors import NotFoundError, UserInputError
from cxr_fast.run_folder import FORMAT_VERSION, LAST_FILE, atomic_torch_save, load_plain
from cxr_fast.training.rng import restore_rng_state, rng_state


@dataclass
class Progress:
    """Where a run stands: epochs completed, the best epoch so far and epochs without gain."""

    epoch: int = 0
    best_epoch: int | None = None
    best_auc: float = float("-inf")
    bad_epochs: int = 0

    def record(self, epoch: int, auc: float) -> bool:
        """Count a finished epoch; True when it is the new best (strictly higher AUC)."""
        self.epoch = epoch
        if auc > self.best_auc:
            self.best_epoch, self.best_auc, self.bad_epochs = epoch, auc, 0
            return True
        self.bad_epochs += 1
        return False


def save_state(
    run_dir: Path,
    progress: Progress,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    ema: nn.Module | None = None,
) -> None:
    """Write ``last.pt`` atomically (plain tensors and numbers: loads with weights_only)."""
    state = {
        "format_version": FORMAT_VERSION,
        "progress": {
            "epoch": progress.epoch,
            "best_epoch": progress.best_epoch,
            "best_auc": progress.best_auc,
            "bad_epochs": progress.bad_epochs,
        },
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "ema": ema.state_dict() if ema is not None else None,
        "rng": rng_state(_device_of(model)),
    }
    atomic_torch_save(state, run_dir / LAST_FILE)


def load_state(
    run_dir: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    ema: nn.Module | None = None,
) -> Progress:
    """Restore ``last.pt`` into the given objects; return the run's :class:`Progress`."""
    path = run_dir / LAST_FILE
    if not path.is_file():
        raise NotFoundError(f"nothing to resume in {run_dir}: {LAST_FILE} is missing")
    state = load_training_state(path)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    if ema is not None and state.get("ema") is not None:
        ema.load_state_dict(state["ema"])
    restore_rng_state(state["rng"], _device_of(model))
    return Progress(**state["progress"])


def load_training_state(path: Path) -> dict:
    """A ``last.pt`` as a dict; UserInputError (one line) for a truncated, foreign or
    pickle-carrying file."""
    state = load_plain(
        path,
        "training state",
        "delete it and --resume starts the run again from epoch 1, or train into another --out",
    )
    if not isinstance(state, dict) or not {"progress", "model"} <= set(state):
        raise UserInputError(f"{path} is not a cxr-fast training state (no progress and model)")
    return state


def _device_of(model: nn.Module) -> torch.device:
    """The training device: where the model's parameters are."""
    return next(model.parameters()).device
