"""What a training run writes into its folder, in one object (timm's CheckpointSaver is the
model): config.json at the start, model.pt and metrics.json at each new best epoch, one
train_log.jsonl line and last.pt after every epoch. Only rank 0 writes; the other ranks' writer
does nothing, so the training loop never asks which rank it is on."""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from cxr_fast import __version__
from cxr_fast.errors import UserInputError
from cxr_fast.metrics import binary_metrics, threshold_choice
from cxr_fast.run_folder import (
    CONFIG_FILE,
    LAST_FILE,
    LOG_FILE,
    METRICS_FILE,
    MODEL_FILE,
    atomic_write_json,
    read_json,
    save_model,
)
from cxr_fast.training.config import TrainConfig
from cxr_fast.training.data import fingerprint
from cxr_fast.versions import versions

if TYPE_CHECKING:
    from cxr_fast.training.plan import Plan
    from cxr_fast.training.results import ValResult
    from cxr_fast.training.state import TrainingState

TRAINING_PACKAGES = ("torch", "torchvision", "nvidia-dali-cuda120", "numpy", "scikit-learn")


class RunWriter:
    """The run folder ``run_dir`` as training writes it (``enabled``: this is rank 0)."""

    def __init__(self, run_dir: Path, enabled: bool = True) -> None:
        self.run_dir = run_dir
        self.enabled = enabled

    def refuse_existing(self, resume: bool) -> None:
        """A new run never writes into a folder that already holds one."""
        run_dir = self.run_dir
        if not resume and ((run_dir / MODEL_FILE).exists() or (run_dir / LAST_FILE).exists()):
            raise UserInputError(
                f"{run_dir} already holds a run: pass --resume, or choose another --out"
            )

    def start(self, plan: Plan) -> None:
        """A fresh run folder with its config.json (the resolved plan, versions, data)."""
        if not self.enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(
            {
                **plan.describe(),
                "arch": plan.config.arch,
                "seed": plan.config.seed,
                "versions": versions(TRAINING_PACKAGES),
                "data": fingerprint(plan.config.data, plan.data),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            },
            self.run_dir / CONFIG_FILE,
        )

    def resumed(self, config: TrainConfig) -> None:
        """Write the resumed configuration (this folder, the epoch count asked for now) into
        config.json, so that a later ``--resume`` finishes at the new count, in the same
        folder."""
        path = self.run_dir / CONFIG_FILE
        if not self.enabled or not path.is_file():
            return
        saved = read_json(path)
        train = saved.get("train", {})
        if train.get("epochs") == config.epochs and train.get("out") == config.out:
            return
        saved["train"] = {**train, "epochs": config.epochs, "out": config.out}
        atomic_write_json(saved, path)

    def trim_log(self, epochs_done: int) -> None:
        """Drop log lines of epochs after the saved state (a kill between the two writes)."""
        path = self.run_dir / LOG_FILE
        if not self.enabled or not path.is_file():
            return
        kept = [
            line
            for line in path.read_text().splitlines()
            if line.strip() and json.loads(line)["epoch"] <= epochs_done
        ]
        path.write_text("".join(line + "\n" for line in kept))

    def best(self, evaluated: nn.Module, plan: Plan, epoch: int, val: ValResult) -> None:
        """model.pt and metrics.json of a new best epoch, with the threshold chosen on it."""
        if not self.enabled:
            return
        config = plan.config
        choice = threshold_choice(
            val.labels,
            val.probs,
            policy=config.threshold_policy,
            target_sensitivity=config.target_sensitivity,
        )
        metrics = binary_metrics(val.labels, val.probs, choice["threshold"], seed=config.seed)
        metrics["threshold_choice"] = choice
        meta = {
            "arch": config.arch,
            "contract": plan.contract.to_dict(),
            "threshold": choice["threshold"],
            "threshold_rule": choice["policy"],
            "threshold_choice": choice,
            "epoch": epoch,
            "val_roc_auc": val.roc_auc,
            "cxr_fast": __version__,
        }
        save_model(self.run_dir, evaluated, meta)
        atomic_write_json(
            {"split": "validation", "epoch": epoch, **metrics}, self.run_dir / METRICS_FILE
        )

    def epoch(self, entry: dict, state: TrainingState) -> None:
        """One train_log.jsonl line and last.pt after a finished epoch."""
        if not self.enabled:
            return
        with (self.run_dir / LOG_FILE).open("a") as handle:
            handle.write(json.dumps(entry) + "\n")
        state.save(self.run_dir)

    def threshold(self) -> float | None:
        """The decision threshold of the best model saved so far (None: none saved)."""
        if (self.run_dir / MODEL_FILE).exists():
            return read_json(self.run_dir / METRICS_FILE)["threshold"]
        return None


def kept_after_interrupt(config: TrainConfig) -> str:
    """What an interrupted training run left in its folder and the command to continue."""
    run_dir = Path(config.out)
    again = f"continue with: cxr-fast train --out {shlex.quote(str(run_dir))} --resume"
    if config.folds > 1:
        members = sorted(run_dir.glob("members/fold-*/last.pt"))
        return f"{len(members)} of {config.folds} fold members started in {run_dir}; {again}"
    if (run_dir / LAST_FILE).is_file():
        state = torch.load(run_dir / LAST_FILE, map_location="cpu", weights_only=True)
        done = int(state["progress"]["epoch"])
        return f"epoch {done} of {config.epochs} saved in {run_dir}; {again}"
    if (run_dir / CONFIG_FILE).is_file():
        return f"no epoch of {run_dir} finished; {again}"
    return f"nothing was written to {run_dir}; start again with the same command"
