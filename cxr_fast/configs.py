"""The configs of the stages that are flat modules or data commands, each option declared once.

Kept apart from the stages themselves, which import PyTorch: the command line builds its
options from these at once (cxr_fast/options.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cxr_fast.choices import device_option, loader_option, workers_option
from cxr_fast.contract import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE
from cxr_fast.errors import UserInputError
from cxr_fast.options import check_options, option


@dataclass(frozen=True)
class ReportConfig:
    """What ``cxr-fast report`` was asked to do."""

    run: Path = option(argument=True, exists=True, help="The run folder.")
    out: Path | None = option(
        None,
        dir_okay=False,
        section="output",
        help="HTML file to write.  [default: RUN/report.html]",
    )
    cams: int = option(
        4,
        min=0,
        section="output",
        help="Grad-CAM overlays of the most suspicious validation films (0: none; needs the "
        "run's data folder).",
    )
    overwrite: bool = option(
        False, section="output", help="Replace an --out that is not a report of this run."
    )
    device: str = device_option()

    def __post_init__(self) -> None:
        check_options(self)


@dataclass(frozen=True)
class OodFitConfig:
    """What ``cxr-fast ood-fit`` was asked to do."""

    run: Path = option(argument=True, exists=True, help="The run folder.")
    data: Path = option(
        exists=True,
        required=True,
        section="data",
        help="The films the run was trained on (a Kaggle layout's test/ split is left out).",
    )
    workers: int = workers_option(minimum=1)

    def __post_init__(self) -> None:
        check_options(self)


@dataclass(frozen=True)
class SynthConfig:
    """What ``cxr-fast data synth`` was asked to do."""

    out: Path = option(argument=True, file_okay=False, help="Folder to write.")
    n: int = option(200, min=1, section="data", help="Number of images to write.")
    seed: int = option(0, section="data", help="Random seed; same seed, same bytes.")
    min_size: int = option(1000, min=16, section="data", help="Smallest width/height in pixels.")
    max_size: int = option(2200, min=16, section="data", help="Largest width/height in pixels.")
    pneumonia_fraction: float = option(
        0.5, min=0, max=1, section="data", help="Share of PNEUMONIA images."
    )
    test_fraction: float = option(
        0.2,
        min=0,
        max=1,
        section="data",
        help="Share of patients (per class) put in test/ rather than train/.",
    )
    workers: int = workers_option(minimum=1, help="Processes rendering images in parallel.")
    overwrite: bool = option(
        False,
        section="output",
        help="Replace OUT/train and OUT/test when OUT is not empty (else refused: a merge "
        "would mix two datasets).",
    )

    def __post_init__(self) -> None:
        check_options(self)
        if self.min_size > self.max_size:
            raise UserInputError(
                f"--min-size {self.min_size} is larger than --max-size {self.max_size}"
            )


@dataclass(frozen=True)
class CheckConfig:
    """What ``cxr-fast data check`` was asked to do."""

    root: Path = option(argument=True, exists=True, help="The dataset folder.")
    sample: int | None = option(
        None,
        min=1,
        section="data",
        help="Decode only this many evenly spaced images (default: all).",
    )
    workers: int = workers_option(minimum=1, help="Processes decoding images in parallel.")

    def __post_init__(self) -> None:
        check_options(self)


@dataclass(frozen=True)
class StreamConfig:
    """What ``cxr-fast data stream`` was asked to do."""

    root: Path = option(argument=True, exists=True, help="The image folder.")
    loader: str = loader_option()
    device: str = device_option()
    batch_size: int = option(32, min=1, section="data", help="Images per batch.")
    image_size: int = option(
        224,
        min=MIN_IMAGE_SIZE,
        max=MAX_IMAGE_SIZE,
        section="data",
        help="Square model input size in pixels.",
    )
    workers: int = workers_option(minimum=1)
    train: bool = option(
        False,
        flag="--train/--eval",
        section="run",
        help="Training mode shuffles and augments; eval mode keeps order.",
    )

    def __post_init__(self) -> None:
        check_options(self)
