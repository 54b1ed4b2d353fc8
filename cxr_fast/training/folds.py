"""``run_train_folds``: K members on patient-level folds -> one ensemble run folder.

The run folder holds ``members/fold-K/`` (each an ordinary, resumable run whose validation set
is its fold), ``oof.parquet`` (every training image's out-of-fold probability: the member that
never saw its patient scored it, on the members' common scale), ``metrics.json`` (out-of-fold
metrics with bootstrap CIs) and ``model.pt``: the ensemble (mean of the members' logits, each
member's head aligned by ``training/member_alignment.py``) with the threshold chosen on the
out-of-fold predictions. Every other stage loads it like a single run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from cxr_fast import __version__
from cxr_fast.data.bad_file_scan import BadFile
from cxr_fast.data.discover import discover, display_path, path_bytes
from cxr_fast.data.loader_spec import LoaderSpec
from cxr_fast.data.loaders import make_scoring_loader
from cxr_fast.device import resolve_device
from cxr_fast.distributed import DistContext, context_from_env
from cxr_fast.errors import UserInputError
from cxr_fast.inference import sigmoid
from cxr_fast.messages import Log, to_stdout
from cxr_fast.metrics import binary_metrics, threshold_choice
from cxr_fast.models.ensemble import Ensemble
from cxr_fast.precision import inference_precision
from cxr_fast.run_folder import (
    CONFIG_FILE,
    LAST_FILE,
    METRICS_FILE,
    MODEL_FILE,
    atomic_write_json,
    load_run,
    read_json,
    save_model,
)
from cxr_fast.scoring.model import module_model
from cxr_fast.training.config import TrainConfig
from cxr_fast.training.member_alignment import apply_alignment, fit_alignment, fold_into_head
from cxr_fast.training.one_model import train_model
from cxr_fast.training.plan import contract_for, plan, plan_data
from cxr_fast.training.results import TrainResult
from cxr_fast.training.state import load_training_state
from cxr_fast.training.train_data import TrainData, fingerprint, training_records
from cxr_fast.training.writer import TRAINING_PACKAGES
from cxr_fast.versions import versions

MEMBERS_DIR = "members"
OOF_FILE = "oof.parquet"


def member_dir(run_dir: Path, k: int) -> Path:
    """Where member ``k`` (0-based) of an ensemble run lives."""
    return run_dir / MEMBERS_DIR / f"fold-{k + 1}"


def _member_config(config: TrainConfig, k: int) -> TrainConfig:
    return replace(config, out=str(member_dir(Path(config.out), k)), fold=k)


def member_data(config: TrainConfig) -> list[tuple[TrainData, list[BadFile]]]:
    """Each member's (training and validation records, files left out by --skip-bad), as its
    own run will select them: the same code, so --dry-run shows the folds the run trains on,
    and bad files or a fold without one class are refused before anything is written."""
    records = discover(config.data)
    return [plan_data(_member_config(config, k), records) for k in range(config.folds)]


def describe_folds(config: TrainConfig) -> dict:
    """What ``--dry-run`` prints for an ensemble: the resolved plan, with each member's
    training and validation image counts (those its run logs)."""
    members = member_data(config)
    skipped = {b.path: b for _, bad in members for b in bad}
    return {
        **plan(_member_config(config, 0)).describe(),
        "train": config.to_dict(),
        "images": {
            "train": len(members[0][0].train) + len(members[0][0].val),
            "folds": [
                {"fold": k + 1, "train": len(data.train), "val": len(data.val)}
                for k, (data, _) in enumerate(members)
            ],
        },
        "val_source": f"{config.folds}-fold patient-level CV",
        **({"skipped_bad_files": [vars(b) for b in skipped.values()]} if skipped else {}),
    }


def _write_parent_config(config: TrainConfig) -> None:
    records = training_records(discover(config.data))
    data = TrainData(train=records, val=[], val_source=f"{config.folds}-fold patient-level CV")
    atomic_write_json(
        {
            "train": config.to_dict(),
            "arch": config.arch,
            "seed": config.seed,
            "members": config.folds,
            "contract": contract_for(config).to_dict(),
            "versions": versions(TRAINING_PACKAGES),
            "data": fingerprint(config.data, data),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
        Path(config.out) / CONFIG_FILE,
    )


def _out_of_fold(config: TrainConfig, workers: int):
    """(members, records, fold of each, logit of each): every member loaded once, each
    scoring its own validation fold."""
    device = resolve_device(config.device)
    members, rows, folds, logits = [], [], [], []
    for k in range(config.folds):
        member = _member_config(config, k)
        model, info = load_run(member.out, device)
        val = plan(member).data.val
        spec = LoaderSpec(val, info.contract, 64, workers=workers, device=device)
        loader = make_scoring_loader(spec)
        predictor = module_model(model, info.contract, inference_precision(device))
        index, out, _ = predictor.predict(loader)
        members.append(model)
        rows += [val[i] for i in index]
        folds += [k] * len(index)
        logits.append(out)
    return members, rows, np.array(folds), np.concatenate(logits)


def _write_oof(path: Path, records: list, folds: np.ndarray, probs: np.ndarray) -> None:
    table = pa.table(
        {
            # As in score's output: text paths, and the bytes of names that are not UTF-8.
            "path": [display_path(r.path) for r in records],
            "path_bytes": pa.array([path_bytes(r.path) for r in records], pa.binary()),
            "patient": [r.patient for r in records],
            "label": pa.array([r.label for r in records], pa.int8()),
            "fold": pa.array(folds + 1, pa.int8()),
            "prob_pneumonia": pa.array(probs, pa.float32()),
        }
    )
    pq.write_table(table, path)


def _finished(run_dir: Path, config: TrainConfig) -> TrainResult | None:
    """The result of an ensemble run whose members have all finished, else None."""
    epochs, best = 0, 0
    for k in range(config.folds):
        state = member_dir(run_dir, k) / LAST_FILE
        if not state.is_file():
            return None
        progress = load_training_state(state)["progress"]
        if progress["epoch"] < config.epochs and progress["bad_epochs"] < config.patience:
            return None
        epochs += progress["epoch"]
        best = max(best, progress["best_epoch"] or 0)
    metrics = read_json(run_dir / METRICS_FILE)
    return TrainResult(
        run_dir=run_dir,
        epochs_done=epochs,
        best_epoch=best,
        best_auc=float(metrics["roc_auc"]),
        threshold=float(metrics["threshold"]),
        stopped_early=False,
        seconds=0.0,
        epochs_trained=0,
        epochs_planned=config.epochs * config.folds,
        folds=config.folds,
    )


def _save_ensemble(
    config: TrainConfig,
    members: list[torch.nn.Module],
    alignment: list[tuple[float, float]],
    choice: dict,
    metrics: dict,
    member_epochs: list[int | None],
) -> None:
    """The ensemble's model.pt: the aligned members, the contract and the out-of-fold
    threshold (``member_alignment``: each member's (scale, shift), already in its weights)."""
    save_model(
        Path(config.out),
        Ensemble(members),
        {
            "arch": config.arch,
            "contract": contract_for(config).to_dict(),
            "members": config.folds,
            "member_alignment": [list(pair) for pair in alignment],
            "threshold": choice["threshold"],
            "threshold_rule": choice["policy"],
            "threshold_choice": choice,
            "oof_roc_auc": metrics["roc_auc"],
            "member_epochs": member_epochs,
            "cxr_fast": __version__,
        },
    )


def run_train_folds(
    config: TrainConfig,
    *,
    resume: bool = False,
    log: Log = to_stdout,
    on_member: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train ``config.folds`` members (resuming finished or killed ones) and assemble the
    ensemble run folder; returns the out-of-fold ROC-AUC as ``best_auc``. ``on_member(k,
    mean_auc)`` is called after each member with the mean best validation AUC so far."""
    started = time.perf_counter()
    run_dir = Path(config.out)
    if not resume and ((run_dir / MODEL_FILE).exists() or (run_dir / CONFIG_FILE).exists()):
        raise UserInputError(
            f"{run_dir} already holds a run: pass --resume, or choose another --out"
        )
    if resume and (run_dir / MODEL_FILE).exists():
        done = _finished(run_dir, config)
        if done is not None:
            log(f"nothing to do: all {config.folds} members of {run_dir} are trained")
            return replace(done, seconds=time.perf_counter() - started)
    member_data(config)  # bad files are refused before the folder is made (nothing left)
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_parent_config(config)
    results = []
    for k in range(config.folds):
        member = _member_config(config, k)
        log(f"fold {k + 1} of {config.folds} -> {member.out}")
        results.append(
            train_model(member, resume=(Path(member.out) / CONFIG_FILE).exists(), log=log)
        )
        if on_member is not None:
            on_member(k, float(np.mean([r.best_auc for r in results])))
    metrics = _assemble(config, [r.best_epoch for r in results], log)
    return TrainResult(
        run_dir=run_dir,
        epochs_done=sum(r.epochs_done for r in results),
        best_epoch=max(r.best_epoch or 0 for r in results),
        best_auc=float(metrics["roc_auc"]),
        threshold=metrics["threshold"],
        stopped_early=False,
        seconds=time.perf_counter() - started,
        folds=config.folds,
    )


def _assemble(config: TrainConfig, member_epochs: list[int | None], log: Log) -> dict:
    """The ensemble from its trained members: the out-of-fold predictions, the threshold
    chosen on them, metrics.json, oof.parquet and model.pt. Returns the metrics."""
    run_dir = Path(config.out)
    members, records, folds, raw = _out_of_fold(config, config.workers)
    alignment = fit_alignment(raw, folds, config.folds)
    logits = apply_alignment(raw, folds, alignment)
    labels = np.array([r.label for r in records])
    probs = sigmoid(logits)
    choice = threshold_choice(
        labels,
        probs,
        policy=config.threshold_policy,
        target_sensitivity=config.target_sensitivity,
    )
    metrics = binary_metrics(labels, probs, choice["threshold"], seed=config.seed)
    metrics["threshold_choice"] = choice
    atomic_write_json(
        {"split": "out-of-fold", "members": config.folds, **metrics}, run_dir / METRICS_FILE
    )
    _write_oof(run_dir / OOF_FILE, records, folds, probs)
    for member, (scale, shift) in zip(members, alignment, strict=True):
        fold_into_head(member, scale, shift)
    _save_ensemble(config, members, alignment, choice, metrics, member_epochs)
    ci = metrics["ci95"]["roc_auc"]
    log(
        f"out-of-fold ROC-AUC {metrics['roc_auc']:.4f} (95% CI {ci[0]:.4f}-{ci[1]:.4f}) on "
        f"{len(records)} images; ensemble of {config.folds} -> {run_dir / MODEL_FILE}"
    )
    return metrics


def folds_under_torchrun(
    config: TrainConfig,
    explicit: bool,
    log: Log = to_stdout,
    ctx: DistContext | None = None,
) -> TrainConfig:
    """Under torchrun one model trains with DDP: the default K-fold ensemble becomes one run
    (said on rank 0); an ``explicit`` --folds K > 1 is refused (members are trained one after
    another; launch them without torchrun)."""
    ctx = ctx or context_from_env()
    if not ctx.enabled or config.folds == 1:
        return config
    if explicit:
        raise UserInputError(
            "--folds > 1 does not run under torchrun: train the ensemble without it"
        )
    if ctx.is_main:
        log(f"torchrun: training one model with DDP (--folds {config.folds} -> 1)")
    return replace(config, folds=1)
