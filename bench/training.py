"""Training-step throughput: cxr-fast's loaders + channels_last model vs the torchvision baseline.

Each pass builds its loader and trains one epoch over the same files (augmentation on, last
partial batch dropped); images/s counts images that went through a full optimizer step.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from bench.report import Row, measure
from cxr_fast.contract import PreprocessContract
from cxr_fast.data.augment import Augment
from cxr_fast.data.batch import drops_last
from cxr_fast.data.discover import discover
from cxr_fast.data.loader_spec import LoaderSpec
from cxr_fast.data.loaders import make_train_loader
from cxr_fast.models import build_model
from cxr_fast.precision import resolve_precision
from cxr_fast.training.loop import train_step

ARCHS = ("cnn", "resnet18")


def _baseline_loader(root: Path, size: int, batch_size: int, workers: int) -> DataLoader:
    """What a user writes: ImageFolder, torchvision augmentation, ToTensor, a DataLoader."""
    augment = Augment()
    transform = transforms.Compose(
        [
            transforms.Grayscale(num_output_channels=1),
            transforms.Resize((size, size)),
            transforms.RandomAffine(
                degrees=augment.rotate_deg,
                translate=(augment.translate, augment.translate),
                scale=(1 - augment.scale, 1 + augment.scale),
            ),
            transforms.ColorJitter(brightness=augment.brightness, contrast=augment.contrast),
            transforms.ToTensor(),
        ]
    )
    dataset = datasets.ImageFolder(str(root), transform=transform)
    # The same drop-last rule as cxr-fast's loaders, so both train on the same image count.
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        drop_last=drops_last(len(dataset), batch_size, train=True),
    )


def _baseline_epoch(model: nn.Module, loader: DataLoader) -> int:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = nn.BCEWithLogitsLoss()
    model.train()
    images = 0
    for x, y in loader:
        optimizer.zero_grad()
        loss = loss_fn(model(x).squeeze(1), y.float())
        loss.backward()
        optimizer.step()
        images += x.shape[0]
    return images


def _our_epoch(model: nn.Module, batches, precision) -> int:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = precision.scaler()
    loss_fn = nn.BCEWithLogitsLoss()
    model.train()
    images = 0
    for batch in batches:
        train_step(model, batch, loss_fn, optimizer, scaler, precision, clip_grad=1.0)
        images += batch.x.shape[0]
    return images


def training_rows(
    root: Path,
    *,
    image_size: int,
    batch_size: int,
    workers: int,
    warmup: int,
    repeats: int,
    loaders: tuple[str, ...],
) -> list[Row]:
    """Rows ``train-<arch>-<loader>`` and ``train-<arch>-baseline`` for each architecture."""
    records = discover(root)
    contract = PreprocessContract(image_size=image_size)
    precision = resolve_precision("auto", torch.device("cpu"))
    fp32 = resolve_precision("fp32", torch.device("cpu"))
    common = dict(warmup=warmup, repeats=repeats)
    rows = []
    for arch in ARCHS:
        model = build_model(arch).to(memory_format=torch.channels_last)
        for loader in loaders:
            make = functools.partial(
                make_train_loader,
                LoaderSpec(records, contract, batch_size, workers=workers),
                loader,
                augment=Augment(),
            )
            # The default precision (bf16 where the CPU has it) and fp32, same loader.
            for chosen in dict.fromkeys((precision, fp32)):
                run = functools.partial(
                    lambda m, mk, p: _our_epoch(m, mk(), p), model, make, chosen
                )
                detail = f"{chosen.name}, channels_last, batch {batch_size}"
                name = f"train-{arch}-{loader}" + ("-fp32" if chosen is not precision else "")
                rows.append(measure(name, detail, run, **common))
        baseline = functools.partial(
            lambda m: _baseline_epoch(m, _baseline_loader(root, image_size, batch_size, workers)),
            build_model(arch),
        )
        rows.append(
            measure(f"train-{arch}-baseline", f"fp32, NCHW, batch {batch_size}", baseline, **common)
        )
    return rows
