"""``run_train``: data -> model -> epochs of training and validation -> a run folder."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from cxr_fast import __version__
from cxr_fast.contract import PreprocessContract
from cxr_fast.data.batch import num_batches
from cxr_fast.data.discover import Record, discover
from cxr_fast.data.loaders import make_loader, resolve_loader
from cxr_fast.data.preflight import BadFile, describe
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
from cxr_fast.errors import NotFoundError, UserInputError
from cxr_fast.inference import predict_logits, sigmoid
from cxr_fast.metrics import binary_metrics, roc_auc, threshold_choice
from cxr_fast.models import build_model
from cxr_fast.models.pretrained import IMAGENET_GREY_MEAN, IMAGENET_GREY_STD
from cxr_fast.precision import Precision, resolve_precision
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
from cxr_fast.training.data import TrainData, fingerprint, pos_weight_value, select_train_val
from cxr_fast.training.loop import Regularisers, train_epoch
from cxr_fast.training.preflight import checked
from cxr_fast.training.resume_check import check_same_data
from cxr_fast.training.schedule import warmup_cosine
from cxr_fast.training.state import Progress, load_state, save_state
from cxr_fast.versions import versions

# Steps between reads of the training loss for the progress bar (each read is a GPU sync).
LOSS_SHOWN_EVERY = 20
TRAINING_PACKAGES = ("torch", "torchvision", "nvidia-dali-cuda120", "numpy", "scikit-learn")


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


def contract_for(config: TrainConfig) -> PreprocessContract:
    """The preprocessing contract a configuration trains with."""
    if config.pretrained:
        return PreprocessContract(
            image_size=config.image_size,
            mean=IMAGENET_GREY_MEAN,
            std=IMAGENET_GREY_STD,
            normalize=config.normalize,
        )
    return PreprocessContract(image_size=config.image_size, normalize=config.normalize)


def plan(config: TrainConfig, ctx: DistContext | None = None) -> Plan:
    """Resolve device, precision, loader, contract and the train/validation records (under
    torchrun, the device is this process's own GPU)."""
    device = device_for(ctx or DistContext(), resolve_device(config.device))
    records = discover(config.data)
    fold = None if config.fold is None else (config.fold, config.folds)
    data = select_train_val(records, config.val_fraction, config.seed, fold)
    data, skipped = checked(data, config.skip_bad)  # every file decodes before epoch 1
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


def load_config(run_dir: Path) -> TrainConfig:
    """The configuration a run folder was started with."""
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise NotFoundError(f"nothing to resume in {run_dir}: {CONFIG_FILE} is missing")
    return TrainConfig.from_dict(read_json(path)["train"])


def _write_config(p: Plan, run_dir: Path) -> None:
    atomic_write_json(
        {
            **p.describe(),
            "arch": p.config.arch,
            "seed": p.config.seed,
            "versions": versions(TRAINING_PACKAGES),
            "data": fingerprint(p.config.data, p.data),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
        run_dir / CONFIG_FILE,
    )


def _ema(model: nn.Module, decay: float) -> nn.Module | None:
    """An exponential moving average of ``model``'s weights and buffers (0: none)."""
    if not decay:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def _loss(pos_weight: float | None, device: torch.device) -> nn.Module:
    weight = None if pos_weight is None else torch.tensor(pos_weight, device=device)
    return nn.BCEWithLogitsLoss(pos_weight=weight)


def _trim_log(path: Path, epochs_done: int) -> None:
    """Drop log lines of epochs after the saved state (a kill between the two writes)."""
    if not path.is_file():
        return
    kept = [
        line
        for line in path.read_text().splitlines()
        if line.strip() and json.loads(line)["epoch"] <= epochs_done
    ]
    path.write_text("".join(line + "\n" for line in kept))


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
    config: TrainConfig,
    *,
    resume: bool = False,
    log: Callable[[str], None] = print,
    ctx: DistContext | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train (or resume) a run into ``config.out`` and return how it ended. Under torchrun
    (``ctx`` from the environment by default) every rank trains its shard with DDP and only
    rank 0 writes the run folder, logs and shows progress. ``on_epoch(epoch, val_auc)`` is
    called after every finished epoch (a tuner's pruner raises from it to stop the run)."""
    started = time.perf_counter()
    ctx = ctx or context_from_env()
    run_dir = Path(config.out)
    p = plan(config, ctx)
    if resume and (run_dir / CONFIG_FILE).is_file():
        check_same_data(run_dir, fingerprint(config.data, p.data))
    if config.sync_bn and ctx.enabled and p.device.type != "cuda":
        # Checked before anything is written: PyTorch's SyncBatchNorm does not run on CPUs.
        raise UserInputError("--sync-bn needs CUDA: PyTorch's SyncBatchNorm runs on GPUs only")
    start(ctx, p.device)
    if not resume and ((run_dir / MODEL_FILE).exists() or (run_dir / LAST_FILE).exists()):
        raise UserInputError(
            f"{run_dir} already holds a run: pass --resume, or choose another --out"
        )
    barrier(ctx)  # every rank has checked the folder before rank 0 writes into it
    if not ctx.is_main:
        log = _silent
    torch.manual_seed(config.seed)
    np.random.seed(config.seed % 2**32)

    model, optimizer, scheduler, scaler, ema = _training_objects(p, ctx)
    loss_fn = _loss(p.pos_weight, p.device)
    reg = Regularisers(label_smoothing=config.label_smoothing, mixup=config.mixup, ema=ema)
    # The model that is validated and saved: the weight average when there is one.
    evaluated = ema.module if ema is not None else model

    if resume and ctx.is_main and (run_dir / CONFIG_FILE).is_file():
        _persist_resumed_config(run_dir, config)
    progress = _start_progress(
        p, run_dir, resume, ctx, log, (model, optimizer, scheduler, scaler, ema)
    )
    if resume and (progress.epoch >= config.epochs or progress.bad_epochs >= config.patience):
        # A finished run: no loader is built, no epoch is trained, nothing is rewritten.
        return _finish(ctx, run_dir, progress, config, started, progress.epoch)
    net = _wrap(model, config, ctx, p.device)

    if p.skipped:
        log(f"--skip-bad: training without {describe(p.skipped, len(p.skipped))}")
    log(
        f"training {config.arch} on {len(p.data.train)} images, validating on "
        f"{len(p.data.val)} ({p.data.val_source}); {p.device}, {p.precision.name}, "
        f"{p.loader} loader" + (f"; DDP over {ctx.world_size} processes" if ctx.enabled else "")
    )
    # Each rank validates a contiguous shard; the logits are gathered before any metric.
    val_loader = _loader(p, ctx, p.data.val)
    val_labels = np.array([r.label for r in p.data.val])
    stopped_early = progress.bad_epochs >= config.patience
    epochs_before = progress.epoch
    for epoch in range(progress.epoch + 1, config.epochs + 1):
        if stopped_early:
            break
        epoch_seed = config.seed * 100_003 + epoch
        # One seed per epoch: a resumed run sees the same shuffles as an unbroken one.
        train_loader = _loader(
            p, ctx, _epoch_records(p.data.train, epoch_seed, ctx), _loader_seed(epoch_seed, ctx)
        )
        stats = _train_one_epoch(
            net, train_loader, epoch, p, ctx, (loss_fn, optimizer, scheduler, scaler, reg)
        )
        average_buffers(ctx, evaluated)  # one model on every rank: the one rank 0 saves
        val = _validate(evaluated, val_loader, val_labels, loss_fn, p, ctx)
        auc = val.roc_auc
        improved = progress.record(epoch, auc)
        if improved and ctx.is_main:
            _save_best(run_dir, evaluated, p, epoch, val)
        rates = gather_objects(ctx, stats.images_per_second)
        entry = {
            "epoch": epoch,
            "train_loss": stats.loss,
            "val_loss": val.loss,
            "val_roc_auc": auc,
            "lr": scheduler.get_last_lr()[0],
            "train_images_per_s": float(sum(rates)),
            "processes": ctx.world_size,
            "seconds": stats.seconds,
            "best": improved,
        }
        if ctx.is_main:
            with (run_dir / LOG_FILE).open("a") as handle:
                handle.write(json.dumps(entry) + "\n")
            save_state(run_dir, progress, model, optimizer, scheduler, scaler, ema)
        barrier(ctx)  # a resumed job restarts every rank from the same saved epoch
        log(
            f"epoch {epoch}/{config.epochs}: loss {stats.loss:.4f}, val loss {val.loss:.4f}, "
            f"val ROC-AUC {auc:.4f}{' (best)' if improved else ''}, "
            f"{sum(rates):.0f} images/s, {stats.seconds:.0f} s"
        )
        if on_epoch is not None:
            on_epoch(epoch, auc)
        stopped_early = progress.bad_epochs >= config.patience
        if stopped_early and epoch < config.epochs:
            log(f"early stop: no better validation ROC-AUC in {config.patience} epochs")

    return _finish(ctx, run_dir, progress, config, started, epochs_before)


def _finish(
    ctx: DistContext,
    run_dir: Path,
    progress: Progress,
    config: TrainConfig,
    started: float,
    epochs_before: int,
) -> TrainResult:
    """Wait for every rank, end the process group and say how the run stands."""
    barrier(ctx)
    threshold = _saved_threshold(run_dir)
    stop(ctx)
    return TrainResult(
        run_dir=run_dir,
        epochs_done=progress.epoch,
        best_epoch=progress.best_epoch,
        best_auc=progress.best_auc,
        threshold=threshold,
        # Stopped by the patience rule before the planned epochs (not by running out of them).
        stopped_early=progress.bad_epochs >= config.patience and progress.epoch < config.epochs,
        seconds=time.perf_counter() - started,
        epochs_trained=progress.epoch - epochs_before,
        epochs_planned=config.epochs,
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
    train = train_seed is not None
    return make_loader(
        records,
        p.contract,
        batch_size=config.batch_size,
        loader=p.loader,
        device=str(p.device),
        train=train,
        augment=config.augment if train else None,
        workers=config.workers,
        seed=train_seed or 0,
        shard_id=ctx.rank,
        num_shards=ctx.world_size,
    )


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
    index, logits = _gather_predictions(
        ctx, *predict_logits(evaluated, val_loader, p.precision)[:2]
    )
    labels = val_labels[index]
    target = torch.from_numpy(labels).float().to(p.device)
    loss = float(loss_fn(torch.from_numpy(logits).to(p.device), target))
    return ValResult(labels, sigmoid(logits), loss, roc_auc(labels, sigmoid(logits)))


def _save_best(run_dir: Path, evaluated: nn.Module, p: Plan, epoch: int, val: ValResult) -> None:
    """model.pt and metrics.json of a new best epoch, with the threshold chosen on it."""
    config = p.config
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
        "contract": p.contract.to_dict(),
        "threshold": choice["threshold"],
        "threshold_rule": choice["policy"],
        "threshold_choice": choice,
        "epoch": epoch,
        "val_roc_auc": val.roc_auc,
        "cxr_fast": __version__,
    }
    save_model(run_dir, evaluated, meta)
    atomic_write_json({"split": "validation", "epoch": epoch, **metrics}, run_dir / METRICS_FILE)


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


def _start_progress(p: Plan, run_dir: Path, resume: bool, ctx: DistContext, log, state) -> Progress:
    """The progress to continue from: a resumed run's saved state, or a fresh run folder."""
    model, optimizer, scheduler, scaler, ema = state
    if resume and (run_dir / LAST_FILE).exists():
        progress = load_state(run_dir, model, optimizer, scheduler, scaler, ema)
        if ctx.is_main:
            _trim_log(run_dir / LOG_FILE, progress.epoch)
        log(
            f"resuming {run_dir} after epoch {progress.epoch} "
            f"(best so far: epoch {progress.best_epoch}, ROC-AUC {progress.best_auc:.4f})"
        )
        return progress
    if resume:
        # Killed before its first epoch was saved: nothing to keep but the configuration.
        if ctx.is_main:
            _trim_log(run_dir / LOG_FILE, 0)
        log(f"resuming {run_dir}: no finished epoch was saved, starting from epoch 1")
        return Progress()
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_config(p, run_dir)
    return Progress()


def _saved_threshold(run_dir: Path) -> float | None:
    if (run_dir / MODEL_FILE).exists():
        return read_json(run_dir / METRICS_FILE)["threshold"]
    return None


def _persist_resumed_config(run_dir: Path, config: TrainConfig) -> None:
    """Write the resumed configuration (this folder, the epoch count asked for now) into
    config.json, so that a later ``--resume`` finishes at the new count, in the same folder."""
    saved = read_json(run_dir / CONFIG_FILE)
    train = saved.get("train", {})
    if train.get("epochs") == config.epochs and train.get("out") == config.out:
        return
    saved["train"] = {**train, "epochs": config.epochs, "out": config.out}
    atomic_write_json(saved, run_dir / CONFIG_FILE)


def _silent(_message: str) -> None:
    """The log of ranks other than 0."""


def resume_config(run_dir: Path, epochs: int | None = None) -> TrainConfig:
    """The saved configuration of ``run_dir``, in ``run_dir`` itself (a run folder that was
    copied or moved continues where it is now, not where it was started), optionally with a
    new epoch count."""
    config = replace(load_config(run_dir), out=str(run_dir))
    return replace(config, epochs=epochs) if epochs is not None else config
