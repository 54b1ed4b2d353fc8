"""Grad-CAM maths on models whose answer is known, and the default layers."""

import pytest
import torch
from torch import nn

from cxr_fast.choices import CAM_METHODS
from cxr_fast.explain.gradcam import find_layer, grad_cam
from cxr_fast.models.registry import ARCHITECTURES, build_model, default_cam_layer


class _BrightIsPneumonia(nn.Module):
    """logit = mean brightness - 0.01: the evidence is exactly where the image is bright."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(1, 2, 1, bias=False)
        with torch.no_grad():
            self.features.weight[:] = torch.tensor([1.0, 0.5]).reshape(2, 1, 1, 1)

    def forward(self, x):
        return self.features(x).mean(dim=(1, 2, 3)).unsqueeze(1) - 0.01


@pytest.mark.parametrize("method", CAM_METHODS)
def test_map_peaks_where_the_evidence_is(method):
    x = torch.zeros(2, 1, 32, 32)
    x[0, 0, 4:12, 20:28] = 1.0  # a bright patch top right
    x[1, 0, 24:30, 2:8] = 1.0  # and one bottom left
    result = grad_cam(_BrightIsPneumonia().eval(), x, "features", method)
    assert result.heat.shape == (2, 32, 32)
    assert float(result.heat.min()) >= 0 and float(result.heat.max()) == pytest.approx(1.0)
    assert result.target.tolist() == [1.0, 1.0]
    for i, (rows, cols) in enumerate([(slice(4, 12), slice(20, 28)), (slice(24, 30), slice(2, 8))]):
        inside = result.heat[i, rows, cols].mean()
        outside = result.heat[i].sum() - result.heat[i, rows, cols].sum()
        outside /= result.heat[i].numel() - result.heat[i, rows, cols].numel()
        assert inside > 0.8 and outside < 0.2


def test_negative_logit_explains_normal_and_a_flat_map_is_zero():
    x = torch.zeros(1, 1, 16, 16)  # logit -0.01: NORMAL, and no bright evidence anywhere
    result = grad_cam(_BrightIsPneumonia().eval(), x, "features")
    assert result.target.tolist() == [-1.0]
    assert float(result.heat.abs().max()) == 0.0


def test_the_map_explains_the_verdict_at_the_runs_threshold():
    x = torch.zeros(1, 1, 16, 16)
    x[0, 0, 2:6, 2:6] = 1.0  # logit 0.0625 * 1.5 - 0.01 > 0: p about 0.52
    model = _BrightIsPneumonia().eval()
    assert grad_cam(model, x, "features").target.tolist() == [1.0]
    # At a threshold of 0.74 (a calibrated run's) the same film is NORMAL: explain NORMAL.
    assert grad_cam(model, x, "features", threshold=0.74).target.tolist() == [-1.0]


def test_unknown_layer_and_method_are_clear_errors():
    model = _BrightIsPneumonia()
    with pytest.raises(ValueError, match="last convolutions are: features"):
        find_layer(model, "layer9")
    with pytest.raises(ValueError, match="unknown method"):
        grad_cam(model, torch.zeros(1, 1, 8, 8), "features", "lime")


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_default_layer_is_at_the_last_convolution(arch):
    model = build_model(arch)
    layer = default_cam_layer(arch)
    find_layer(model, layer)
    names = [name for name, _ in model.named_modules()]
    last_conv = max(i for i, (_, m) in enumerate(model.named_modules()) if isinstance(m, nn.Conv2d))
    # Either the layer contains the last convolution, or it comes right after it.
    assert names[last_conv].startswith(layer + ".") or names.index(layer) > last_conv


def test_cnn_default_layer_gives_a_map_on_real_size_input():
    model = build_model("cnn").eval()
    result = grad_cam(model, torch.randn(1, 1, 224, 224), default_cam_layer("cnn"))
    assert result.heat.shape == (1, 224, 224)
