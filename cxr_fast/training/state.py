"""Resumable training state (``last.pt``): everything needed to continue a killed run."""

from __future__ import annotations

from dataclasses import dataclass, field
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


@dataclass
class TrainingState:
    """What a run trains and continues from: the model, its optimiser, learning-rate schedule
    and gradient scaler, the weight average (EMA; None when off) and where the run stands.
    ``last.pt`` holds all of it (and the random number generators' states)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    ema: nn.Module | None = None
    progress: Progress = field(default_factory=Progress)
    precision: str | None = None  # the resolved precision (``amp-bf16``, not ``auto``)

    @property
    def evaluated(self) -> nn.Module:
        """The model that is validated and saved: the weight average when there is one."""
        return self.ema.module if self.ema is not None else self.model

    def save(self, run_dir: Path) -> None:
        """Write ``last.pt`` atomically (plain tensors and numbers: loads with weights_only)."""
        progress = self.progress
        state = {
            "format_version": FORMAT_VERSION,
            "progress": {
                "epoch": progress.epoch,
                "best_epoch": progress.best_epoch,
                "best_auc": progress.best_auc,
                "bad_epochs": progress.bad_epochs,
            },
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "rng": rng_state(_device_of(self.model)),
            "precision": self.precision,
        }
        atomic_torch_save(state, run_dir / LAST_FILE)

    def restore(self, run_dir: Path) -> str | None:
        """Load ``run_dir``'s ``last.pt`` into these objects and take its progress; returns
        the precision the run was saved in (None in files from before it was recorded).

        ``precision: auto`` may resolve differently on the host that resumes (bf16 on an H100
        or a bf16 CPU, fp16 on a T4): a scaler saved disabled (bf16, fp32) has an empty state,
        which an enabled one refuses to load, so it starts from its initial scale instead."""
        path = run_dir / LAST_FILE
        if not path.is_file():
            raise NotFoundError(f"nothing to resume in {run_dir}: {LAST_FILE} is missing")
        state = load_training_state(path)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state["scaler"] or not self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        restore_rng_state(state["rng"], _device_of(self.model))
        self.progress = Progress(**state["progress"])
        return state.get("precision")


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
