"""The input- and target-side regularisers of a training step (cxr_fast/training/loop.py)."""

import pytest
import torch

from cxr_fast.data.batch import Batch
from cxr_fast.errors import UserInputError
from cxr_fast.training.config import TrainConfig
from cxr_fast.training.loop import (
    ERASE_AREA,
    Regularisers,
    _inputs_and_targets,
    random_erase,
)


def _batch(n: int = 64, size: int = 48) -> torch.Tensor:
    # Strictly positive pixels, so a 0 can only come from erasing.
    return torch.rand(n, 1, size, size) * 0.9 + 0.1


def test_erase_zero_probability_changes_nothing():
    x = _batch()
    assert torch.equal(random_erase(x, 0.0, torch.Generator().manual_seed(0)), x)


def test_erase_blanks_one_rectangle_of_the_stated_area_per_image():
    x = _batch(size=64).contiguous(memory_format=torch.channels_last)
    before = x.clone()
    out = random_erase(x, 1.0, torch.Generator().manual_seed(1))
    assert torch.equal(x, before), "the input batch must not be modified"
    areas = []
    for image in out[:, 0]:
        zero = image == 0
        rows = zero.any(1).nonzero().flatten()
        cols = zero.any(0).nonzero().flatten()
        assert rows.numel() and cols.numel(), "every image is erased at probability 1"
        # One solid rectangle: its bounding box is entirely zero.
        box = zero[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        assert box.all() and int(zero.sum()) == box.numel()
        areas.append(box.numel() / image.numel())
    low, high = ERASE_AREA
    assert all(low * 0.8 <= a <= high * 1.2 for a in areas)  # rounding to whole pixels
    assert max(areas) - min(areas) > 0.05, "sizes are drawn, not fixed"
    # Everything outside the rectangle is untouched.
    assert torch.equal(out[out != 0], x[out != 0])


def test_erase_probability_is_per_image():
    out = random_erase(_batch(n=400, size=32), 0.5, torch.Generator().manual_seed(2))
    erased = (out == 0).flatten(1).any(1).float().mean().item()
    assert 0.4 < erased < 0.6


def test_erase_is_reproducible_with_a_generator():
    x = _batch()
    a = random_erase(x, 0.5, torch.Generator().manual_seed(3))
    b = random_erase(x, 0.5, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_training_step_inputs_are_erased_but_targets_are_not():
    x = _batch(n=16)
    batch = Batch(x=x, y=torch.ones(16, dtype=torch.long), index=torch.arange(16))
    inputs, targets = _inputs_and_targets(
        batch, Regularisers(erase=1.0), torch.Generator().manual_seed(0)
    )
    assert (inputs == 0).flatten(1).any(1).all()
    assert torch.equal(targets, torch.ones(16))


@pytest.mark.parametrize("erase", [-0.1, 1.5])
def test_config_refuses_an_erase_probability_outside_0_1(erase):
    with pytest.raises(UserInputError, match="erase"):
        TrainConfig(data="d", out="o", erase=erase)
