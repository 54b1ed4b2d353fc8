"""Acquisition augmentation (blur, gamma, noise) does what it says in both training loaders."""

import pytest
import torch

from cxr_fast.contract import PreprocessContract
from cxr_fast.data.augment import Augment
from cxr_fast.data.dali_pipeline import DaliLoader, dali_available
from cxr_fast.data.discover import discover
from cxr_fast.data.torch_loader import TorchLoader

CONTRACT = PreprocessContract(image_size=96)
STILL = Augment(rotate_deg=0, scale=0, translate=0, brightness=0, contrast=0)
BACKENDS = [
    "torch",
    pytest.param("dali", marks=pytest.mark.skipif(not dali_available(), reason="no DALI")),
]


def _epoch(backend: str, records, augment: Augment | None) -> torch.Tensor:
    """One epoch's images, ordered by record index."""
    if backend == "dali":
        loader = DaliLoader(records, CONTRACT, batch_size=8, train=True, augment=augment, seed=1)
    else:
        loader = TorchLoader(
            records, CONTRACT, batch_size=8, train=True, augment=augment, num_workers=0, seed=1
        )
    batches = list(loader)
    x, index = torch.cat([b.x for b in batches]), torch.cat([b.index for b in batches])
    return x[index.argsort()]


def _edges(x: torch.Tensor) -> torch.Tensor:
    """Mean absolute horizontal + vertical gradient per image: how sharp it is."""
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().mean(dim=(1, 2, 3))
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().mean(dim=(1, 2, 3))
    return dx + dy


@pytest.fixture(scope="module")
def records(kaggle_dir):
    return discover(kaggle_dir)[:16]


@pytest.mark.parametrize("backend", BACKENDS)
def test_blur_softens_every_film(backend, records):
    plain = _epoch(backend, records, STILL)
    blurred = _epoch(backend, records, Augment(**{**STILL.to_dict(), "blur": 4.0}))
    ratio = _edges(blurred) / _edges(plain)
    assert float(ratio.max()) <= 1.0 + 1e-6  # sharper never
    assert float(ratio.mean()) < 0.9  # and clearly softer on average


@pytest.mark.parametrize("backend", BACKENDS)
def test_gamma_is_a_monotone_remapping(backend, records):
    plain = _epoch(backend, records, STILL)
    remapped = _epoch(backend, records, Augment(**{**STILL.to_dict(), "gamma": 0.5}))
    changed = (remapped - plain).abs().mean(dim=(1, 2, 3))
    assert int((changed > 0.005).sum()) >= len(records) // 2
    for a, b in zip(plain.flatten(1), remapped.flatten(1), strict=True):
        order = a.argsort()
        steps = b[order].diff()
        assert float(steps.min()) >= -1.5 / 255  # monotone up to uint8 rounding


@pytest.mark.parametrize("backend", BACKENDS)
def test_noise_adds_grain_without_moving_the_mean(backend, records):
    plain = _epoch(backend, records, STILL)
    noisy = _epoch(backend, records, Augment(**{**STILL.to_dict(), "noise": 8.0}))
    diff = noisy - plain
    assert float(diff.std()) > 1.0 / 255
    assert abs(float(diff.mean())) < 1.0 / 255


def test_old_configs_load_without_acquisition_fields():
    old = {k: v for k, v in Augment().to_dict().items() if k not in {"blur", "gamma", "noise"}}
    assert Augment(**old) == Augment()
    assert Augment().scaled(2.0).blur == 0.0
