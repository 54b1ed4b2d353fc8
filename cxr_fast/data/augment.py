"""Training augmentation suited to chest X-rays, and its PyTorch implementation.

What each range does, drawn independently per image (the DALI graph in dali_pipeline.py draws
the same distributions with its own operators):

- ``rotate_deg``, ``scale``, ``translate``: one affine about the centre, angle, zoom factor
  ``1 + u*scale`` and shift ``u*translate*size`` with ``u`` uniform in [-1, 1]; continuous,
  bilinear, black fill. Moves the borders and the burnt-in markers.
- ``blur``: Gaussian blur with sigma uniform in [0, blur] pixels of a 224 px image;
  ``gamma``: a gamma drawn log-uniformly in [1/(1+gamma), 1+gamma]; ``noise``: Gaussian grain
  with a std uniform in [0, noise] grey levels. These mimic another scanner or site (sharpness,
  exposure curve, detector noise) rather than another patient.
- ``stretch``: an aspect ratio ``r`` drawn log-uniformly in [1/(1+stretch), 1+stretch]; the
  width is scaled by sqrt(r) and the height by 1/sqrt(r) about the centre (area kept; cropped or
  black-filled). The Kaggle films are stretched to a square from originals of different aspect
  ratios, so a chest's proportions are partly an acquisition cue (docs/results.md). The DALI
  graph folds it into the affine's scale; the torch path resizes after the affine.
- ``brightness``, ``contrast``: ``b * (128 + c * (x - 128))`` with ``b, c = 1 + u*range``.
- ``hflip``: off by default; the heart sits on the patient's left, and a flipped film is not a
  plausible input.

Order: affine, stretch, blur, gamma, brightness/contrast, noise.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch

# Both backends use DALI's brightness_contrast formula with the contrast centred on mid-grey.
CONTRAST_CENTER = 128.0
# The acquisition ranges at --site-aug 1: blur up to sigma 1 px (224 px scale), gamma in
# [0.8, 1.25], grain up to 4 grey levels. The Kaggle test films are a little softer and lower in
# dynamic range than the training normals (mean gradient 0.040 vs 0.043, 1-99% range 0.84 vs
# 0.86), which is where a from-scratch model's specificity fell (docs/results.md).
SITE_RANGES = {"blur": 1.0, "gamma": 0.25, "noise": 4.0}


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
    # Acquisition: what differs between sites and scanners rather than between patients.
    blur: float = 0.0  # largest Gaussian blur sigma, in pixels of a 224 px image
    gamma: float = 0.0  # gamma drawn log-uniformly from [1/(1+gamma), 1+gamma]
    noise: float = 0.0  # largest Gaussian noise std, in grey levels (0-255)

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

    def with_site(self, strength: float) -> Augment:
        """The acquisition ranges (blur, gamma, noise) at ``strength`` times SITE_RANGES."""
        return replace(self, **{k: v * strength for k, v in SITE_RANGES.items()})

    def to_dict(self) -> dict:
        """Plain JSON-safe dict."""
        return asdict(self)


def recipe_augment(
    aug_strength: float,
    *,
    stretch: float,
    site_aug: float,
    zoom: float | None = None,
    hflip: bool = False,
) -> Augment:
    """The training augmentation that the recipe's options describe: the base ranges times
    ``aug_strength``, the zoom range set to ``zoom`` when given (factor 1 +- zoom), the aspect
    ``stretch`` and the acquisition ranges at ``site_aug``."""
    augment = Augment(hflip=hflip, stretch=stretch).scaled(aug_strength).with_site(site_aug)
    return augment if zoom is None else replace(augment, scale=zoom)


def brightness_contrast(image: torch.Tensor, brightness: float, contrast: float) -> torch.Tensor:
    """uint8 image -> uint8 image, ``brightness * (center + contrast * (x - center))``."""
    out = (image.float() - CONTRAST_CENTER).mul_(contrast).add_(CONTRAST_CENTER).mul_(brightness)
    return out.round_().clamp_(0, 255).to(torch.uint8)


def augment_image(image: torch.Tensor, aug: Augment, generator: torch.Generator) -> torch.Tensor:
    """Randomly transform one uint8 [1,H,W] image (torch fallback path)."""
    # Imported here: only training needs torchvision's transforms, and the import costs ~1 s.
    from torchvision.transforms.v2 import functional as TF

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
    if aug.blur > 0:
        sigma = float(torch.rand((), generator=generator)) * aug.blur * size / 224
        if sigma > 0.1:
            radius = max(1, int(3 * sigma + 0.5))
            image = TF.gaussian_blur(image, [2 * radius + 1] * 2, [sigma, sigma])
    if aug.gamma > 0:
        gamma = math.exp(uniform(math.log1p(aug.gamma)))
        image = TF.adjust_gamma(image, gamma)
    image = brightness_contrast(image, 1.0 + uniform(aug.brightness), 1.0 + uniform(aug.contrast))
    if aug.noise > 0:
        std = float(torch.rand((), generator=generator)) * aug.noise
        noise = torch.randn(image.shape, generator=generator) * std
        image = (image.float() + noise).round_().clamp_(0, 255).to(torch.uint8)
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
