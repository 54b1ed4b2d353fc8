"""What a training configuration resolves to on this host and this data: the :class:`Plan`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from cxr_fast.contract import PreprocessContract
from cxr_fast.data.discover import Record, discover
from cxr_fast.data.loaders import resolve_loader
from cxr_fast.data.preflight import BadFile
from cxr_fast.device import resolve_device
from cxr_fast.distributed import DistContext, device_for
from cxr_fast.models.pretrained import IMAGENET_GREY_MEAN, IMAGENET_GREY_STD
from cxr_fast.precision import Precision, resolve_precision
from cxr_fast.training.config import TrainConfig
from cxr_fast.training.data import TrainData, pos_weight_value, select_train_val
from cxr_fast.training.preflight import checked


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
