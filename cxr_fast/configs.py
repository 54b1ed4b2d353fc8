"""The configs of the stages that are flat modules or data commands, each option declared once.

Kept apart from the stages themselves, which import PyTorch: the command line builds its
options from these at once (cxr_fast/options.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cxr_fast.choices import (
    ADAPT_METHODS,
    ARCHITECTURES,
    BOOTSTRAP,
    CALIBRATION_POLICIES,
    EVAL_BATCH_SIZE,
    MIN_CALIBRATION_PER_CLASS,
    TRAIN_EXPORTS,
    accept_ood_option,
    device_option,
    loader_option,
    precision_option,
    tta_option,
    workers_option,
)
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


@dataclass(frozen=True)
class EvalConfig:
    """What ``cxr-fast evaluate`` was asked to do."""

    run: Path = option(argument=True, exists=True, help="The run folder.")
    data: Path = option(
        exists=True,
        required=True,
        section="data",
        help="Labeled folder (NORMAL/ and PNEUMONIA/ inside, at any level).",
    )
    threshold: float | None = option(
        None,
        min=0,
        max=1,
        section="model",
        help="Decision threshold.  [default: the one chosen on validation, from the run]",
    )
    out: Path | None = option(
        None,
        file_okay=False,
        section="output",
        help="Folder for metrics.json and the plots (refused when it holds an evaluation of "
        "other data or another model, unless --overwrite).  [default: RUN/eval/<data "
        "name>-<path hash>]",
    )
    loader: str = loader_option()
    device: str = device_option()
    precision: str = precision_option()
    batch_size: int = option(EVAL_BATCH_SIZE, min=1, section="run", help="Images per batch.")
    workers: int = workers_option()
    bootstrap: int = option(
        BOOTSTRAP,
        min=0,
        section="output",
        help="Bootstrap resamples for the 95% confidence intervals (0: none).",
    )
    tta: bool = tta_option()
    overwrite: bool = option(
        False,
        section="output",
        help="Replace an --out folder that holds an evaluation of other data or another model.",
    )
    # keep films the input gate refuses (else left out and counted)
    accept_ood: bool = accept_ood_option()

    def __post_init__(self) -> None:
        check_options(self)


@dataclass(frozen=True)
class CalibrateConfig:
    """What ``cxr-fast calibrate`` was asked to do."""

    run: Path = option(argument=True, exists=True, help="The run folder to calibrate.")
    data: Path = option(
        exists=True,
        required=True,
        section="data",
        help="The site's labelled sample (NORMAL/ and PNEUMONIA/ inside, at least 50 images "
        "and --min-per-class of each class).",
    )
    out: Path = option(
        file_okay=False,
        required=True,
        section="output",
        help="New run folder: the same weights with the fitted temperature, bias and threshold.",
    )
    target_sensitivity: float | None = option(
        None,
        min=0,
        max=1,
        min_open=True,
        section="recipe",
        help="Choose the threshold that keeps the sample's sensitivity at this level.",
    )
    # Cross-fitted on the 193-film sample (bench/site_calibration.py): bayes beat the margin
    # policy refitted on the tempered probabilities (docs/results.md).
    threshold_policy: str = option(
        "bayes",
        choices=CALIBRATION_POLICIES,
        section="recipe",
        help="bayes: PNEUMONIA at calibrated P >= 0.5, the fewest errors at the sample's "
        "prevalence (so the sample should have the site's mix of cases); margin, youden: "
        "prevalence-free rules on the sample's calibrated probabilities (see `cxr-fast train "
        "--help`).",
    )
    # Platt's prior strength (calibrate.fit_platt): a Gaussian of sd 1/sqrt(3) on the bias and
    # on log T around the run as trained; cross-fitted on the sample it did a little better
    # than plain maximum likelihood, and strengths 2 to 5 were alike (docs/results.md).
    prior_strength: float = option(
        3.0,
        min=0,
        section="recipe",
        help="Strength of the prior that the run as trained is right (temperature 1, its "
        "stored threshold): a Gaussian of sd 1/sqrt(S) on the bias and on log T. 0: plain "
        "maximum likelihood.",
    )
    min_per_class: int = option(
        MIN_CALIBRATION_PER_CLASS,
        min=1,
        section="data",
        help="Fewest films of each class the sample must hold; below the default the fit is "
        "mostly noise, and a warning says so.",
    )
    cross_fit: int | None = option(
        None,
        min=2,
        metavar="K",
        section="output",
        help="Also estimate the calibration on films it was not fitted on: split the sample "
        "into K patient folds, fit on K-1, predict the other, and print the pooled accuracy, "
        "sensitivity and specificity. With 10, each fit uses 90% of the sample, close to the "
        "real fit's size.",
    )
    overwrite: bool = option(
        False, section="output", help="Replace an existing calibrated run in --out."
    )
    device: str = device_option()
    workers: int = workers_option()

    def __post_init__(self) -> None:
        check_options(self)


@dataclass(frozen=True)
class TuneConfig:
    """A search: the data, its size and where the study and the trial runs live.

    Its defaults screen cheaply, which is why they differ from train's: one fold, 8 epochs and
    the small cnn per trial.
    """

    data: str = option(
        exists=True, required=True, section="data", help="Dataset folder (Kaggle layout)."
    )
    out: str = option(
        "tune",
        file_okay=False,
        section="output",
        help="Folder for the study database, the trial runs, best.json and the plots.",
    )
    trials: int = option(
        20,
        min=1,
        help="Trials to run in this invocation (the study keeps earlier ones).",
    )
    timeout: float | None = option(
        None, min=1, help="Stop starting trials after this many seconds."
    )
    folds: int = option(
        1,
        min=1,
        section="recipe",
        help="K > 1: judge each trial by K-fold patient-level cross-validation.",
    )
    epochs: int = option(
        8, min=1, section="recipe", help="Epochs per trial (per member with --folds)."
    )
    archs: tuple[str, ...] = option(
        name="--arch",
        factory=lambda: ("cnn",),
        choices=ARCHITECTURES,
        multiple=True,
        section="model",
        help="Architectures to search (repeat the option for several).",
    )
    image_sizes: tuple[int, ...] = option(
        name="--image-size",
        factory=lambda: (128, 160, 224),
        min=MIN_IMAGE_SIZE,
        max=MAX_IMAGE_SIZE,
        multiple=True,
        section="model",
        help="Input sizes to search (repeat the option for several).",
    )
    storage: str | None = option(
        None,
        help="Optuna storage URL.  [default: sqlite:///OUT/tune.db] Point several machines "
        "at one PostgreSQL/MySQL URL to tune one study together.",
    )
    study_name: str = option("cxr-fast", help="Study in the storage.")
    seed: int = option(0, section="recipe", help="Sampler and split seed.")
    workers: int = workers_option()
    device: str = device_option()

    def __post_init__(self) -> None:
        check_options(self)


@dataclass(frozen=True)
class AdaptConfig:
    """What ``cxr-fast adapt`` was asked to do."""

    run: Path = option(argument=True, exists=True, help="The run folder to adapt.")
    data: Path = option(
        exists=True,
        required=True,
        section="data",
        help="The site's films, at least 100, read as an unlabelled folder: class folder names "
        "are never read.",
    )
    out: Path = option(
        file_okay=False,
        required=True,
        section="output",
        help="New run folder: the run adapted to the site, taken by every stage like the original.",
    )
    # bench/adapt.py on the external sample and on held-out training folds (docs/results.md):
    # AdaBN alone raised every film's score (training's statistics were taken on augmented
    # films) and with the shift it cost accuracy on held-out training films; the shift alone
    # moved the threshold the way the sample's labels do and cost little there.
    method: str = option(
        "shift",
        choices=ADAPT_METHODS,
        section="recipe",
        help="adabn: re-estimate the BatchNorm statistics on the site's films; shift: move the "
        "threshold to where the site's healthy and pneumonia scores sit against the training "
        "films'; adabn+shift: both; prior: move the threshold for the site's estimated "
        "prevalence alone.",
    )
    export: str = option(
        "auto",
        choices=TRAIN_EXPORTS,
        section="output",
        help="Build the adapted run's `cxr-fast export --format auto` file (none: no export).",
    )
    overwrite: bool = option(False, section="output", help="Replace an adapted run in --out.")
    device: str = device_option()
    workers: int = workers_option()

    def __post_init__(self) -> None:
        check_options(self)
