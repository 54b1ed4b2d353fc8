"""One optimizer step and one epoch, under a precision policy."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from cxr_fast.data.batch import Batch
from cxr_fast.precision import Precision


def train_step(
    model: nn.Module,
    batch: Batch,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    precision: Precision,
    clip_grad: float = 0.0,
) -> float:
    """Forward and loss inside autocast, scaled backward, unscale before clipping, one step."""
    optimizer.zero_grad(set_to_none=True)
    with precision.autocast():
        logits = model(batch.x).reshape(-1)
        loss = loss_fn(logits, batch.y.to(logits.dtype))
    scaler.scale(loss).backward()
    if clip_grad > 0:
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
    scaler.step(optimizer)
    scaler.update()
    return float(loss.detach())


@dataclass(frozen=True)
class EpochStats:
    """Mean training loss, images seen and wall seconds of one epoch."""

    loss: float
    images: int
    seconds: float

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")


def train_epoch(
    model: nn.Module,
    batches: Iterable[Batch],
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    precision: Precision,
    clip_grad: float = 0.0,
    on_step: Callable[[int, float], None] | None = None,
) -> EpochStats:
    """Train over ``batches`` once; ``on_step(images, loss)`` after every step."""
    model.train()
    total_loss = 0.0
    images = 0
    start = time.perf_counter()
    for batch in batches:
        loss = train_step(model, batch, loss_fn, optimizer, scaler, precision, clip_grad)
        scheduler.step()
        n = int(batch.x.shape[0])
        total_loss += loss * n
        images += n
        if on_step is not None:
            on_step(n, loss)
    seconds = time.perf_counter() - start
    return EpochStats(loss=total_loss / max(1, images), images=images, seconds=seconds)
