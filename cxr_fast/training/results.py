"""How a validation pass and a training run ended, as plain values."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxr_fast.text import plural


@dataclass(frozen=True)
class ValResult:
    """One validation pass over the whole validation set (gathered from every rank)."""

    labels: np.ndarray
    probs: np.ndarray
    loss: float
    roc_auc: float


@dataclass(frozen=True)
class TrainResult:
    """Where the run is and how it ended."""

    run_dir: Path
    epochs_done: int
    best_epoch: int | None
    best_auc: float
    threshold: float | None
    stopped_early: bool
    seconds: float
    epochs_trained: int = -1  # epochs trained by this call (0: a resumed run had nothing to do)
    epochs_planned: int = 0  # the run's epoch count (config.epochs)
    folds: int = 1  # > 1: an ensemble, its best_auc out-of-fold
    is_main: bool = True  # False on torchrun ranks other than 0 (rank 0 reports the run)

    def summary(self) -> str:
        """How the run ended and where it is, for the user ("" on ranks other than 0)."""
        if self.epochs_trained == 0:
            how = "stopped early after" if self.stopped_early else "nothing to do:"
            return (
                f"{how} {self.epochs_done} of {plural(self.epochs_planned, 'epoch')} done "
                f"(best epoch {self.best_epoch}, ROC-AUC {self.best_auc:.4f}); to train longer: "
                f"cxr-fast train --out {shlex.quote(str(self.run_dir))} --resume --epochs N"
            )
        if not self.is_main:
            return ""
        what = "out-of-fold" if self.folds > 1 else "validation"
        return (
            f"done in {self.seconds:.0f} s: {plural(self.epochs_done, 'epoch')}"
            f"{' (early stop)' if self.stopped_early else ''}, best epoch {self.best_epoch} "
            f"with {what} ROC-AUC {self.best_auc:.4f}, threshold {self.threshold:.4f}\n"
            f"run folder: {self.run_dir}"
        )
