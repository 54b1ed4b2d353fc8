"""Deterministic patient-level splits (train/validation, and K folds), stratified by class."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np

from cxr_fast.data.discover import Record
from cxr_fast.errors import UserInputError


def _patient_label(records: Sequence[Record]) -> int | None:
    # A patient's stratum is their most common label; ties go to the higher (pneumonia) class
    # so a patient with any doubt counts with the rarer, clinically important side.
    counts = Counter(r.label for r in records)
    return max(counts, key=lambda label: (counts[label], -1 if label is None else label))


def _patient_strata(records: Sequence[Record]) -> dict[int | None, list[str]]:
    """Each class's patients (sorted), a patient counted under their most common label."""
    by_patient: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        by_patient[record.patient].append(record)
    strata: dict[int | None, list[str]] = defaultdict(list)
    for patient in sorted(by_patient):
        strata[_patient_label(by_patient[patient])].append(patient)
    return strata


def _label_order(label: int | None) -> int:
    return -1 if label is None else label


def patient_folds(records: Sequence[Record], k: int, seed: int = 0) -> list[int]:
    """The fold (0..k-1) of every record: patient-level K-fold, stratified by class.

    Within each class the patients are shuffled and dealt round-robin to the folds, so fold
    sizes differ by at most one patient per class and no patient is in two folds. The result
    depends only on the records, ``k`` and the seed, never on the input order.
    """
    if k < 2:
        raise UserInputError(f"folds must be at least 2, got {k}")
    strata = _patient_strata(records)
    rng = np.random.default_rng(seed)
    fold_of: dict[str, int] = {}
    offset = 0
    for label in sorted(strata, key=_label_order):
        patients = strata[label]
        for rank, i in enumerate(rng.permutation(len(patients))):
            # The offset carries on across classes so small classes do not all start at fold 0.
            fold_of[patients[i]] = (rank + offset) % k
        offset += len(patients)
    return [fold_of[r.patient] for r in records]


def patient_split(
    records: Sequence[Record], val_fraction: float = 0.15, seed: int = 0
) -> tuple[list[Record], list[Record]]:
    """Split records into (train, val) so that no patient is on both sides.

    Within each class, ``val_fraction`` of the patients (rounded, at least one when the class has
    two or more patients) go to validation. The result depends only on the records, the fraction
    and the seed, never on the input order.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise UserInputError(f"val_fraction must be in [0, 1), got {val_fraction}")
    strata = _patient_strata(records)
    rng = np.random.default_rng(seed)
    val_patients: set[str] = set()
    for label in sorted(strata, key=_label_order):
        patients = strata[label]
        n_val = round(len(patients) * val_fraction)
        if val_fraction > 0 and len(patients) >= 2:
            n_val = min(max(n_val, 1), len(patients) - 1)
        order = rng.permutation(len(patients))
        val_patients.update(patients[i] for i in order[:n_val])

    ordered = sorted(records, key=lambda r: r.path)
    train = [r for r in ordered if r.patient not in val_patients]
    val = [r for r in ordered if r.patient in val_patients]
    return train, val
