"""Explain predictions of a trained run: Grad-CAM maps and captioned overlay pictures."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cxr_fast.contract import PreprocessContract
from cxr_fast.data.batch import stack_gray
from cxr_fast.data.decode import ImageReadError, display_gray, read_image
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
from cxr_fast.export.source import needs_run_folder
from cxr_fast.gate import NotChestXrayError
from cxr_fast.inference import sigmoid
from cxr_fast.labels import CLASS_NAMES, verdict
from cxr_fast.models.registry import default_cam_layer
from cxr_fast.precision import inference_precision
from cxr_fast.run_folder import load_run
from cxr_fast.scoring.gating import judge_batch
from cxr_fast.scoring.model import ScoringModel, load_scoring_model

# The verdict whose map shows the evidence for the logit itself (grad_cam's target +1).
_PNEUMONIA = CLASS_NAMES[1]
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
    """A run on a device, ready to explain images one batch at a time: the probability and
    verdict come from the model `cxr-fast score --model RUN` would use on that device
    (:attr:`scoring`: its fastest verified export, else the eager model), the map from the
    eager model's gradients (exports keep none)."""

    def __init__(
        self,
        run: Path,
        device: str = "auto",
        layer: str | None = None,
        method: str = "gradcam",
        precision: str = "auto",
        scoring: ScoringModel | None = None,
        accept_ood: bool = False,
    ) -> None:
        """``scoring``: the model that gives the probabilities (`score --cam-dir` passes the
        one that scores its rows); None: the one ``score`` would load for ``run`` and
        ``device`` at ``precision``. ``accept_ood``: explain films the input gate refuses
        too (else :meth:`explain_file` raises :class:`NotChestXrayError` for them)."""
        self.accept_ood = accept_ood
        if not run.is_dir():
            raise needs_run_folder(run)
        self.device = resolve_device(device)
        # Before the model loads: a precision this device cannot run fails at once.
        self.precision = inference_precision(self.device, precision)
        self.model, self.info = load_run(run, self.device)
        # One answer per film: the same choice of model as `score` (backend "auto").
        if scoring is None:
            scoring = load_scoring_model(
                run, "auto", self.device, precision=precision, loaded=(self.model, self.info)
            )
        self.scoring = scoring
        self.layer = layer or default_cam_layer(self.info.arch)
        self.method = method
        # An ensemble's map is the mean of its members' maps at the same layer.
        self.layers = self.info.layer_names(self.layer)
        for name in self.layers:
            find_layer(self.model, name)  # a wrong --layer fails now, not per image

    @property
    def threshold(self) -> float:
        return self.scoring.threshold

    @property
    def contract(self) -> PreprocessContract:
        """How images are decoded for the model: the scoring model's, as `score` decodes."""
        return self.scoring.contract

    def heat_maps(self, pixels: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities [N], heat maps [N,S,S]) for uint8 [S,S] arrays from the contract."""
        x = stack_gray(pixels, self.contract)
        # The probabilities `score` writes for these pixels, from the model it scores with.
        probs = sigmoid(self.scoring.logits(x).cpu().numpy())
        # Each map explains the verdict shown, even where the eager logit falls on the
        # threshold's other side.
        target = torch.tensor(
            [1.0 if verdict(float(p), self.threshold) == _PNEUMONIA else -1.0 for p in probs]
        )
        with self.precision.autocast(self.model):
            result = grad_cam(
                self.model, x.to(self.device), self.layers, self.method, self.threshold, target
            )
        return probs, result.heat.cpu().numpy()

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
        contract = self.contract
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

    def check_gate(self, pixels: np.ndarray, info: dict | None, name: str) -> None:
        """:class:`NotChestXrayError` when the input gate refuses these pixels (unless
        ``accept_ood``): no verdict, and no map of one, for a film that is not a chest X-ray."""
        if self.accept_ood:
            return
        (judgement,) = judge_batch(self.scoring, stack_gray([pixels], self.contract), [info])
        if judgement.refused:
            raise NotChestXrayError(name, judgement.reason)

    def explain_file(self, path: str) -> Explanation:
        """Explain one image file; :class:`ImageReadError` when it cannot be read,
        :class:`NotChestXrayError` (one of them) when the input gate refuses it."""
        read = read_image(path, self.contract)
        name = display_path(Path(path).name)  # drawn in the caption: text, not bytes
        self.check_gate(read.pixels, read.info, name)
        return self.explain_pixels(read.pixels, read.size, display_gray(path, DISPLAY_SIDE), name)


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
    not_cxr: bool = False  # refused by the input gate (readable, but no chest X-ray)


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
            refused = isinstance(exc, NotChestXrayError)
            outcomes.append(ExplainOutcome(path, None, None, exc.reason, not_cxr=refused))
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
        accept_ood=config.accept_ood,
    )
