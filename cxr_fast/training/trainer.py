"""``run_train``: data -> model -> epochs of training and validation -> a run folder."""

from __future__ import annotations

import itertools
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from cxr_fast.contract import PreprocessContract
from cxr_fast.data.batch import num_batches
from cxr_fast.data.discover import Record, discover
from cxr_fast.data.loader_spec import LoaderSpec
from cxr_fast.data.loaders import make_scoring_loader, make_train_loader, resolve_loader
from cxr_fast.data.preflight import BadFile, skipped_line
from cxr_fast.device import resolve_device
from cxr_fast.distributed import (
    DistContext,
    average_buffers,
    barrier,
    context_from_env,
    device_for,
    gather_objects,
    start,
    stop,
)
from cxr_fast.errors import Interrupted, NotFoundError, UserInputError
from cxr_fast.inference import sigmoid
from cxr_fast.metrics import roc_auc
from cxr_fast.models import build_model
from cxr_fast.models.pretrained import IMAGENET_GREY_MEAN, IMAGENET_GREY_STD
from cxr_fast.precision import Precision, resolve_precision
from cxr_fast.run_folder import (
    CONFIG_FILE,
    LAST_FILE,
    read_json,
    read_run,
)
from cxr_fast.scoring.model import module_model
from cxr_fast.text import plural
from cxr_fast.training.config import TrainConfig
from cxr_fast.training.data import TrainData, fingerprint, pos_weight_value, select_train_val
from cxr_fast.training.loop import Regularisers, train_epoch
from cxr_fast.training.preflight import checked
from cxr_fast.training.resume_check import check_same_data, check_same_folder
from cxr_fast.training.schedule import warmup_cosine
from cxr_fast.training.shift_threshold import rethreshold_under_shift, wants_shift_threshold
from cxr_fast.training.state import Progress, load_state
from cxr_fast.training.writer import RunWriter, kept_after_interrupt

# Steps between reads of the training loss for the progress bar (each read is a GPU sync).
LOSS_SHOWN_EVERY = 20


@dataclass(frozen=True)
class Plan:
    """A configuration resolved against this host and the data: what will actually run."""

    config: TrainConfig
    device: torch.device
    precision: Precision
    loader: str
    contract: PreprocessContract
    data: TrainData
    pos_weight: float | None
    skipped: tuple[BadFile, ...] = ()  # files left out by --skip-bad

    def describe(self) -> dict:
        """The resolved plan as plain JSON (what ``--dry-run`` prints)."""
        return {
            "train": self.config.to_dict(),
            "device": str(self.device),
            "precision": self.precision.name,
            "loader": self.loader,
            "contract": self.contract.to_dict(),
            "pos_weight": self.pos_weight,
            "images": {"train": len(self.data.train), "val": len(self.data.val)},
            "val_source": self.data.val_source,
            **({"skipped_bad_files": [vars(b) for b in self.skipped]} if self.skipped else {}),
        }


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


def contract_for(config: TrainConfig) -> PreprocessContract:
    """The preprocessing contract a configuration trains with."""
    if config.pretrained:
        return PreprocessContract(
            image_size=config.image_size,
            mean=IMAGENET_GREY_MEAN,
            std=IMAGENET_GREY_STD,
            normalize=config.normalize,
            crop=config.crop,
        )
    return PreprocessContract(
        image_size=config.image_size, normalize=config.normalize, crop=config.crop
    )


def plan(config: TrainConfig, ctx: DistContext | None = None) -> Plan:
    """Resolve device, precision, loader, contract and the train/validation records (under
    torchrun, the device is this process's own GPU)."""
    device = device_for(ctx or DistContext(), resolve_device(config.device))
    data, skipped = plan_data(config)
    return Plan(
        config=config,
        device=device,
        precision=resolve_precision(config.precision, device),
        loader=resolve_loader(config.loader, device, data.train),
        contract=contract_for(config),
        data=data,
        pos_weight=pos_weight_value(config.pos_weight, data.train),
        skipped=tuple(skipped),
    )


def plan_data(
    config: TrainConfig, records: Sequence[Record] | None = None
) -> tuple[TrainData, list[BadFile]]:
    """The run's training and validation records (its fold's, for an ensemble member) after
    the file check, and the files ``--skip-bad`` left out (``records``: already discovered)."""
    records = discover(config.data) if records is None else records
    fold = None if config.fold is None else (config.fold, config.folds)
    data = select_train_val(records, config.val_fraction, config.seed, fold)
    return checked(data, config.skip_bad)  # every file decodes before epoch 1


def load_config(run_dir: Path) -> TrainConfig:
    """The configuration a run folder was started with."""
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise NotFoundError(f"nothing to resume in {run_dir}: {CONFIG_FILE} is missing")
    return TrainConfig.from_dict(read_json(path)["train"])


def _ema(model: nn.Module, decay: float) -> nn.Module | None:
    """An exponential moving average of ``model``'s weights and buffers (0: none)."""
    if not decay:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def _loss(pos_weight: float | None, device: torch.device) -> nn.Module:
    weight = None if pos_weight is None else torch.tensor(pos_weight, device=device)
    return nn.BCEWithLogitsLoss(pos_weight=weight)


def _epoch_records(records: Sequence[Record], seed: int, ctx: DistContext) -> list[Record]:
    """The training records in this epoch's order, the same on every rank.

    DALI's reader shuffles the file list once with a fixed internal seed and then only within
    its buffer, so without this every seed and epoch would see nearly the same order. Under
    DDP the last ``len % world_size`` are dropped (DistributedSampler's idea), so that the
    contiguous shards each rank loads are equal in size: every rank takes the same number of
    steps and none waits forever in an all-reduce. The dropped records change every epoch."""
    order = np.random.default_rng(seed).permutation(len(records))
    usable = len(records) - len(records) % ctx.world_size
    return [records[i] for i in order[:usable]]


def _loader_seed(epoch_seed: int, ctx: DistContext) -> int:
    """The training loader's seed (augmentation, in-shard shuffle): per epoch and per rank, or
    every rank would draw the same augmentations for its shard."""
    return epoch_seed * ctx.world_size + ctx.rank


def _gather_predictions(
    ctx: DistContext, index: np.ndarray, logits: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Every rank's (record index, logit) of its validation shard, joined on every rank, so
    the metrics are computed on the whole validation set, identically everywhere."""
    parts = gather_objects(ctx, (index, logits))
    return np.concatenate([i for i, _ in parts]), np.concatenate([v for _, v in parts])


def _wrap(model: nn.Module, config: TrainConfig, ctx: DistContext, device: torch.device):
    """DistributedDataParallel under torchrun (optionally with SyncBatchNorm), else the model."""
    if not ctx.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if config.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None
    )


def run_train(
    config: TrainConfig, *, resume: bool = False, log: Callable[[str], None] = print
) -> TrainResult:
    """The train stage: one model (:func:`train_model`), or with ``config.folds`` > 1 an
    ensemble of fold members (:func:`run_train_folds`), new or resumed, then (rank 0 only)
    ``config.export`` into RUN/export/ (:func:`export_after_training`; a failed export is a
    warning, not a failed run). Ctrl-C becomes :class:`Interrupted` saying what was kept and
    how to continue."""
    try:
        if config.folds > 1:
            from cxr_fast.training.folds import run_train_folds

            result = run_train_folds(config, resume=resume, log=log)
        else:
            result = train_model(config, resume=resume, log=log)
    except KeyboardInterrupt:
        raise Interrupted(kept_after_interrupt(config)) from None
    if result.epochs_trained != 0 and result.best_epoch is None:
        raise UserInputError("training finished without a validation result")
    if config.folds == 1 and result.is_main and wants_shift_threshold(config, result.run_dir):
        result = replace(result, threshold=rethreshold_under_shift(result.run_dir, config, log))
    if result.is_main:
        _fit_gate(result.run_dir, config, log)
        from cxr_fast.training.export_step import export_after_training

        export_after_training(result.run_dir, config, log)
    return result


def _fit_gate(run_dir: Path, config: TrainConfig, log: Callable[[str], None]) -> None:
    """The input gate fitted on the run's training films and stored in its model.pt, before
    any export is made from it (a resumed run that has one keeps it)."""
    from cxr_fast.gate import GATE_KEY
    from cxr_fast.gate.store import fit_and_store

    if not config.gate or GATE_KEY in read_run(run_dir)[1].meta:
        return
    log(fit_and_store(run_dir, Path(config.data), workers=config.workers).summary())


def train_model(
    config: TrainConfig,
    *,
    resume: bool = False,
    log: Callable[[str], None] = print,
    ctx: DistContext | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train (or resume) one model into ``config.out`` and return how it ended. Under torchrun
    (``ctx`` from the environment by default) every rank trains its shard with DDP and only
    rank 0 writes the run folder, logs and shows progress. ``on_epoch(epoch, val_auc)`` is
    called after every finished epoch (a tuner's pruner raises from it to stop the run)."""
    started = time.perf_counter()
    ctx = ctx or context_from_env()
    p = plan(config, ctx)
    writer = RunWriter(Path(config.out), enabled=ctx.is_main)
    _start(p, ctx, writer, resume)
    if not ctx.is_main:
        log = _silent
    torch.manual_seed(config.seed)
    np.random.seed(config.seed % 2**32)

    state = _training_objects(p, ctx)
    if resume:
        writer.resumed(config)
    progress = _start_progress(p, writer, resume, log, state)
    if resume and (progress.epoch >= config.epochs or progress.bad_epochs >= config.patience):
        # A finished run: no loader is built, no epoch is trained, nothing is rewritten.
        return _finish(ctx, writer, progress, config, started, progress.epoch)
    if p.skipped:
        log(f"--skip-bad: training without {skipped_line(p.skipped)}")
    log(
        f"training {config.arch} on {len(p.data.train)} images, validating on "
        f"{len(p.data.val)} ({p.data.val_source}); {p.device}, {p.precision.name}, "
        f"{p.loader} loader" + (f"; DDP over {ctx.world_size} processes" if ctx.enabled else "")
    )
    epochs = _Epochs(p, ctx, writer, state, log)
    epochs_before = progress.epoch
    stopped_early = progress.bad_epochs >= config.patience
    for epoch in range(progress.epoch + 1, config.epochs + 1):
        if stopped_early:
            break
        auc = epochs.run(epoch, progress)
        if on_epoch is not None:
            on_epoch(epoch, auc)
        stopped_early = progress.bad_epochs >= config.patience
        if stopped_early and epoch < config.epochs:
            log(f"early stop: no better validation ROC-AUC in {config.patience} epochs")
    return _finish(ctx, writer, progress, config, started, epochs_before)


def _start(p: Plan, ctx: DistContext, writer: RunWriter, resume: bool) -> None:
    """Checks before anything is written, then join the process group."""
    config = p.config
    if resume and (writer.run_dir / CONFIG_FILE).is_file():
        check_same_data(writer.run_dir, fingerprint(config.data, p.data))
    if config.sync_bn and ctx.enabled and p.device.type != "cuda":
        # Checked before anything is written: PyTorch's SyncBatchNorm does not run on CPUs.
        raise UserInputError("--sync-bn needs CUDA: PyTorch's SyncBatchNorm runs on GPUs only")
    start(ctx, p.device)
    writer.refuse_existing(resume)
    barrier(ctx)  # every rank has checked the folder before rank 0 writes into it


class _Epochs:
    """One epoch after another: train, validate, write (rank 0) and log."""

    def __init__(self, p: Plan, ctx: DistContext, writer: RunWriter, state: tuple, log) -> None:
        model, ema = state[0], state[4]
        self.p, self.ctx, self.writer, self.state, self.log = p, ctx, writer, state, log
        self.loss_fn = _loss(p.pos_weight, p.device)
        config = p.config
        self.reg = Regularisers(
            label_smoothing=config.label_smoothing,
            mixup=config.mixup,
            erase=config.erase,
            normal_blur=config.normal_blur,
            ema=ema,
        )
        # The model that is validated and saved: the weight average when there is one.
        self.evaluated = ema.module if ema is not None else model
        self.net = _wrap(model, config, ctx, p.device)
        # Each rank validates a contiguous shard; the logits are gathered before any metric.
        self.val_loader = _loader(p, ctx, p.data.val)
        self.val_labels = np.array([r.label for r in p.data.val])

    def run(self, epoch: int, progress: Progress) -> float:
        """Train and validate ``epoch``; returns its validation ROC-AUC."""
        p, ctx, config = self.p, self.ctx, self.p.config
        _, optimizer, scheduler, scaler, _ = self.state
        epoch_seed = config.seed * 100_003 + epoch
        # One seed per epoch: a resumed run sees the same shuffles as an unbroken one.
        train_loader = _loader(
            p, ctx, _epoch_records(p.data.train, epoch_seed, ctx), _loader_seed(epoch_seed, ctx)
        )
        parts = (self.loss_fn, optimizer, scheduler, scaler, self.reg)
        stats = _train_one_epoch(self.net, train_loader, epoch, p, ctx, parts)
        average_buffers(ctx, self.evaluated)  # one model on every rank: the one rank 0 saves
        val = _validate(self.evaluated, self.val_loader, self.val_labels, self.loss_fn, p, ctx)
        improved = progress.record(epoch, val.roc_auc)
        if improved:
            self.writer.best(self.evaluated, p, epoch, val)
        rate = float(sum(gather_objects(ctx, stats.images_per_second)))
        entry = {
            "epoch": epoch,
            "train_loss": stats.loss,
            "val_loss": val.loss,
            "val_roc_auc": val.roc_auc,
            "lr": scheduler.get_last_lr()[0],
            "train_images_per_s": rate,
            "processes": ctx.world_size,
            "seconds": stats.seconds,
            "best": improved,
        }
        self.writer.epoch(entry, progress, self.state)
        barrier(ctx)  # a resumed job restarts every rank from the same saved epoch
        self.log(
            f"epoch {epoch}/{config.epochs}: loss {stats.loss:.4f}, val loss {val.loss:.4f}, "
            f"val ROC-AUC {val.roc_auc:.4f}{' (best)' if improved else ''}, "
            f"{rate:.0f} images/s, {stats.seconds:.0f} s"
        )
        return val.roc_auc


def _finish(
    ctx: DistContext,
    writer: RunWriter,
    progress: Progress,
    config: TrainConfig,
    started: float,
    epochs_before: int,
) -> TrainResult:
    """Wait for every rank, end the process group and say how the run stands."""
    barrier(ctx)
    threshold = writer.threshold()
    stop(ctx)
    return TrainResult(
        run_dir=writer.run_dir,
        epochs_done=progress.epoch,
        best_epoch=progress.best_epoch,
        best_auc=progress.best_auc,
        threshold=threshold,
        # Stopped by the patience rule before the planned epochs (not by running out of them).
        stopped_early=progress.bad_epochs >= config.patience and progress.epoch < config.epochs,
        seconds=time.perf_counter() - started,
        epochs_trained=progress.epoch - epochs_before,
        epochs_planned=config.epochs,
        is_main=ctx.is_main,
    )


def _training_objects(p: Plan, ctx: DistContext):
    """Model (channels_last on the device), AdamW, warm-up + cosine schedule, GradScaler, EMA."""
    config = p.config
    model = build_model(config.arch, config.pretrained)
    model = model.to(device=p.device, memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    shard_size = len(p.data.train) // ctx.world_size
    steps_per_epoch = num_batches(shard_size, config.batch_size, train=True)
    scheduler = warmup_cosine(
        optimizer, round(config.warmup_epochs * steps_per_epoch), config.epochs * steps_per_epoch
    )
    return model, optimizer, scheduler, p.precision.scaler(), _ema(model, config.ema_decay)


def _loader(p: Plan, ctx: DistContext, records, train_seed: int | None = None):
    """This rank's shard of ``records``: the validation loader, or (with ``train_seed``) one
    epoch's shuffled and augmented training loader."""
    config = p.config
    spec = LoaderSpec(
        records,
        p.contract,
        config.batch_size,
        workers=config.workers,
        device=p.device,
        shard_id=ctx.rank,
        num_shards=ctx.world_size,
    )
    if train_seed is None:  # validation scores films as `score` does
        return make_scoring_loader(spec, p.loader)
    return make_train_loader(spec, p.loader, augment=config.augment, seed=train_seed)


@dataclass(frozen=True)
class ValResult:
    """One validation pass over the whole validation set (gathered from every rank)."""

    labels: np.ndarray
    probs: np.ndarray
    loss: float
    roc_auc: float


def _validate(
    evaluated: nn.Module,
    val_loader,
    val_labels: np.ndarray,
    loss_fn: nn.Module,
    p: Plan,
    ctx: DistContext,
) -> ValResult:
    # The bare model: validation needs no gradient sync, and shards may differ by one batch.
    # The scoring loader draws from the global generator, which dropout and mixup read in the
    # next epoch: validating must not move the training's random stream.
    with torch.random.fork_rng(devices=[]):
        predicted = module_model(evaluated, p.contract, p.precision).predict(val_loader)
    index, logits = _gather_predictions(ctx, *predicted[:2])
    labels = val_labels[index]
    target = torch.from_numpy(labels).float().to(p.device)
    loss = float(loss_fn(torch.from_numpy(logits).to(p.device), target))
    return ValResult(labels, sigmoid(logits), loss, roc_auc(labels, sigmoid(logits)))


def _train_one_epoch(net, train_loader, epoch: int, p: Plan, ctx: DistContext, parts):
    """One epoch of ``train_epoch`` behind rank 0's progress bar."""
    loss_fn, optimizer, scheduler, scaler, reg = parts
    config = p.config
    with tqdm(
        total=len(train_loader) * config.batch_size,
        desc=f"epoch {epoch}",
        unit="img",
        leave=False,
        disable=None if ctx.is_main else True,
        dynamic_ncols=True,
    ) as bar:
        steps = itertools.count(1)

        def on_step(n: int, loss: torch.Tensor) -> None:
            bar.update(n)
            if next(steps) % LOSS_SHOWN_EVERY == 0:  # reading the loss waits for the GPU
                bar.set_postfix(loss=f"{float(loss):.4f}")

        return train_epoch(
            net,
            train_loader,
            loss_fn,
            optimizer,
            scheduler,
            scaler,
            p.precision,
            config.clip_grad,
            on_step,
            reg,
        )


def _start_progress(p: Plan, writer: RunWriter, resume: bool, log, state) -> Progress:
    """The progress to continue from: a resumed run's saved state, or a fresh run folder."""
    run_dir = writer.run_dir
    if resume and (run_dir / LAST_FILE).exists():
        progress = load_state(run_dir, *state)
        writer.trim_log(progress.epoch)
        log(
            f"resuming {run_dir} after epoch {progress.epoch} "
            f"(best so far: epoch {progress.best_epoch}, ROC-AUC {progress.best_auc:.4f})"
        )
        return progress
    if resume:
        # Killed before its first epoch was saved: nothing to keep but the configuration.
        writer.trim_log(0)
        log(f"resuming {run_dir}: no finished epoch was saved, starting from epoch 1")
        return Progress()
    writer.start(p)
    return Progress()


def _silent(_message: str) -> None:
    """The log of ranks other than 0."""


def resume_config(
    run_dir: Path,
    epochs: int | None = None,
    export: str | None = None,
    data: str | Path | None = None,
) -> TrainConfig:
    """The saved configuration of ``run_dir``, in ``run_dir`` itself (a run folder that was
    copied or moved continues where it is now, not where it was started), optionally with a
    new epoch count or export choice. ``data`` (a ``--data`` given with ``--resume``) must be
    the run's own data folder, else ResumeMismatchError."""
    config = replace(load_config(run_dir), out=str(run_dir))
    check_same_folder(Path(run_dir), config.data, data)
    config = replace(config, epochs=epochs) if epochs is not None else config
    return replace(config, export=export) if export is not None else config
