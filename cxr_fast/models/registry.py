"""Architectures by name: one input channel, one logit."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torchvision
from torch import nn

from cxr_fast.choices import ARCHITECTURES
from cxr_fast.models.cnn import PneumoniaCNN
from cxr_fast.models.pretrained import (
    grey_first_conv,
    load_state_dict,
    resolve_weights_file,
)


@dataclass(frozen=True)
class _Torchvision:
    build: Callable[..., nn.Module]
    weights_url: str
    first_conv: str  # dotted path of the RGB stem convolution
    head: str  # dotted path of the final Linear layer
    cam_layer: str  # the last convolutional block: Grad-CAM's default target


_TORCHVISION = {
    "resnet18": _Torchvision(
        torchvision.models.resnet18,
        torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url,
        "conv1",
        "fc",
        "layer4",
    ),
    "resnet50": _Torchvision(
        torchvision.models.resnet50,
        torchvision.models.ResNet50_Weights.IMAGENET1K_V2.url,
        "conv1",
        "fc",
        "layer4",
    ),
    "efficientnet_b0": _Torchvision(
        torchvision.models.efficientnet_b0,
        torchvision.models.EfficientNet_B0_Weights.IMAGENET1K_V1.url,
        "features.0.0",
        "classifier.1",
        "features",
    ),
    "densenet121": _Torchvision(
        torchvision.models.densenet121,
        torchvision.models.DenseNet121_Weights.IMAGENET1K_V1.url,
        "features.conv0",
        "classifier",
        "features",
    ),
}
if set(ARCHITECTURES) != {"cnn", *_TORCHVISION}:  # the names users type, and what builds them
    raise ImportError("cxr_fast.choices.ARCHITECTURES and the registry disagree")
# The cnn's last block is features.6 (conv, BN, ReLU, pool); its ReLU, before the pooling,
# gives 14x14 maps at 224 px (twice resnet's layer4) and 4x4 rather than 2x2 at 64 px.
_CNN_CAM_LAYER = "features.6.2"


def default_cam_layer(arch: str) -> str:
    """Grad-CAM's default target for ``arch``: its last convolutional block."""
    if arch == "cnn":
        return _CNN_CAM_LAYER
    if arch not in _TORCHVISION:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    return _TORCHVISION[arch].cam_layer


def _replace(model: nn.Module, dotted: str, module: nn.Module) -> None:
    parent_path, _, name = dotted.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, name, module)


def build_model(arch: str, pretrained: str | None = None) -> nn.Module:
    """A fresh model of ``arch``; ``pretrained`` (a file, or ``imagenet`` for the torch hub
    cache) starts a torchvision architecture from ImageNet weights."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    if arch == "cnn":
        if pretrained:
            raise ValueError("the cnn architecture has no ImageNet weights; drop --pretrained")
        return PneumoniaCNN()
    spec = _TORCHVISION[arch]
    model = spec.build()
    if pretrained:
        path = resolve_weights_file(pretrained, spec.weights_url)
        try:
            model.load_state_dict(load_state_dict(path))
        except RuntimeError as exc:
            first_line = str(exc).splitlines()[0]
            raise ValueError(f"{path} does not hold {arch} ImageNet weights: {first_line}") from exc
    stem = grey_first_conv(model.get_submodule(spec.first_conv))
    if not pretrained:
        stem.reset_parameters()  # summed random kernels would triple the init variance
    _replace(model, spec.first_conv, stem)
    head = model.get_submodule(spec.head)
    _replace(model, spec.head, nn.Linear(head.in_features, 1))
    return model
