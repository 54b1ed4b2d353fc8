"""Training augmentation suited to chest X-rays, and its PyTorch implementation.

What each range does, drawn independently per image (the DALI graph in dali_pipeline.py draws
the same distributions with its own operators):

- ``rotate_deg``, ``scale``, ``translate``: one affine about the centre, angle, zoom factor
  ``1 + u*scale`` and shift ``u*translate*size`` with ``u`` uniform in [-1, 1]; continuous,
  bilinear, black fill. Moves the borders and the burnt-in markers.
- ``stretch``: an aspect ratio ``r`` drawn log-uniformly in [1/(1+stretch), 1+stretch]; the
  width is scaled by sqrt(r) and the height by 1/sqrt(r) about the centre (area kept; cropped or
  black-filled). The Kaggle films are stretched to a square from originals of different aspect
  ratios, so a chest's proportions are partly an acquisition cue (docs/results.md). The DALI
  graph folds it into the affine's scale; the torch path resizes after the affine.
- ``brightness``, ``contrast``: ``b * (128 + c * (x - 128))`` with ``b, c = 1 + u*range``.
- ``hflip``: off by default; the heart sits on the patient's left, and a flipped film is not a
  plausible input.

Order: affine, stretch, brightness/contrast.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

import torch

from cxr_fast.errors import UserInputError

# Both backends use DALI's brightness_contrast formula with the contrast centred on mid-grey.
CONTRAST_CENTER = 128.0


@dataclass(frozen=True)
class Augment:
    """Ranges of the random training transforms (all symmetric around identity)."""

    rotate_deg: float = 7.0
    scale: float = 0.08
    translate: float = 0.05
    brightness: float = 0.1
    contrast: float = 0.1
    hflip: bool = False
    stretch: float = 0.0  # aspect ratio drawn log-uniformly from [1/(1+stretch), 1+stretch]

    def scaled(self, strength: float) -> Augment:
        """Every range multiplied by ``strength`` (1: these ranges; 0: identity)."""
        return replace(
            self,
            rotate_deg=self.rotate_deg * strength,
            scale=self.scale * strength,
            translate=self.translate * strength,
            brightness=self.brightness * strength,
            contrast=self.contrast * strength,
        )

    def to_dict(self) -> dict:
        """Plain JSON-safe dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Augment:
        """Inverse of :meth:`to_dict`. A run saved before issue 27 also names the acquisition
        ranges (blur, gamma, noise): at 0 they are dropped; a run that used them is refused,
        since this version cannot train it the same way."""
        known = {f.name for f in fields(cls)}
        used = sorted(k for k, v in data.items() if k not in known and v)
        if used:
            raise UserInputError(
                f"this run was trained with the removed acquisition augmentation "
                f"({', '.join(used)}): train a new run to continue with this data"
            )
        return cls(**{k: v for k, v in data.items() if k in known})


def recipe_augment(
    aug_strength: float,
    *,
    stretch: float,
    zoom: float | None = None,
    hflip: bool = False,
) -> Augment:
    """The training augmentation that the recipe's options describe: the base ranges times
    ``aug_strength``, the zoom range set to ``zoom`` when given (factor 1 +- zoom) and the
    aspect ``stretch``."""
    augment = Augment(hflip=hflip, stretch=stretch).scaled(aug_strength)
    return augment if zoom is None else replace(augment, scale=zoom)


def brightness_contrast(image: torch.Tensor, brightness: float, contrast: float) -> torch.Tensor:
    """uint8 image -> uint8 image, ``brightness * (center + contrast * (x - center))``."""
    out = (image.float() - CONTRAST_CENTER).mul_(contrast).add_(CONTRAST_CENTER).mul_(brightness)
    return out.round_().clamp_(0, 255).to(torch.uint8)


def sample_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """The generator of one sample's augmentation: one per (seed, epoch, sample), so the same
    sample gets the same transform whatever process or loader draws it (runs reproduce)."""
    return torch.Generator().manual_seed(hash((seed, epoch, index)))


def augment_image(image: torch.Tensor, aug: Augment, generator: torch.Generator) -> torch.Tensor:
    """Randomly transform one uint8 [1,H,W] image (torch fallback path)."""

    def uniform(spread: float) -> float:
        return float((torch.rand((), generator=generator) * 2 - 1) * spread)

    size = image.shape[-1]
    image = affine_image(
        image,
        angle=uniform(aug.rotate_deg),
        translate=(uniform(aug.translate) * size, uniform(aug.translate) * size),
        scale=1.0 + uniform(aug.scale),
    )
    if aug.stretch > 0:
        image = stretch_image(image, math.exp(uniform(math.log1p(aug.stretch))))
    image = brightness_contrast(image, 1.0 + uniform(aug.brightness), 1.0 + uniform(aug.contrast))
    if aug.hflip and torch.rand((), generator=generator) < 0.5:
        image = image.flip(-1)
    return image


def affine_image(
    image: torch.Tensor,
    *,
    angle: float = 0.0,
    translate: tuple[float, float] = (0.0, 0.0),
    scale: float = 1.0,
) -> torch.Tensor:
    """``image`` [..., H, W] rotated by ``angle`` degrees and zoomed by ``scale`` about its centre
    and moved by ``translate`` (x, y) pixels: bilinear, black outside (the torch path's affine)."""
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    return TF.affine(
        image,
        angle=angle,
        translate=list(translate),
        scale=scale,
        shear=[0.0, 0.0],
        interpolation=InterpolationMode.BILINEAR,
        fill=0,
    )


def stretch_image(image: torch.Tensor, ratio: float) -> torch.Tensor:
    """``image`` [..., H, W] with its width scaled by sqrt(``ratio``) and its height by
    1/sqrt(``ratio``) about the centre, cropped or black-filled back to H x W."""
    from torchvision.transforms.v2 import functional as TF

    height, width = image.shape[-2:]
    root = math.sqrt(ratio)
    resized = TF.resize(
        image, [max(1, round(height / root)), max(1, round(width * root))], antialias=True
    )
    return TF.center_crop(resized, [height, width])
