"""The aspect stretch does what it says in both training loaders; the recipe's ranges; configs
saved with the removed acquisition ranges."""

import math
from dataclasses import replace

import pytest
import torch

from cxr_fast.contract import PreprocessContract
from cxr_fast.data.augment import Augment, recipe_augment
from cxr_fast.data.dali_pipeline import DaliLoader, dali_available
from cxr_fast.data.discover import discover
from cxr_fast.data.loader_spec import LoaderSpec, TrainMode
from cxr_fast.data.torch_loader import TorchLoader
from cxr_fast.errors import UserInputError

CONTRACT = PreprocessContract(image_size=96)
STILL = Augment(rotate_deg=0, scale=0, translate=0, brightness=0, contrast=0)
BACKENDS = [
    "torch",
    pytest.param("dali", marks=pytest.mark.skipif(not dali_available(), reason="no DALI")),
]


def _epoch(backend: str, records, augment: Augment | None) -> torch.Tensor:
    """One epoch's images, ordered by record index."""
    if backend == "dali":
        loader = DaliLoader(LoaderSpec(records, CONTRACT, 8), TrainMode(augment=augment, seed=1))
    else:
        loader = TorchLoader(
            LoaderSpec(records, CONTRACT, 8, workers=0), TrainMode(augment=augment, seed=1)
        )
    batches = list(loader)
    x, index = torch.cat([b.x for b in batches]), torch.cat([b.index for b in batches])
    return x[index.argsort()]


def test_configs_saved_before_issue_27_load_unless_they_used_acquisition_ranges():
    old = {**Augment().to_dict(), "blur": 0.0, "gamma": 0.0, "noise": 0.0}
    assert Augment.from_dict(old) == Augment()
    with pytest.raises(UserInputError, match="removed acquisition augmentation \\(blur, gamma"):
        Augment.from_dict({**old, "blur": 1.0, "gamma": 0.25})


def test_recipe_augment_scales_the_ranges_and_sets_the_zoom_alone():
    plain = recipe_augment(2.0, stretch=0.4)
    assert plain == Augment(stretch=0.4).scaled(2.0)
    zoomed = recipe_augment(2.0, stretch=0.4, zoom=0.3, hflip=True)
    assert zoomed.scale == 0.3 and zoomed.hflip
    assert replace(zoomed, scale=plain.scale, hflip=False) == plain


def _blob_films(root, n: int = 8):
    """A Kaggle layout of grey Gaussian blobs (sigma 1/8 of the side) on black: their moments
    show an aspect change exactly, with nothing cropped at the border."""
    import numpy as np
    from PIL import Image

    side = 96
    yy, xx = np.mgrid[:side, :side] - (side - 1) / 2
    blob = (220 * np.exp(-(xx**2 + yy**2) / (2 * (side / 8) ** 2))).astype(np.uint8)
    for label in ("NORMAL", "PNEUMONIA"):
        folder = root / "train" / label
        folder.mkdir(parents=True)
        for i in range(n // 2):
            Image.fromarray(blob).save(folder / f"person{i}_{label}.png")
    return discover(root)


def _log_aspect(x: torch.Tensor) -> torch.Tensor:
    """log(horizontal spread / vertical spread) of each image's grey mass about its centre."""
    side = x.shape[-1]
    grid = torch.arange(side, dtype=torch.float64) - (side - 1) / 2
    w = x.double().squeeze(1)
    mass = w.sum(dim=(1, 2))
    var_x = (w * grid[None, None, :] ** 2).sum(dim=(1, 2)) / mass
    var_y = (w * grid[None, :, None] ** 2).sum(dim=(1, 2)) / mass
    return 0.5 * torch.log(var_x / var_y)


@pytest.mark.parametrize("backend", BACKENDS)
def test_stretch_changes_the_aspect_ratio_within_its_range(backend, tmp_path):
    records = _blob_films(tmp_path, 16)
    plain = _log_aspect(_epoch(backend, records, STILL))
    assert plain.abs().max() < 0.01  # round blobs
    stretched = _log_aspect(_epoch(backend, records, replace(STILL, stretch=0.3)))
    # width x sqrt(r), height / sqrt(r): the spread ratio is r, log r within +-log(1.3).
    assert stretched.abs().max() <= math.log(1.3) + 0.03
    assert stretched.std() > 0.05  # drawn per film
    assert (stretched > 0.05).any() and (stretched < -0.05).any()  # wider and taller both
