"""Which records train and which validate, and the data fingerprint kept in config.json."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from cxr_fast.data.discover import Record, paths_sha256
from cxr_fast.data.split import patient_folds, patient_split
from cxr_fast.errors import UserInputError
from cxr_fast.labels import CLASS_NAMES

# Kaggle's own val/ holds 16 images: too few to pick a checkpoint or a threshold with.
MIN_VAL_FOLDER_IMAGES = 100


@dataclass(frozen=True)
class TrainData:
    """Training and validation records, and where validation came from."""

    train: list[Record]
    val: list[Record]
    val_source: str  # "val folder" or "patient split of train"


def training_records(records: Sequence[Record]) -> list[Record]:
    """The labelled records a run may learn from: the ``train`` split, or every labelled record
    when the folder has no splits (``val/`` and ``test/`` never)."""
    labeled = [r for r in records if r.label is not None]
    if not labeled:
        raise UserInputError("no labelled images: training needs NORMAL/ and PNEUMONIA/ folders")
    has_splits = any(r.split is not None for r in labeled)
    return [r for r in labeled if r.split == "train"] if has_splits else labeled


def select_train_val(
    records: Sequence[Record],
    val_fraction: float,
    seed: int,
    fold: tuple[int, int] | None = None,
) -> TrainData:
    """Training records are the ``train`` split (or all records when the folder has no splits);
    validation is fold ``k`` of a patient-level K-fold of train when ``fold=(k, K)``, else the
    dataset's ``val/`` when it holds enough images, else a patient-level split of train.
    ``test/`` is never used."""
    train = training_records(records)
    val_folder = [r for r in records if r.label is not None and r.split == "val"]
    if fold is not None:
        k, n_folds = fold
        assigned = patient_folds(train, n_folds, seed)
        data = TrainData(
            train=[r for r, f in zip(train, assigned, strict=True) if f != k],
            val=[r for r, f in zip(train, assigned, strict=True) if f == k],
            val_source=f"fold {k + 1} of {n_folds} (patient-level)",
        )
    elif len(val_folder) >= MIN_VAL_FOLDER_IMAGES:
        data = TrainData(train=train, val=val_folder, val_source="val folder")
    else:
        train, val = patient_split(train, val_fraction=val_fraction, seed=seed)
        data = TrainData(train=train, val=val, val_source="patient split of train")
    for name, part in (("training", data.train), ("validation", data.val)):
        missing = {0, 1} - {r.label for r in part}
        if missing:
            absent = ", ".join(CLASS_NAMES[i] for i in sorted(missing))
            raise UserInputError(f"the {name} set has no {absent} images; add more data")
    return data


def _counts(records: Sequence[Record]) -> dict[str, int]:
    counts = Counter(CLASS_NAMES[r.label] for r in records)
    return {name: counts.get(name, 0) for name in CLASS_NAMES}


def fingerprint(root: str, data: TrainData) -> dict:
    """Counts, a hash of the sorted relative paths, and each side's patients."""
    digest = paths_sha256(root, (*data.train, *data.val))
    return {
        "root": os.path.abspath(root),
        "paths_sha256": digest,
        "val_source": data.val_source,
        "counts": {"train": _counts(data.train), "val": _counts(data.val)},
        "patients": {
            "train": sorted({r.patient for r in data.train}),
            "val": sorted({r.patient for r in data.val}),
        },
    }


def pos_weight_value(setting: str, train: Sequence[Record]) -> float | None:
    """BCE ``pos_weight``: ``auto`` balances the classes (negatives / positives)."""
    if setting == "none":
        return None
    if setting != "auto":
        return float(setting)
    counts = Counter(r.label for r in train)
    return counts[0] / counts[1]
