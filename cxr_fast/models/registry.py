"""Architectures by name: one input channel, one logit."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from cxr_fast.choices import ARCHITECTURES
from cxr_fast.errors import UserInputError
from cxr_fast.models.cnn import PneumoniaCNN
from cxr_fast.models.pretrained import (
    grey_first_conv,
    load_state_dict,
    resolve_weights_file,
)


@dataclass(frozen=True)
class _Torchvision:
    # Names, resolved in torchvision.models only when a model is built: importing torchvision
    # costs about a second, which commands on the cnn need not pay.
    builder: str  # e.g. "resnet18"
    weights: str  # the ImageNet weights enum member, e.g. "ResNet18_Weights.IMAGENET1K_V1"
    first_conv: str  # dotted path of the RGB stem convolution
    head: str  # dotted path of the final Linear layer
    cam_layer: str  # the last convolutional block: Grad-CAM's default target

    def build(self) -> nn.Module:
        import torchvision.models

        return getattr(torchvision.models, self.builder)()

    @property
    def weights_url(self) -> str:
        import torchvision.models

        enum, member = self.weights.split(".")
        return getattr(getattr(torchvision.models, enum), member).url


_TORCHVISION = {
    "resnet18": _Torchvision("resnet18", "ResNet18_Weights.IMAGENET1K_V1", "conv1", "fc", "layer4"),
    "resnet50": _Torchvision("resnet50", "ResNet50_Weights.IMAGENET1K_V2", "conv1", "fc", "layer4"),
    "efficientnet_b0": _Torchvision(
        "efficientnet_b0",
        "EfficientNet_B0_Weights.IMAGENET1K_V1",
        "features.0.0",
        "classifier.1",
        "features",
    ),
    "densenet121": _Torchvision(
        "densenet121",
        "DenseNet121_Weights.IMAGENET1K_V1",
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
        raise UserInputError(
            f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}"
        )
    return _TORCHVISION[arch].cam_layer


def _replace(model: nn.Module, dotted: str, module: nn.Module) -> None:
    parent_path, _, name = dotted.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, name, module)


def build_model(arch: str, pretrained: str | None = None) -> nn.Module:
    """A fresh model of ``arch``; ``pretrained`` (a file, or ``imagenet`` for the torch hub
    cache) starts a torchvision architecture from ImageNet weights."""
    if arch not in ARCHITECTURES:
        raise UserInputError(
            f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}"
        )
    if arch == "cnn":
        if pretrained:
            raise UserInputError("the cnn architecture has no ImageNet weights; drop --pretrained")
        return PneumoniaCNN()
    spec = _TORCHVISION[arch]
    model = spec.build()
    if pretrained:
        path = resolve_weights_file(pretrained, spec.weights_url)
        try:
            model.load_state_dict(load_state_dict(path))
        except RuntimeError as exc:
            first_line = str(exc).splitlines()[0]
            raise UserInputError(
                f"{path} does not hold {arch} ImageNet weights: {first_line}"
            ) from exc
    stem = grey_first_conv(model.get_submodule(spec.first_conv))
    if not pretrained:
        stem.reset_parameters()  # summed random kernels would triple the init variance
    _replace(model, spec.first_conv, stem)
    head = model.get_submodule(spec.head)
    _replace(model, spec.head, nn.Linear(head.in_features, 1))
    return model
