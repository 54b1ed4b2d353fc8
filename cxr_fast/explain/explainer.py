"""Explain predictions of a trained run: Grad-CAM maps and captioned overlay pictures."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cxr_fast.data.batch import stack_gray
from cxr_fast.data.decode import ImageReadError, display_gray, read_gray
from cxr_fast.data.discover import display_path
from cxr_fast.device import resolve_device
from cxr_fast.explain.gradcam import find_layer, grad_cam
from cxr_fast.explain.overlay import (
    DISPLAY_MAX_SIDE,
    HEAT_FLOOR,
    blend,
    caption_lines,
    compose,
    for_display,
)
from cxr_fast.inference import sigmoid
from cxr_fast.labels import verdict
from cxr_fast.models.registry import default_cam_layer
from cxr_fast.precision import inference_precision
from cxr_fast.run_folder import load_run, needs_run_folder

# Largest side decoded for the pictures for people (overlay.display_size sizes the panels).
DISPLAY_SIDE = DISPLAY_MAX_SIDE


@dataclass(frozen=True)
class Explanation:
    """One image's prediction and map: ``heat`` [S,S] in 0..1 at the model's input size."""

    prob: float
    pred: str
    threshold: float
    heat: np.ndarray
    width: int
    height: int
    display: Image.Image  # the X-ray for people (grey, sized by overlay.display_size)
    overlay: Image.Image  # the same with the heat map blended in (RGB)
    picture: Image.Image  # both side by side with the caption: what `explain` saves


class Explainer:
    """A run's eager model on a device, ready to explain images one batch at a time."""

    def __init__(
        self,
        run: Path,
        device: str = "auto",
        layer: str | None = None,
        method: str = "gradcam",
        precision: str = "auto",
    ) -> None:
        if not run.is_dir():
            raise needs_run_folder(run)
        self.device = resolve_device(device)
        # Before the model loads: a precision this device cannot run fails at once.
        self.precision = inference_precision(self.device, precision)
        self.model, self.info = load_run(run, self.device)
        self.layer = layer or default_cam_layer(self.info.arch)
        self.method = method
        # An ensemble's map is the mean of its members' maps at the same layer.
        self.layers = self.info.layer_names(self.layer)
        for name in self.layers:
            find_layer(self.model, name)  # a wrong --layer fails now, not per image

    @property
    def threshold(self) -> float:
        return self.info.threshold

    def heat_maps(self, pixels: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities [N], heat maps [N,S,S]) for uint8 [S,S] arrays from the contract."""
        x = stack_gray(pixels, self.info.contract).to(self.device)
        # The same autocast as `score`, so the caption's probability is the one score writes.
        with self.precision.autocast(self.model):
            result = grad_cam(self.model, x, self.layers, self.method, self.threshold)
        return sigmoid(result.logits.float().cpu().numpy()), result.heat.cpu().numpy()

    def explain_pixels(
        self, pixels: np.ndarray, size: tuple[int, int], display: Image.Image, name: str
    ) -> Explanation:
        """Explain one image already decoded per the contract (``pixels``, from
        :func:`read_gray` or :func:`read_gray_bytes`); ``size`` is its original (width, height),
        ``display`` the picture for people (resized here to overlay.display_size), ``name``
        what the caption calls it."""
        probs, heats = self.heat_maps([pixels])
        prob = float(probs[0])
        pred = verdict(prob, self.threshold)
        contract = self.info.contract
        if contract.crop < 1.0:  # show the part of the film the model sees, under its heat
            display = display.crop(tuple(round(v) for v in contract.crop_box(*display.size)))
        display = for_display(display)
        detail = (
            f"{self.method} on {self.info.arch}.{self.layer}, drawn above {HEAT_FLOOR:g} of its "
            f"maximum  |  {name}  {size[0]}x{size[1]}"
            + (f", central {contract.crop:.0%}" if contract.crop < 1.0 else "")
        )
        overlay = blend(display, heats[0])
        lines = caption_lines(prob, self.threshold, pred, detail)
        return Explanation(
            prob=prob,
            pred=pred,
            threshold=self.threshold,
            heat=heats[0],
            width=size[0],
            height=size[1],
            display=display,
            overlay=overlay,
            picture=compose(display, overlay, lines, pred),
        )

    def explain_file(self, path: str) -> Explanation:
        """Explain one image file; :class:`ImageReadError` when it cannot be read."""
        pixels, size = read_gray(path, self.info.contract)
        name = display_path(Path(path).name)  # drawn in the caption: text, not bytes
        return self.explain_pixels(pixels, size, display_gray(path, DISPLAY_SIDE), name)


def overlay_name(path: str) -> str:
    """A file name for ``path``'s overlay: its stem plus a short hash of the full path, so that
    same-named films from different folders never overwrite each other. Valid UTF-8 whatever
    the source's name (``bad\\xff.jpeg`` -> ``bad_xff.HASH.cam.png``); the hash is of its
    bytes."""
    digest = hashlib.sha1(os.fsencode(path)).hexdigest()[:8]
    # No backslash either: the escapes would make a name awkward in shells and on Windows.
    stem = display_path(Path(path).stem).replace("\\", "_")
    return f"{stem}.{digest}.cam.png"


@dataclass(frozen=True)
class ExplainOutcome:
    """What happened to one input: its overlay file, or why there is none."""

    source: str
    out: Path | None
    explanation: Explanation | None
    error: str | None


def explain_files(
    explainer: Explainer,
    paths: Sequence[str],
    out_dir: Path,
    progress: Callable[[int], None] | None = None,
) -> list[ExplainOutcome]:
    """Write one overlay PNG per readable image into ``out_dir``; unreadable ones get an error."""
    out_dir.mkdir(parents=True, exist_ok=True)
    outcomes = []
    for path in paths:
        try:
            explanation = explainer.explain_file(path)
        except ImageReadError as exc:
            outcomes.append(ExplainOutcome(path, None, None, exc.reason))
        else:
            target = out_dir / overlay_name(path)
            explanation.picture.save(target, optimize=False)
            outcomes.append(ExplainOutcome(path, target, explanation, None))
        if progress is not None:
            progress(1)
    return outcomes


def explainer_for(config) -> Explainer:
    """The Explainer a stage's config asks for (``run``, ``device``, ``layer``, ``method``,
    ``precision``: explain's and serve's)."""
    return Explainer(
        config.run,
        device=config.device,
        layer=config.layer,
        method=config.method,
        precision=config.precision,
    )
