"""Simulated acquisition shift: the same films as another scanner or site might render them.

The ``shift`` threshold policy (:func:`cxr_fast.metrics.threshold_choice`) needs every
validation (or out-of-fold) film scored as it is *and* under each of :data:`SHIFTS`, so that it
can keep the threshold whose worst Youden J over them is best. A softer detector or resampling
chain, another exposure curve and detector grain move every film's score, healthy ones included
(docs/results.md measures how): a threshold in the middle of the clean plateau can sit on the
edge of a shifted one.

Each shift is applied to the resized grey image in [0, 1], before the contract's own steps
after resizing (equalisation, scaling, per-image standardisation), so it means the same under
every contract.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import torch
from torch import nn

from cxr_fast.contract import PreprocessContract
from cxr_fast.data.batch import normalise_uint8
from cxr_fast.data.discover import Record
from cxr_fast.data.equalize import equalize_uint8
from cxr_fast.data.loader_spec import LoaderSpec
from cxr_fast.data.loaders import make_scoring_loader
from cxr_fast.precision import Precision
from cxr_fast.training.loop import gaussian_blur

# Blur sigmas are in pixels of a 224 px film (as --site-aug's), so they mean the same softness
# at every image size. The ranges: --site-aug 1's (blur 1 px, gamma 0.8-1.25, grain 4 grey
# levels) plus a blur of twice its strength, because blur is the one shift that moved the
# out-of-fold optimum by itself (0.35 -> 0.69 on the default run, docs/results.md).
SHIFTS: dict[str, Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = {
    "blur 1 px": lambda x, g: gaussian_blur(x, x.shape[-1] / 224 * 1.0),
    "blur 2 px": lambda x, g: gaussian_blur(x, x.shape[-1] / 224 * 2.0),
    "gamma 0.8": lambda x, g: x.clamp(0, 1) ** 0.8,
    "gamma 1.25": lambda x, g: x.clamp(0, 1) ** 1.25,
    "grain 4 levels": lambda x, g: x + torch.randn(x.shape, generator=g).to(x.device) * 4 / 255,
}
CLEAN = "clean"


def grey_contract(contract: PreprocessContract) -> PreprocessContract:
    """``contract`` stopped after resizing: grey levels / 255, no standardisation."""
    return replace(contract, mean=None, std=None, normalize="none")


def contract_input(grey: torch.Tensor, contract: PreprocessContract) -> torch.Tensor:
    """[N,1,S,S] grey levels in [0, 1] (rounded to uint8, as a film is) -> the model's input
    under ``contract``'s steps after resizing."""
    pixels = grey.clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1)  # NHWC
    if contract.normalize == "equalize":
        planes = pixels.cpu().numpy()
        pixels = torch.from_numpy(np.stack([equalize_uint8(p) for p in planes])).to(grey.device)
    return normalise_uint8(pixels, contract)


def shifted_probabilities(
    model: nn.Module,
    records: Sequence[Record],
    contract: PreprocessContract,
    precision: Precision,
    *,
    device: str = "cpu",
    workers: int = 2,
    seed: int = 0,
    shifts: Sequence[str] = tuple(SHIFTS),
) -> dict[str, np.ndarray]:
    """P(PNEUMONIA) of every record as it is (:data:`CLEAN`) and under each of ``shifts``,
    each an array in ``records``' order (NaN for a file that does not decode)."""
    out = {name: np.full(len(records), np.nan) for name in (CLEAN, *shifts)}
    generator = torch.Generator().manual_seed(seed)  # the grain
    loader = make_scoring_loader(LoaderSpec(records, grey_contract(contract), 64, workers, device))
    model.eval()
    with torch.inference_mode():
        for batch in loader:
            if batch.x is None:  # no film of the batch decoded: their probabilities stay NaN
                continue
            at = batch.index.cpu().numpy()
            for name in out:
                grey = batch.x if name == CLEAN else SHIFTS[name](batch.x, generator)
                x = contract_input(grey, contract).contiguous(memory_format=torch.channels_last)
                with precision.autocast(model):
                    logits = model(x)
                out[name][at] = torch.sigmoid(logits.float().reshape(-1)).cpu().numpy()
    return out


def shifted_out_of_fold(
    members: Sequence[nn.Module],
    records: Sequence[Record],
    folds: np.ndarray,
    contract: PreprocessContract,
    precision: Precision,
    *,
    device: str = "cpu",
    workers: int = 2,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """:func:`shifted_probabilities` of an ensemble's out-of-fold films: record ``i`` scored by
    ``members[folds[i]]`` (0-based), the one that never saw its patient, with the grain of
    member ``k`` seeded ``seed + k``; arrays in ``records``' order."""
    out = {name: np.full(len(records), np.nan) for name in (CLEAN, *SHIFTS)}
    for k, model in enumerate(members):
        rows = np.flatnonzero(folds == k)
        probs = shifted_probabilities(
            model,
            [records[i] for i in rows],
            contract,
            precision,
            device=device,
            workers=workers,
            seed=seed + k,
        )
        for name, values in probs.items():
            out[name][rows] = values
    return out
