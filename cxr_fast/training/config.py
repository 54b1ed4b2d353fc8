"""The frozen configuration of a training run, as the CLI resolves it and config.json keeps it.

Every field a user sets declares its option here, once (cxr_fast/options.py): its default is
the recipe's, and ``TrainConfig(data=..., out=...)`` is the run ``cxr-fast train --data ...
--out ...`` makes. The comments say which defaults the measurements in docs/results.md chose.
This module imports no PyTorch: the command line builds `train --help` from it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING

from cxr_fast.choices import (
    ARCHITECTURES,
    THRESHOLD_POLICIES,
    TRAIN_EXPORTS,
    TRAIN_NORMALIZATIONS,
    device_option,
    loader_option,
    precision_option,
    workers_option,
)
from cxr_fast.contract import MAX_IMAGE_SIZE, MIN_CROP, MIN_IMAGE_SIZE
from cxr_fast.errors import UserInputError
from cxr_fast.options import check_options, option

if TYPE_CHECKING:
    from cxr_fast.data.augment import Augment


@dataclass(frozen=True)
class AugmentOptions:
    """The recipe's training augmentation as the options that describe it; :meth:`build` makes
    the :class:`~cxr_fast.data.augment.Augment` a :class:`TrainConfig` keeps."""

    enabled: bool = option(
        True,
        flag="--augment/--no-augment",
        section="recipe",
        help="Random rotation, zoom, shift, brightness and contrast while training.",
    )
    hflip: bool = option(
        False,
        flag="--hflip/--no-hflip",
        section="recipe",
        help="Also flip horizontally (off: the heart is on the left).",
    )
    # Augmentation ranges x2 (rotation 14 deg, zoom 16%, shift 10%, brightness/contrast 20%):
    # the one change that moved the external sample (docs/results.md); x3 and EMA/label
    # smoothing did worse there and on validation.
    aug_strength: float = option(
        2.0,
        min=0,
        section="recipe",
        help="Multiply every augmentation range (rotation, zoom, shift, brightness, contrast).",
    )
    # Aspect-ratio augmentation (Augment.stretch), r from 0.71 to 1.4: the films were squashed
    # to a square from originals of other shapes, and without it a film 15% narrower made the
    # model call many healthy films pneumonia (bench/aspect.py); with it the external sample
    # gained accuracy and ROC-AUC, while the out-of-fold ROC-AUC fell a little: the proportions
    # are predictive within train/ only (docs/results.md).
    stretch: float = option(
        0.4,
        min=0,
        section="recipe",
        help="Aspect-ratio augmentation: scale each training film's width by sqrt(r) and "
        "height by 1/sqrt(r), r drawn log-uniformly from [1/(1+S), 1+S] (0: off). Films "
        "stretched to a square from originals of another shape keep proportions that are the "
        "site's, not the disease's.",
    )
    # The zoom range (factor 1 +- zoom) when set; None: 0.08 x aug_strength.
    zoom: float | None = option(
        None,
        min=0,
        max=1,
        max_open=True,
        section="recipe",
        help="Zoom range: each training film scaled about its centre by a factor drawn "
        "uniformly from [1-Z, 1+Z], black outside.  [default: 0.08 x --aug-strength]",
    )

    def __post_init__(self) -> None:
        check_options(self)

    def build(self) -> Augment | None:
        """The Augment these options describe (None with --no-augment)."""
        from cxr_fast.data.augment import recipe_augment

        if not self.enabled:
            return None
        return recipe_augment(
            self.aug_strength,
            stretch=self.stretch,
            zoom=self.zoom,
            hflip=self.hflip,
        )


def _recipe_augment() -> Augment | None:
    return AugmentOptions().build()


def _positive_number_or(words: tuple[str, ...], value: str) -> bool:
    if value in words:
        return True
    try:
        return float(value) > 0
    except ValueError:
        return False


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run (paths are strings so the JSON is plain)."""

    data: str = option(
        exists=True,
        section="data",
        help="Dataset folder (Kaggle layout). Training uses train/; validation is val/ when it "
        "holds >= 100 images, else a patient-level split of train/.",
    )
    out: str = option(
        required=True,
        file_okay=False,
        section="output",
        help="Run folder to create (or to continue with --resume).",
    )
    # resnet18 from scratch at 128 px: a better validation and external-sample ROC-AUC than the
    # cnn at 128-224 px, and at 128 px it trains in about the time the cnn takes at 224.
    arch: str = option(
        "resnet18",
        choices=ARCHITECTURES,
        section="model",
        help="Model architecture (one grey channel in, one logit out).",
    )
    epochs: int = option(
        8,
        min=1,
        section="recipe",
        default_text="8; with --resume: the run's own",
        help="Epochs to train.",
    )
    batch_size: int = option(32, min=2, section="recipe", help="Images per training step.")
    lr: float = option(
        1e-3, min=0, min_open=True, section="recipe", help="Peak learning rate (AdamW)."
    )
    weight_decay: float = option(1e-4, min=0, section="recipe", help="AdamW weight decay.")
    image_size: int = option(
        128,
        min=MIN_IMAGE_SIZE,
        max=MAX_IMAGE_SIZE,
        section="model",
        help="Square input size in pixels (stored in the contract).",
    )
    loader: str = loader_option()
    device: str = device_option()
    precision: str = precision_option()
    seed: int = option(
        0, section="recipe", help="Seed for the split, initialisation, shuffling and augmentation."
    )
    val_fraction: float = option(
        0.15,
        min=0,
        max=1,
        min_open=True,
        max_open=True,
        section="data",
        help="Share of each class's patients held out for validation.",
    )
    patience: int = option(
        5,
        min=1,
        section="recipe",
        help="Stop after this many epochs without a better validation ROC-AUC.",
    )
    warmup_epochs: float = option(
        1.0, min=0, section="recipe", help="Linear learning-rate warm-up before the cosine decay."
    )
    clip_grad: float = option(
        1.0, min=0, section="recipe", help="Clip the gradient norm to this (0: off)."
    )
    pos_weight: str = option(
        "auto",
        section="recipe",
        help="BCE weight of PNEUMONIA: auto balances the classes (normal/pneumonia count), "
        "none, or a number.",
    )
    target_sensitivity: float | None = option(
        None,
        min=0,
        max=1,
        min_open=True,
        section="recipe",
        help="Choose the decision threshold that keeps validation sensitivity at this level "
        "(e.g. 0.95) instead of the --threshold-policy rule (margin by default).",
    )
    pretrained: str | None = option(
        None,
        section="model",
        help="ImageNet weights: a file, or 'imagenet' for torchvision's (downloaded once into "
        "the torch hub cache, hash-checked; offline, pass a file).",
    )
    workers: int = workers_option(
        help="DALI threads or DataLoader worker processes (under torchrun: the host's, shared "
        "by its processes)."
    )
    sync_bn: bool = option(
        False,
        section="run",
        help="Under torchrun on GPUs: SyncBatchNorm (batch statistics over all processes).",
    )
    skip_bad: bool = option(
        False,
        section="data",
        help="Train without the files that fail the pre-flight decode check (they are listed "
        "in config.json) instead of refusing to start.",
    )
    # An exponential moving average of the weights, evaluated and saved in place of the raw
    # weights; EMA and label smoothing did worse on the sample and on validation (see
    # aug_strength), so both are off.
    ema_decay: float = option(
        0.0,
        min=0,
        max=1,
        max_open=True,
        section="recipe",
        help="Exponential moving average of the weights, validated and saved instead of the "
        "raw weights (0: off).",
    )
    label_smoothing: float = option(
        0.0,
        min=0,
        max=1,
        max_open=True,
        section="recipe",
        help="Pull the 0/1 targets towards 0.5 by this fraction.",
    )
    mixup: float = option(
        0.0, min=0, section="recipe", help="Mixup Beta(a, a) concentration (0: off)."
    )
    # probability of one random erased rectangle per image
    erase: float = option(
        0.0,
        min=0,
        max=1,
        section="recipe",
        help="Random erasing: with this probability, blank one random rectangle (2-25% of the "
        "image) of each training image, so no single region (a marker, a border) decides.",
    )
    normalize: str = option(
        "none",
        choices=TRAIN_NORMALIZATIONS,
        section="model",
        help="per-image: standardise every image by its own mean and standard deviation. Part "
        "of the preprocessing contract, so scoring does the same.",
    )
    # central fraction of the film kept (in the contract)
    crop: float = option(
        1.0,
        min=MIN_CROP,
        max=1,
        section="model",
        help="Keep the central fraction of every film's width and height before resizing (1: "
        "the whole film), so borders, collimation and burnt-in markers are out of view. Part "
        "of the preprocessing contract, so scoring does the same.",
    )
    # The middle of the near-optimal J interval, in logit space (docs/results.md).
    threshold_policy: str = option(
        "margin",
        choices=THRESHOLD_POLICIES,
        section="recipe",
        help="margin: the middle (in logit space) of the thresholds whose Youden J is within "
        "one standard error of the best; youden: the sharpest maximum.",
    )
    # Cross-validation: ``folds`` > 1 trains that many members on patient-level folds into one
    # ensemble run folder; ``fold`` is set on each member's own configuration (0-based). Five
    # folds of 8 epochs: an ensemble and a threshold chosen on every training film's out-of-fold
    # prediction instead of one small split, within the time budget on 2 CPU cores; over three
    # seeds it held the site's threshold a little better than 3 x 12 (docs/results.md).
    folds: int = option(
        5,
        min=1,
        section="recipe",
        help="K > 1: train K members on patient-level folds into one ensemble run (mean of "
        "logits), with out-of-fold predictions for every training image and the threshold "
        "chosen on them.",
    )
    fold: int | None = None
    # The host's best verified export, built when training ends: without it the plain
    # `score --model RUN` runs the eager model, much slower (docs/benchmarks.md).
    export: str = option(
        "auto",
        choices=TRAIN_EXPORTS,
        section="output",
        help="When training ends, build what `cxr-fast export RUN --format auto` builds (int8 "
        "on a CPU, TensorRT on CUDA), verified against the model, so that `score --model RUN` "
        "uses it by itself; a failed export is a warning. none: no export.",
    )
    # Fit the input gate on the training films when training ends (cxr_fast/gate/): off only
    # for a run that will score films unlike its training films on purpose (tests on
    # synthetic films).
    gate: bool = option(
        True,
        flag="--gate/--no-gate",
        section="output",
        help="When training ends, fit the input gate on the training films (stored in model.pt "
        "and every export): films unlike them get status not_cxr and no verdict. --no-gate: "
        "only the DICOM header and pixel checks (for a run that scores films unlike its "
        "training films on purpose, such as one trained on synthetic films).",
    )
    augment: Augment | None = option(factory=_recipe_augment, help="", cli=False)

    def __post_init__(self) -> None:
        if self.threshold_policy not in THRESHOLD_POLICIES:
            # A run saved before the shift policy was removed still scores and evaluates with
            # its stored threshold; only training it further is refused.
            raise UserInputError(
                f"threshold policy {self.threshold_policy!r} is no longer offered (one of "
                f"{', '.join(THRESHOLD_POLICIES)}): train a new run to continue with this data"
            )
        check_options(self)
        if self.fold is not None and not 0 <= self.fold < self.folds:
            raise UserInputError(f"fold must be in [0, {self.folds}), got {self.fold}")
        if not _positive_number_or(("auto", "none"), self.pos_weight):
            raise UserInputError(
                f"--pos-weight must be auto, none or a positive number, got {self.pos_weight!r}"
            )

    def to_dict(self) -> dict:
        """Plain JSON-safe dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """Inverse of :meth:`to_dict` (unknown keys are ignored, for forward compatibility)."""
        from cxr_fast.data.augment import Augment

        known = {f.name for f in fields(cls)}
        # A config.json written before these fields existed was one model and no export.
        values = {"folds": 1, "export": "none"}
        values.update((k, v) for k, v in data.items() if k in known)
        if isinstance(values.get("augment"), dict):
            values["augment"] = Augment.from_dict(values["augment"])
        return cls(**values)
