"""Fitting the content check on a run's training films, through the run's own contract."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from cxr_fast.contract import PreprocessContract
from cxr_fast.data.augment import Augment, augment_image, recipe_augment
from cxr_fast.data.batch import stack_gray
from cxr_fast.data.decode import ImageReadError, read_gray
from cxr_fast.data.discover import Record
from cxr_fast.gate.appearance import describe, unit_pixels
from cxr_fast.gate.content import ContentGate, fit_content_gate

_CHUNK = 256


def gate_augment() -> Augment:
    """The views the gate is fitted on besides the films themselves: the recipe's training
    augmentation, whatever a run was trained with, so every run's gate means the same."""
    from cxr_fast.training.config import AugmentOptions

    return recipe_augment(AugmentOptions.aug_strength, stretch=AugmentOptions.stretch)


def descriptors(x: torch.Tensor, contract: PreprocessContract) -> np.ndarray:
    """Appearance descriptors [N, D] of a model input batch ``x`` [N,1,S,S]."""
    return describe(unit_pixels(x, contract).numpy())


def fit_gate(
    records: Sequence[Record],
    contract: PreprocessContract,
    *,
    workers: int = 2,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> ContentGate:
    """Decode ``records`` through ``contract`` and fit the content check on them as they are and
    once under :func:`gate_augment`. Files that do not decode are left out (training refused
    them already or will)."""
    augment = gate_augment()
    generator = torch.Generator().manual_seed(seed)
    plain: list[np.ndarray] = []
    augmented: list[np.ndarray] = []
    groups: list[str] = []

    def read(record: Record) -> np.ndarray | None:
        try:
            return read_gray(record.path, contract)[0]
        except ImageReadError:
            return None

    with ThreadPoolExecutor(max(1, workers)) as pool:
        for start in range(0, len(records), _CHUNK):
            chunk = records[start : start + _CHUNK]
            pixels = list(pool.map(read, chunk))
            kept = [(r, p) for r, p in zip(chunk, pixels, strict=True) if p is not None]
            if kept:
                planes = [p for _, p in kept]
                views = [
                    augment_image(torch.from_numpy(p).unsqueeze(0), augment, generator)[0].numpy()
                    for p in planes
                ]
                plain.append(descriptors(stack_gray(planes, contract), contract))
                augmented.append(descriptors(stack_gray(views, contract), contract))
                groups.extend(r.patient for r, _ in kept)
            if progress is not None:
                progress(len(chunk))
    if not groups:
        return fit_content_gate([], [])
    return fit_content_gate([np.concatenate(plain), np.concatenate(augmented)], groups, seed=seed)
