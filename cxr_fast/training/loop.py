"""One optimizer step and one epoch, under a precision policy and the run's regularisers."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from cxr_fast.data.batch import Batch
from cxr_fast.precision import Precision


@dataclass(frozen=True)
class Regularisers:
    """Input- and target-side regularisers of a training step (all off by default).

    ``label_smoothing`` pulls the 0/1 targets towards 0.5 by that fraction; ``mixup`` > 0 blends
    each batch with a shuffled copy of itself (images and targets) with a Beta(a, a) weight;
    ``erase`` is the probability that an image gets one random rectangle set to 0 (random
    erasing, Zhong et al., AAAI 2020: 2-25% of the area, aspect ratio 0.3-3.3); ``ema`` holds
    a :class:`torch.optim.swa_utils.AveragedModel` updated after every step.
    """

    label_smoothing: float = 0.0
    mixup: float = 0.0
    erase: float = 0.0
    ema: nn.Module | None = None


def _inputs_and_targets(
    batch: Batch, reg: Regularisers, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    x = batch.x
    y = batch.y.float()
    if reg.label_smoothing:
        y = y * (1 - reg.label_smoothing) + 0.5 * reg.label_smoothing
    if reg.mixup > 0:
        concentration = torch.tensor([reg.mixup, reg.mixup])
        lam = float(torch.distributions.Beta(*concentration).sample())
        perm = torch.randperm(x.shape[0], generator=generator).to(x.device)
        x = x * lam + x[perm] * (1 - lam)
        y = y * lam + y[perm] * (1 - lam)
    if reg.erase > 0:
        x = random_erase(x, reg.erase, generator)
    return x, y


# Random erasing's usual ranges (torchvision's RandomErasing defaults, with a smaller largest area:
# a quarter of a film still leaves most of both lungs).
ERASE_AREA = (0.02, 0.25)
ERASE_LOG_RATIO = (math.log(0.3), math.log(1 / 0.3))


def random_erase(
    x: torch.Tensor, probability: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A copy of the [N,C,H,W] batch ``x`` in which each image, with ``probability``, has one
    random rectangle set to 0: black under the default contract, the contract's mean grey
    under one that standardises (``--pretrained``)."""
    out = x.clone()
    n, _, height, width = x.shape

    def draw(count: int = 1) -> torch.Tensor:
        return torch.rand(count, generator=generator)

    for i in range(n):
        if float(draw()) >= probability:
            continue
        for _ in range(10):  # as torchvision: retry when the rectangle does not fit
            area = (
                height * width * (ERASE_AREA[0] + float(draw()) * (ERASE_AREA[1] - ERASE_AREA[0]))
            )
            ratio = math.exp(
                ERASE_LOG_RATIO[0] + float(draw()) * (ERASE_LOG_RATIO[1] - ERASE_LOG_RATIO[0])
            )
            h, w = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
            if 0 < h < height and 0 < w < width:
                top = int(draw() * (height - h + 1))
                left = int(draw() * (width - w + 1))
                out[i, :, top : top + h, left : left + w] = 0
                break
    return out


def train_step(
    model: nn.Module,
    batch: Batch,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    precision: Precision,
    clip_grad: float = 0.0,
    reg: Regularisers | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Forward and loss inside autocast, scaled backward, unscale before clipping, one step,
    then the EMA update. Returns the detached loss on the device: reading it (``float``)
    waits for the GPU, so callers read it only when they show it."""
    reg = reg or Regularisers()
    optimizer.zero_grad(set_to_none=True)
    x, y = _inputs_and_targets(batch, reg, generator)
    with precision.autocast():
        logits = model(x).reshape(-1)
        # The loss in fp32 against fp32 targets: autocast computes BCE-with-logits in fp32
        # anyway, and bf16 would round soft targets (0.95 of label smoothing, mixup's blends).
        loss = loss_fn(logits.float(), y)
    scaler.scale(loss).backward()
    if clip_grad > 0:
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
    scaler.step(optimizer)
    scaler.update()
    if reg.ema is not None:
        reg.ema.update_parameters(getattr(model, "module", model))  # the bare model under DDP
    return loss.detach()


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
    on_step: Callable[[int, torch.Tensor], None] | None = None,
    reg: Regularisers | None = None,
    generator: torch.Generator | None = None,
) -> EpochStats:
    """Train over ``batches`` once; ``on_step(images, loss)`` after every step, ``loss`` a
    device tensor (the loss is summed on the device and read once, at the end)."""
    model.train()
    total_loss: torch.Tensor | float = 0.0  # a device tensor after the first step
    images = 0
    start = time.perf_counter()
    for batch in batches:
        loss = train_step(
            model, batch, loss_fn, optimizer, scaler, precision, clip_grad, reg, generator
        )
        scheduler.step()
        n = int(batch.x.shape[0])
        total_loss = total_loss + loss * n
        images += n
        if on_step is not None:
            on_step(n, loss)
    seconds = time.perf_counter() - start
    return EpochStats(loss=float(total_loss) / max(1, images), images=images, seconds=seconds)
