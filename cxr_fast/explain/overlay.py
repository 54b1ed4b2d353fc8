"""Picture of an explanation: the X-ray and the X-ray with its heat map, side by side, and a
caption with the probability and verdict."""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont

from cxr_fast.labels import CLASS_NAMES

# Heat drawn at this opacity where the map is 1 and fading with it, so cold regions keep the
# film readable instead of being washed blue.
HEAT_OPACITY = 0.55
COLORMAP = "jet"
_CAPTION_COLOURS = {CLASS_NAMES[0]: (70, 190, 90), CLASS_NAMES[1]: (235, 70, 60)}
_GAP = 8


def heat_rgba(heat: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """The [H,W] 0..1 map coloured and resized to ``size`` (width, height), alpha from heat."""
    resized = Image.fromarray((np.clip(heat, 0, 1) * 255).astype(np.uint8)).resize(
        size, Image.Resampling.BILINEAR
    )
    level = np.asarray(resized, dtype=np.float32) / 255.0
    rgba = colormaps[COLORMAP](level)
    rgba[..., 3] = HEAT_OPACITY * np.sqrt(level)
    return Image.fromarray((rgba * 255).astype(np.uint8), "RGBA")


def blend(gray: Image.Image, heat: np.ndarray) -> Image.Image:
    """``gray`` (an L image) with the heat map over it, as RGB."""
    base = gray.convert("RGBA")
    return Image.alpha_composite(base, heat_rgba(heat, gray.size)).convert("RGB")


def caption_lines(prob: float, threshold: float, pred: str, detail: str) -> list[str]:
    """The caption under the images: verdict and probability, then what produced the map."""
    return [f"{pred}   p(pneumonia) = {prob:.3f}   threshold {threshold:.3f}", detail]


def compose(gray: Image.Image, overlay: Image.Image, lines: list[str], pred: str) -> Image.Image:
    """Original | overlay, with ``lines`` below (the first in the verdict's colour)."""
    width, height = gray.size
    font_size = max(12, min(22, width // 22))
    font = ImageFont.load_default(size=font_size)
    line_height = font_size + 6
    canvas = Image.new(
        "RGB",
        (2 * width + 3 * _GAP, height + 2 * _GAP + line_height * len(lines) + _GAP),
        (18, 18, 18),
    )
    canvas.paste(gray.convert("RGB"), (_GAP, _GAP))
    canvas.paste(overlay, (width + 2 * _GAP, _GAP))
    draw = ImageDraw.Draw(canvas)
    y = height + 2 * _GAP
    for i, line in enumerate(lines):
        colour = _CAPTION_COLOURS.get(pred, (255, 255, 255)) if i == 0 else (200, 200, 200)
        draw.text((_GAP, y), line, fill=colour, font=font)
        y += line_height
    return canvas
