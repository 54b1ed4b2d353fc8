"""Training augmentation suited to chest X-rays, and its PyTorch implementation.

Small rotations, scale and translation, brightness and contrast. No horizontal flip by default:
the heart sits on the patient's left, and a flipped film is not a plausible input. The DALI
pipeline implements the same parameters with its own operators.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch

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


def brightness_contrast(image: torch.Tensor, brightness: float, contrast: float) -> torch.Tensor:
    """uint8 image -> uint8 image, ``brightness * (center + contrast * (x - center))``."""
    out = (image.float() - CONTRAST_CENTER).mul_(contrast).add_(CONTRAST_CENTER).mul_(brightness)
    return out.round_().clamp_(0, 255).to(torch.uint8)


def augment_image(image: torch.Tensor, aug: Augment, generator: torch.Generator) -> torch.Tensor:
    """Randomly transform one uint8 [1,H,W] image (torch fallback path)."""
    # Imported here: only training needs torchvision's transforms, and the import costs ~1 s.
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    def uniform(spread: float) -> float:
        return float((torch.rand((), generator=generator) * 2 - 1) * spread)

    size = image.shape[-1]
    image = TF.affine(
        image,
        angle=uniform(aug.rotate_deg),
        translate=[uniform(aug.translate) * size, uniform(aug.translate) * size],
        scale=1.0 + uniform(aug.scale),
        shear=[0.0, 0.0],
        interpolation=InterpolationMode.BILINEAR,
        fill=0,
    )
    image = brightness_contrast(image, 1.0 + uniform(aug.brightness), 1.0 + uniform(aug.contrast))
    if aug.hflip and torch.rand((), generator=generator) < 0.5:
        image = image.flip(-1)
    return image
