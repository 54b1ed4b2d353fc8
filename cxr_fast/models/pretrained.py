"""ImageNet weights from a local file or the torch hub cache: nothing is ever downloaded."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from cxr_fast.errors import NotFoundError

IMAGENET = "imagenet"
# Grey equivalents of ImageNet's per-channel mean/std (their averages): a pretrained model's
# contract standardises its grey input with these.
IMAGENET_GREY_MEAN = 0.449
IMAGENET_GREY_STD = 0.226
# Old DenseNet checkpoints name layers "norm.1"; torchvision's modules are "norm1".
_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)


def hub_cache_path(url: str) -> Path:
    """Where torch hub keeps the file that ``url`` names."""
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def resolve_weights_file(pretrained: str, url: str) -> Path:
    """``pretrained`` is a path, or ``imagenet`` for the torch hub cache; a clear error if
    neither holds a file, naming exactly where to put one."""
    path = hub_cache_path(url) if pretrained == IMAGENET else Path(pretrained).expanduser()
    if not path.is_file():
        raise NotFoundError(
            f"no ImageNet weights at {path}: nothing is downloaded; fetch {url} on a machine "
            f"with internet and copy it to {hub_cache_path(url)} (or pass --pretrained FILE)"
        )
    return path


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A plain state dict from a weights file (``weights_only``: no code runs on load)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    renamed = {}
    for key, value in state.items():
        match = _DENSENET_KEY.match(key)
        renamed[match.group(1) + match.group(2) if match else key] = value
    return renamed


def grey_first_conv(conv: nn.Conv2d) -> nn.Conv2d:
    """A one-channel copy of an RGB convolution: a grey image replicated into R, G and B gives
    the same response when the three kernels are summed."""
    grey = nn.Conv2d(
        1,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=conv.bias is not None,
    )
    with torch.no_grad():
        grey.weight.copy_(conv.weight.sum(dim=1, keepdim=True))
        if conv.bias is not None:
            grey.bias.copy_(conv.bias)
    return grey
