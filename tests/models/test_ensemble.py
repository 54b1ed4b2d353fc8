"""The run-level modules: ensemble mean, Platt scaling and test-time augmentation."""

import pytest
import torch
from torch import nn

from cxr_fast.models.ensemble import Ensemble, TemperatureScaled, TestTimeAugment


class _Probe(nn.Module):
    """A 'model' whose logit is the mean pixel of its input: views are visible in it."""

    def forward(self, x):
        return x.mean(dim=(1, 2, 3)).unsqueeze(1)


def test_ensemble_and_temperature_are_exact():
    a, b = _Probe(), nn.Sequential(_Probe(), nn.Identity())
    x = torch.rand(3, 1, 16, 16)
    torch.testing.assert_close(Ensemble([a, b])(x), a(x))
    torch.testing.assert_close(TemperatureScaled(a, 2.0)(x), a(x) / 2)
    torch.testing.assert_close(TemperatureScaled(a, 2.0, -0.5)(x), a(x) / 2 - 0.5)
    with pytest.raises(ValueError):
        TemperatureScaled(a, 0.0)


def test_tta_averages_identity_zoom_in_and_zoom_out():
    x = torch.zeros(2, 1, 20, 20)
    x[:, :, 5:15, 5:15] = 1.0  # a bright centre on black
    x = x.contiguous(memory_format=torch.channels_last)
    views = TestTimeAugment.views(x)
    assert len(views) == 3 and all(v.shape == x.shape for v in views)
    assert all(v.is_contiguous(memory_format=torch.channels_last) for v in views)
    identity, zoom_in, zoom_out = (float(v.mean()) for v in views)
    assert identity == pytest.approx(0.25)
    assert zoom_in > identity > zoom_out  # the centre fills more, then less, of the frame
    assert float(views[2][:, :, 0, :].max()) == 0.0  # border filled with the darkest value
    tta = TestTimeAugment(_Probe())
    expected = torch.stack([_Probe()(v) for v in views]).mean(0)
    torch.testing.assert_close(tta(x), expected)
