"""Picture of an explanation: the X-ray and the X-ray with its heat map, side by side, a colour
bar, and a caption with the verdict, the probability and what produced the map."""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont

from cxr_fast.labels import CLASS_NAMES
from cxr_fast.text import probability_line

# The panels' longest side: a small film is enlarged to DISPLAY_MIN_SIDE so a reviewer can
# inspect the map's edges, a film of up to DISPLAY_MAX_SIDE keeps its own resolution, and a
# larger one is reduced to it (a 3000 px DICOM would make a 20 MB picture).
DISPLAY_MIN_SIDE = 1024
DISPLAY_MAX_SIDE = 2048
# Heat below this fraction of the map's maximum is not drawn at all, so the film stays
# readable wherever the model found no evidence; above it the tint grows to HEAT_OPACITY.
HEAT_FLOOR = 0.2
HEAT_OPACITY = 0.6
COLORMAP = "jet"
_CAPTION_COLOURS = {CLASS_NAMES[0]: (70, 190, 90), CLASS_NAMES[1]: (235, 70, 60)}
_BACKGROUND = (18, 18, 18)
_TEXT = (200, 200, 200)
# The colour bar is shown over this grey, so it looks as the tint does on a film.
_BAR_GREY = 128


def display_size(width: int, height: int) -> tuple[int, int]:
    """The panel size for a (width, height) film: longest side within
    [DISPLAY_MIN_SIDE, DISPLAY_MAX_SIDE], aspect kept."""
    longest = max(width, height)
    target = min(max(longest, DISPLAY_MIN_SIDE), DISPLAY_MAX_SIDE)
    scale = target / longest
    return max(1, round(width * scale)), max(1, round(height * scale))


def for_display(gray: Image.Image) -> Image.Image:
    """``gray`` resized to :func:`display_size` (LANCZOS either way)."""
    size = display_size(*gray.size)
    return gray if size == gray.size else gray.resize(size, Image.Resampling.LANCZOS)


def heat_alpha(level: np.ndarray) -> np.ndarray:
    """Opacity for heat ``level`` in 0..1: 0 below HEAT_FLOOR, rising to HEAT_OPACITY at 1."""
    rise = np.clip((level - HEAT_FLOOR) / (1.0 - HEAT_FLOOR), 0.0, 1.0)
    return HEAT_OPACITY * rise**0.7


def _rgba(level: np.ndarray) -> Image.Image:
    rgba = colormaps[COLORMAP](level)
    rgba[..., 3] = heat_alpha(level)
    return Image.fromarray((rgba * 255).astype(np.uint8), "RGBA")


def heat_rgba(heat: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """The [H,W] 0..1 map coloured and resized to ``size`` (width, height), alpha from heat."""
    resized = Image.fromarray(np.clip(heat, 0, 1).astype(np.float32), "F").resize(
        size, Image.Resampling.BICUBIC
    )
    return _rgba(np.clip(np.asarray(resized), 0.0, 1.0))


def blend(gray: Image.Image, heat: np.ndarray) -> Image.Image:
    """``gray`` (an L image) with the heat map over it, as RGB."""
    base = gray.convert("RGBA")
    return Image.alpha_composite(base, heat_rgba(heat, gray.size)).convert("RGB")


def caption_lines(prob: float, threshold: float, pred: str, detail: str) -> list[str]:
    """The caption under the images: verdict and probability (with as many digits as it takes
    to tell them from the threshold), then what produced the map."""
    return [f"{pred}   {probability_line(prob, threshold)}", detail]


def evidence_title(pred: str) -> str:
    """What the heat map shows: the evidence for the verdict (the serve page says the same)."""
    return f"Grad-CAM: evidence for {pred}"


def colour_bar(height: int, width: int) -> Image.Image:
    """The colour scale, 1 at the top and 0 at the bottom, drawn over grey as on a film (the
    part below HEAT_FLOOR is the plain grey: nothing drawn)."""
    level = np.repeat(np.linspace(1.0, 0.0, height, dtype=np.float32)[:, None], width, axis=1)
    grey = Image.new("RGBA", (width, height), (_BAR_GREY,) * 3 + (255,))
    return Image.alpha_composite(grey, _rgba(level)).convert("RGB")


def compose(gray: Image.Image, overlay: Image.Image, lines: list[str], pred: str) -> Image.Image:
    """Titled original | overlay | colour bar, with ``lines`` below (the first in the
    verdict's colour)."""
    width, height = gray.size
    font_size = max(14, min(40, max(width, height) // 40))
    font = ImageFont.load_default(size=font_size)
    small = ImageFont.load_default(size=max(12, font_size * 3 // 4))
    gap = max(8, font_size // 2)
    line = font_size + gap // 2
    bar_width = max(12, font_size)
    label_width = int(font_size * 2.2)
    top = gap + line
    canvas = Image.new(
        "RGB",
        (2 * width + 4 * gap + bar_width + label_width, top + height + gap + line * len(lines)),
        _BACKGROUND,
    )
    draw = ImageDraw.Draw(canvas)
    draw.text((gap, gap), "X-ray", fill=_TEXT, font=font)
    colour = _CAPTION_COLOURS.get(pred, (255, 255, 255))
    draw.text((width + 2 * gap, gap), evidence_title(pred), fill=colour, font=font)
    canvas.paste(gray.convert("RGB"), (gap, top))
    canvas.paste(overlay, (width + 2 * gap, top))

    bar_x = 2 * width + 3 * gap
    bar_height = max(64, height * 2 // 3)
    bar_y = top + (height - bar_height) // 2
    canvas.paste(colour_bar(bar_height, bar_width), (bar_x, bar_y))
    for value in (1.0, 0.5, HEAT_FLOOR, 0.0):
        y = bar_y + round((1.0 - value) * (bar_height - 1))
        draw.line([(bar_x + bar_width, y), (bar_x + bar_width + gap // 2, y)], fill=_TEXT)
        draw.text(
            (bar_x + bar_width + gap // 2 + 2, y), f"{value:g}", fill=_TEXT, font=small, anchor="lm"
        )
    draw.text((bar_x, bar_y - gap // 2), "high", fill=_TEXT, font=small, anchor="lb")
    draw.text((bar_x, bar_y + bar_height + gap // 2), "low", fill=_TEXT, font=small, anchor="lt")

    y = top + height + gap
    for i, text in enumerate(lines):
        draw.text((gap, y), text, fill=colour if i == 0 else _TEXT, font=font)
        y += line
    return canvas
