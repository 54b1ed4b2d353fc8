"""The preprocessing contract: how an image becomes a model input tensor.

It is the one description that every loader (DALI on CPU or GPU, the PIL fallback) follows, and
later it is written into every checkpoint and export so that serving can never drift from
training.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

from cxr_fast.choices import NORMALIZATIONS
from cxr_fast.errors import UserInputError

CONTRACT_VERSION = 1
INTERPOLATIONS = ("linear", "cubic", "nearest")
# Added to the per-image variance (of [0, 1] pixels) before the square root: a blank image stays
# finite. DALI's fn.normalize takes the same epsilon.
PER_IMAGE_EPSILON = 1e-4
# The smallest central crop: half the width and height still holds both lungs of a chest film.
MIN_CROP = 0.5
# The square input sizes a contract accepts (every stage's --image-size range).
MIN_IMAGE_SIZE = 8
MAX_IMAGE_SIZE = 4096


@dataclass(frozen=True)
class PreprocessContract:
    """Image size, colour, interpolation and scaling of a model's input.

    Pixels are decoded to one grey channel (ITU-R 601 luma, the weights both DALI and PIL use),
    cut to the central ``crop`` fraction of their width and height (1: the whole film), then
    resized to ``image_size`` x ``image_size`` (stretched, as the Kaggle-trained models expect),
    divided by 255 so they lie in [0, 1], then optionally standardised with ``mean``/``std``
    (one pair for every image) and then, with ``normalize="per-image"``, by each image's own mean
    and standard deviation. ``normalize="equalize"`` instead histogram-equalises each resized
    uint8 image before the division (cxr_fast/data/equalize.py).
    """

    image_size: int = 224
    grayscale: bool = True
    interpolation: str = "linear"
    scale: float = 1.0 / 255.0
    mean: float | None = None
    std: float | None = None
    normalize: str = "none"
    crop: float = 1.0

    def __post_init__(self) -> None:
        if not MIN_IMAGE_SIZE <= self.image_size <= MAX_IMAGE_SIZE:
            raise UserInputError(
                f"image_size must be between {MIN_IMAGE_SIZE} and {MAX_IMAGE_SIZE}, "
                f"got {self.image_size}"
            )
        if not self.grayscale:
            raise UserInputError("only grayscale (one-channel) contracts are supported")
        if self.interpolation not in INTERPOLATIONS:
            raise UserInputError(
                f"interpolation must be one of {', '.join(INTERPOLATIONS)}, "
                f"got {self.interpolation!r}"
            )
        if self.normalize not in NORMALIZATIONS:
            raise UserInputError(
                f"normalize must be one of {', '.join(NORMALIZATIONS)}, got {self.normalize!r}"
            )
        if not MIN_CROP <= self.crop <= 1.0:
            raise UserInputError(f"crop must be between {MIN_CROP} and 1, got {self.crop}")
        if (self.mean is None) != (self.std is None):
            raise UserInputError("mean and std must be given together")
        if self.std is not None and self.std <= 0:
            raise UserInputError(f"std must be positive, got {self.std}")

    @property
    def shift(self) -> float:
        """Value subtracted after scaling to [0, 1] (0 without standardisation)."""
        return 0.0 if self.mean is None else self.mean

    @property
    def divisor(self) -> float:
        """Value divided by after the shift (1 without standardisation)."""
        return 1.0 if self.std is None else self.std

    def crop_box(self, width: int, height: int) -> tuple[float, float, float, float]:
        """(left, top, right, bottom) in pixels of a ``width`` x ``height`` image: the central
        region the contract keeps (the whole image at ``crop=1``)."""
        margin = (1.0 - self.crop) / 2
        return (margin * width, margin * height, (1 - margin) * width, (1 - margin) * height)

    @property
    def affine(self) -> tuple[float, float]:
        """(a, b) with ``input = a * uint8 + b`` before any per-image standardisation."""
        return self.scale / self.divisor, -self.shift / self.divisor

    def to_dict(self) -> dict:
        """Plain JSON-safe dict, with a version key."""
        return {"version": CONTRACT_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict) -> PreprocessContract:
        """Inverse of :meth:`to_dict`; rejects unknown versions and keys."""
        data = dict(data)
        version = data.pop("version", CONTRACT_VERSION)
        if version != CONTRACT_VERSION:
            raise UserInputError(f"unsupported preprocessing contract version {version}")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise UserInputError(
                f"unknown preprocessing contract keys: {', '.join(sorted(unknown))}"
            )
        return cls(**data)

    def to_json(self) -> str:
        """JSON text of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PreprocessContract:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))
