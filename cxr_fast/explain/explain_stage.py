"""The explain stage's entry point: ``run_explain(ExplainConfig)`` writes one Grad-CAM overlay
per image and returns what happened to each."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cxr_fast.choices import (
    accept_ood_option,
    cam_layer_option,
    cam_method_option,
    device_option,
    precision_option,
)
from cxr_fast.options import check_options, option
from cxr_fast.text import plural

DEFAULT_OUT = Path("cam")


@dataclass(frozen=True)
class ExplainConfig:
    """What ``cxr-fast explain`` was asked to do."""

    run: Path = option(argument=True, exists=True, help="The run folder.")
    images: tuple[Path, ...] = option(argument=True, exists=True, help="Files or folders.")
    out: Path = option(
        DEFAULT_OUT,
        file_okay=False,
        section="output",
        help="Folder for the overlay PNGs (NAME.HASH.cam.png, one per image).",
    )
    layer: str | None = cam_layer_option(
        "Target layer, dotted (e.g. layer4, features.6).  [default: the architecture's last "
        "convolutional block]"
    )
    method: str = cam_method_option(
        "gradcam++ weighs gradients per location; sharper when one region dominates."
    )
    device: str = device_option()
    precision: str = precision_option()  # inference precision (precision.inference_precision)
    accept_ood: bool = accept_ood_option()  # explain films the input gate refuses too

    def __post_init__(self) -> None:
        check_options(self)


@dataclass(frozen=True)
class ExplainResult:
    """One outcome per input image, the layer and method that drew the maps, and the backend
    that gave the probabilities (the one `score --model RUN` uses)."""

    outcomes: list  # of explainer.ExplainOutcome, in input order
    out: Path
    method: str
    layer: str
    backend: str = "eager"

    @property
    def failed(self) -> int:
        return sum(outcome.explanation is None for outcome in self.outcomes)

    @property
    def all_failed(self) -> bool:
        return self.failed == len(self.outcomes)

    def lines(self) -> list[tuple[str, bool]]:
        """(line, is an error) per outcome, in input order: errors go to stderr."""
        from cxr_fast.data.discover import display_path
        from cxr_fast.text import format_probability

        lines = []
        for outcome in self.outcomes:
            e = outcome.explanation
            source = display_path(outcome.source)  # a name that is not UTF-8, printable
            if e is None:
                lines.append((f"error: {source}: {outcome.error}", True))
                continue
            prob, threshold = format_probability(e.prob, e.threshold)
            line = f"{e.pred:9s} p={prob} (threshold {threshold})  {source} -> {outcome.out}"
            lines.append((line, False))
        return lines

    def summary(self) -> str:
        """The closing line: overlays written, where, how, and how many were unreadable or
        refused by the input gate."""
        failed = self.failed
        refused = sum(o.not_cxr for o in self.outcomes)
        unreadable = f", {failed - refused} unreadable" if failed - refused else ""
        if refused:
            unreadable += f", {refused} not a chest X-ray by the input gate (--accept-ood)"
        written = plural(len(self.outcomes) - failed, "overlay")
        return (
            f"{written} in {self.out} ({self.method} on {self.layer}, probabilities from "
            f"{self.backend}){unreadable}"
        )


def run_explain(
    config: ExplainConfig, progress: Callable[[int], None] | None = None
) -> ExplainResult:
    """Explain every image under ``config.images``: the probability from the model `score`
    would use for ``config.run``, the map from its eager model."""
    from cxr_fast.data.discover import discover, require_images
    from cxr_fast.explain.explainer import explain_files, explainer_for
    from cxr_fast.outputs import creatable_folder

    explainer = explainer_for(config)
    records = [record for image in config.images for record in discover(image)]
    paths = [r.path for r in require_images(records, ", ".join(map(str, config.images)))]
    creatable_folder(config.out)  # before the first overlay is drawn, not at its saving
    outcomes = explain_files(explainer, paths, config.out, progress=progress)
    return ExplainResult(
        outcomes, config.out, config.method, explainer.layer, explainer.scoring.backend
    )
