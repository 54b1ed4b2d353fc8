"""``train_model``: one model, epoch by epoch, into a run folder (new or resumed; under
torchrun every rank trains its shard with DDP and rank 0 writes)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from cxr_fast.data.bad_file_scan import skipped_line
from cxr_fast.data.batch import num_batches
from cxr_fast.data.discover import Record
from cxr_fast.data.loader_spec import LoaderSpec
from cxr_fast.data.loaders import make_scoring_loader, make_train_loader
from cxr_fast.data.torch_loader import TorchLoader
from cxr_fast.distributed import (
    DistContext,
    average_buffers,
    barrier,
    context_from_env,
    gather_objects,
    start,
    stop,
    workers_per_rank,
)
from cxr_fast.errors import UserInputError
from cxr_fast.inference import sigmoid
from cxr_fast.messages import Log, silent, to_stdout
from cxr_fast.metrics import roc_auc
from cxr_fast.models import build_model
from cxr_fast.run_folder import CONFIG_FILE, LAST_FILE
from cxr_fast.scoring.model import module_model
from cxr_fast.training.config import TrainConfig
from cxr_fast.training.ema import ExponentialAverage
from cxr_fast.training.loop import EpochStats, Regularisers, train_epoch
from cxr_fast.training.plan import Plan, plan
from cxr_fast.training.results import TrainResult, ValResult
from cxr_fast.training.resume_check import check_same_data
from cxr_fast.training.rng import seed_other_rank
from cxr_fast.training.schedule import warmup_cosine
from cxr_fast.training.state import TrainingState
from cxr_fast.training.train_data import fingerprint
from cxr_fast.training.writer import RunWriter

# Steps between reads of the training loss for the progress bar (each read is a GPU sync).
LOSS_SHOWN_EVERY = 20


def train_model(
    config: TrainConfig,
    *,
    resume: bool = False,
    log: Log = to_stdout,
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
        log = silent  # only rank 0 speaks
    torch.manual_seed(config.seed)
    np.random.seed(config.seed % 2**32)

    state = _new_state(p, ctx)
    if resume:
        writer.resumed(config)
    _resume_or_start(state, p, writer, resume, log)
    epochs_before = state.progress.epoch
    if resume and (epochs_before >= config.epochs or _out_of_patience(state, config)):
        # A finished run: no loader is built, no epoch is trained, nothing is rewritten.
        return _finish(ctx, writer, state, config, started, epochs_before)
    if p.skipped:
        log(f"--skip-bad: training without {skipped_line(p.skipped)}")
    log(
        f"training {config.arch} on {len(p.data.train)} images, validating on "
        f"{len(p.data.val)} ({p.data.val_source}); {p.device}, {p.precision.name}, "
        f"{p.loader} loader" + (f"; DDP over {ctx.world_size} processes" if ctx.enabled else "")
    )
    _train_epochs(p, ctx, writer, state, log, on_epoch)
    return _finish(ctx, writer, state, config, started, epochs_before)


def _train_epochs(
    p: Plan,
    ctx: DistContext,
    writer: RunWriter,
    state: TrainingState,
    log: Log,
    on_epoch: Callable[[int, float], None] | None,
) -> None:
    """The epoch loop: train, validate, keep the best model, write the epoch's log line and
    last.pt; until the planned epochs are done or ``patience`` epochs bring no better ROC-AUC."""
    config, progress = p.config, state.progress
    loss_fn = _loss(p.pos_weight, p.device)
    reg = Regularisers(
        label_smoothing=config.label_smoothing,
        mixup=config.mixup,
        erase=config.erase,
        ema=state.ema,
    )
    net = _wrap(state.model, config, ctx, p.device)
    # Each rank validates a contiguous shard; the logits are gathered before any metric.
    val_loader = _loader(p, ctx, p.data.val)
    val_labels = np.array([r.label for r in p.data.val])
    train_loader = None
    for epoch in range(progress.epoch + 1, config.epochs + 1):
        if _out_of_patience(state, config):
            break
        # One seed per epoch: a resumed run sees the same shuffles as an unbroken one.
        epoch_seed = config.seed * 100_003 + epoch
        records = _epoch_records(p.data.train, epoch_seed, ctx)
        seed_other_rank(ctx.rank, _loader_seed(epoch_seed, ctx))  # mixup, erasing per rank
        train_loader = _epoch_loader(p, ctx, records, _loader_seed(epoch_seed, ctx), train_loader)
        stats = _train_one_epoch(net, train_loader, epoch, p, ctx, state, loss_fn, reg)
        average_buffers(ctx, state.evaluated)  # one model on every rank: the one rank 0 saves
        val = _validate(state.evaluated, val_loader, val_labels, loss_fn, p, ctx)
        improved = progress.record(epoch, val.roc_auc)
        if improved:
            writer.best(state.evaluated, p, epoch, val)
        rate = float(sum(gather_objects(ctx, stats.images_per_second)))
        writer.epoch(_log_entry(epoch, stats, val, state, rate, ctx, improved), state)
        barrier(ctx)  # a resumed job restarts every rank from the same saved epoch
        log(
            f"epoch {epoch}/{config.epochs}: loss {stats.loss:.4f}, val loss {val.loss:.4f}, "
            f"val ROC-AUC {val.roc_auc:.4f}{' (best)' if improved else ''}, "
            f"{rate:.0f} images/s, {stats.seconds:.0f} s"
        )
        if on_epoch is not None:
            on_epoch(epoch, val.roc_auc)
        if _out_of_patience(state, config) and epoch < config.epochs:
            log(f"early stop: no better validation ROC-AUC in {config.patience} epochs")


def _out_of_patience(state: TrainingState, config: TrainConfig) -> bool:
    """Whether ``patience`` epochs in a row brought no better validation ROC-AUC."""
    return state.progress.bad_epochs >= config.patience


def _log_entry(
    epoch: int,
    stats: EpochStats,
    val: ValResult,
    state: TrainingState,
    rate: float,
    ctx: DistContext,
    improved: bool,
) -> dict:
    """One train_log.jsonl line."""
    return {
        "epoch": epoch,
        "train_loss": stats.loss,
        "val_loss": val.loss,
        "val_roc_auc": val.roc_auc,
        "lr": state.scheduler.get_last_lr()[0],
        "train_images_per_s": rate,
        "processes": ctx.world_size,
        "seconds": stats.seconds,
        "best": improved,
    }


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


def _new_state(p: Plan, ctx: DistContext) -> TrainingState:
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
    scaler = p.precision.scaler()
    ema = _ema(model, config.ema_decay)
    return TrainingState(model, optimizer, scheduler, scaler, ema, precision=p.precision.name)


def _resume_or_start(
    state: TrainingState, p: Plan, writer: RunWriter, resume: bool, log: Log
) -> None:
    """Continue from a resumed run's saved state, or start a fresh run folder."""
    run_dir = writer.run_dir
    if resume and (run_dir / LAST_FILE).exists():
        saved = state.restore(run_dir)
        if saved not in (None, p.precision.name):
            log(f"resuming in {p.precision.name}: the run was trained in {saved} until now")
        progress = state.progress
        writer.trim_log(progress.epoch)
        log(
            f"resuming {run_dir} after epoch {progress.epoch} "
            f"(best so far: epoch {progress.best_epoch}, ROC-AUC {progress.best_auc:.4f})"
        )
    elif resume:
        # Killed before its first epoch was saved: nothing to keep but the configuration.
        writer.trim_log(0)
        log(f"resuming {run_dir}: no finished epoch was saved, starting from epoch 1")
    else:
        writer.start(p)


def _finish(
    ctx: DistContext,
    writer: RunWriter,
    state: TrainingState,
    config: TrainConfig,
    started: float,
    epochs_before: int,
) -> TrainResult:
    """Wait for every rank, end the process group and say how the run stands."""
    barrier(ctx)
    threshold = writer.threshold()
    stop(ctx)
    progress = state.progress
    return TrainResult(
        run_dir=writer.run_dir,
        epochs_done=progress.epoch,
        best_epoch=progress.best_epoch,
        best_auc=progress.best_auc,
        threshold=threshold,
        # Stopped by the patience rule before the planned epochs (not by running out of them).
        stopped_early=_out_of_patience(state, config) and progress.epoch < config.epochs,
        seconds=time.perf_counter() - started,
        epochs_trained=progress.epoch - epochs_before,
        epochs_planned=config.epochs,
        is_main=ctx.is_main,
    )


def _ema(model: nn.Module, decay: float) -> nn.Module | None:
    """An exponential moving average of ``model``'s weights and buffers (0: none)."""
    return ExponentialAverage(model, decay) if decay else None


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


def _loader(p: Plan, ctx: DistContext, records, train_seed: int | None = None):
    """This rank's shard of ``records``: the validation loader, or (with ``train_seed``) one
    epoch's shuffled and augmented training loader."""
    config = p.config
    spec = LoaderSpec(
        records,
        p.contract,
        config.batch_size,
        workers=workers_per_rank(ctx, config.workers),
        device=p.device,
        shard_id=ctx.rank,
        num_shards=ctx.world_size,
    )
    if train_seed is None:  # validation scores films as `score` does, every epoch
        return make_scoring_loader(spec, p.loader, keep_workers=True)
    return make_train_loader(spec, p.loader, augment=config.augment, seed=train_seed)


def _epoch_loader(p: Plan, ctx: DistContext, records, seed: int, previous):
    """This epoch's training loader. The PIL loader of the epoch before takes the new order
    and seed (:meth:`TorchLoader.set_epoch`): its worker processes live on. A DALI pipeline
    is built anew: its reader takes the file list, and its random operators their seed, only
    when it is built (docs/gpu.md, review defects)."""
    if isinstance(previous, TorchLoader):
        previous.set_epoch(records, seed)
        return previous
    return _loader(p, ctx, records, seed)


def _validate(
    evaluated: nn.Module,
    val_loader,
    val_labels: np.ndarray,
    loss_fn: nn.Module,
    p: Plan,
    ctx: DistContext,
) -> ValResult:
    # The bare model: validation needs no gradient sync, and shards may differ by one batch.
    predicted = module_model(evaluated, p.contract, p.precision).predict(val_loader)
    index, logits = _gather_predictions(ctx, *predicted[:2])
    labels = val_labels[index]
    target = torch.from_numpy(labels).float().to(p.device)
    loss = float(loss_fn(torch.from_numpy(logits).to(p.device), target))
    return ValResult(labels, sigmoid(logits), loss, roc_auc(labels, sigmoid(logits)))


def _train_one_epoch(
    net: nn.Module,
    train_loader,
    epoch: int,
    p: Plan,
    ctx: DistContext,
    state: TrainingState,
    loss_fn: nn.Module,
    reg: Regularisers,
) -> EpochStats:
    """One epoch of ``train_epoch`` behind rank 0's progress bar."""
    with tqdm(
        total=len(train_loader) * p.config.batch_size,
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
            state.optimizer,
            state.scheduler,
            state.scaler,
            p.precision,
            p.config.clip_grad,
            on_step,
            reg,
        )
