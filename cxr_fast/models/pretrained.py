"""ImageNet weights: a local file, or ``imagenet`` for torchvision's weights through the torch hub
cache (downloaded once, with a progress bar and the hash check, where there is internet)."""

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
    """``pretrained`` is a path, or ``imagenet``: torchvision's file in the torch hub cache,
    downloaded there first when missing (progress bar, SHA-256 prefix check, as torchvision's
    own weights API does). Offline, one clear error says to pass ``--pretrained FILE``."""
    if pretrained != IMAGENET:
        path = Path(pretrained).expanduser()
        if not path.is_file():
            raise NotFoundError(f"no ImageNet weights file at {path}")
        return path
    path = hub_cache_path(url)
    if not path.is_file():
        _download(url, path)
    return path


def _download(url: str, path: Path) -> None:
    from torch.hub import HASH_REGEX, download_url_to_file

    match = HASH_REGEX.search(path.name)  # torchvision names carry the hash's first digits
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        download_url_to_file(url, str(path), match.group(1) if match else None, progress=True)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError; a bad hash a RuntimeError
        reason = str(getattr(exc, "reason", exc)).splitlines()[0]
        raise NotFoundError(
            f"could not download ImageNet weights from {url} ({reason}): fetch that file on a "
            f"machine with internet and pass --pretrained FILE, or copy it to {path}"
        ) from None


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
