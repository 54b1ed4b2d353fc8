"""The names and defaults users type on the command line, each defined once.

The modules that implement them import them from here, and the config dataclasses declare the
options several stages share with the ``*_option()`` helpers at the end. This module imports
nothing heavy on purpose: `cxr-fast --help` (and every option check) must not wait for PyTorch
to load.
"""

from __future__ import annotations

import os

from cxr_fast.options import option

LOADERS = ("auto", "dali", "nvjpeg", "torch")
ARCHITECTURES = (
    "cnn",
    "resnet18",
    "resnet50",
    "efficientnet_b0",
    "densenet121",
)
PRECISIONS = ("auto", "fp32", "amp-bf16", "amp-fp16")
EXPORT_FORMATS = ("torchscript", "pt2", "tensorrt", "onnx")
EXPORT_PRECISIONS = ("fp32", "fp16", "int8")
BACKENDS = ("auto", "eager", *EXPORT_FORMATS)
# What `train` builds into RUN/export/ when it ends: auto, the export `export --format auto`
# builds (the one `score --backend auto` then picks by itself); none.
TRAIN_EXPORTS = ("auto", "none")
CAM_METHODS = ("gradcam", "gradcam++")
# Policies that read one ROC curve: the validation (or out-of-fold) one, or a site sample's.
ROC_POLICIES = ("margin", "youden")
# The policies training chooses its threshold with (the "shift" policy was measured level with
# margin and removed: docs/results.md).
THRESHOLD_POLICIES = ROC_POLICIES
# Site calibration also offers "bayes": with Platt-scaled probabilities that mean what they say at
# the site, calling PNEUMONIA at P >= 0.5 makes the fewest expected errors at its prevalence.
CALIBRATION_POLICIES = ("bayes", *ROC_POLICIES)
# Films of each class a site sample needs before `calibrate` fits on it (--min-per-class):
# with fewer, one film moves that class's sensitivity or specificity by more than 5 points, and
# a sample with one or a few pneumonia films can fit a threshold that calls none of them.
MIN_CALIBRATION_PER_CLASS = 20
# `adapt`: what it re-estimates on a site's unlabelled films (cxr_fast/adapt/). adabn: the
# BatchNorm statistics; shift: the threshold, from where the site's healthy and pneumonia scores
# sit against the training films' out-of-fold ones; prior: the threshold, from the site's
# estimated prevalence alone.
ADAPT_METHODS = ("adabn+shift", "adabn", "shift", "prior")
# Fewer unlabelled films than this estimate neither a network's normalisation statistics nor a
# two-class mixture well enough to move a threshold by.
MIN_ADAPT_FILMS = 100
# "per-image": after scaling, every image is standardised to zero mean and unit variance over its
# own pixels, so exposure and contrast stop being cues. "equalize": every resized uint8 image is
# histogram-equalised (DALI's fn.equalize, the OpenCV formula) before scaling, so any monotone
# grey curve (gamma, window/level, a scanner's LUT) maps to the same input.
NORMALIZATIONS = ("none", "per-image", "equalize")
# What `train --normalize` offers: equalisation was measured and not adopted (docs/results.md),
# but runs trained with it keep scoring, so the contract still reads it.
TRAIN_NORMALIZATIONS = ("none", "per-image")


# DataLoader worker processes (or DALI threads, or decoding processes) of every stage that
# loads images, when not given: all cores. The CLI's --workers shows it as "all cores".
DEFAULT_WORKERS = os.cpu_count() or 1

# Images per batch of `evaluate` and of the batch `export` traces and checks with.
EVAL_BATCH_SIZE = 64
EXPORT_BATCH_SIZE = 32
# Images per model batch when `score --batch-size` is not given. On the CPU small batches stay
# in cache: the cnn ran 1,116 (int8) and 355 (TorchScript fp32) images/s at 16 against 846 and
# 216 at 64, and workers hand over their first batch sooner (docs/benchmarks.md). GPUs want
# big batches.
SCORE_BATCH_SIZE = {"cpu": 16, "cuda": 64}
# A staged Parquet chunk is written every ROWS_PER_CHUNK rows or every CHUNK_SECONDS seconds,
# whichever comes first: what `score --resume` keeps after a kill. The time bound keeps a slow
# run (a CPU, an export on a small archive) from losing minutes of work; one small file every
# 15 s costs nothing next to the scoring itself.
ROWS_PER_CHUNK = 8192
CHUNK_SECONDS = 15.0

# DICOM Modality values the input gate accepts: computed and digital radiography
# (`--modalities` widens it; cxr_fast/gate/metadata.py).
PROJECTION_MODALITIES = ("CR", "DX")

# Bootstrap resamples behind every 95% interval (evaluate, calibrate, the report).
BOOTSTRAP = 1000
# The Grad-CAM method of every stage that draws overlays, when not given.
DEFAULT_CAM_METHOD = CAM_METHODS[0]


def device_option(section: str = "run"):
    """``--device``: the same default (auto) and words in every stage."""
    return option("auto", help="auto (CUDA when present), cpu, cuda or cuda:N.", section=section)


def precision_option():
    """``--precision`` of every stage that runs a model."""
    return option(
        "auto",
        choices=PRECISIONS,
        section="model",
        help="auto: bf16 autocast on CPUs with native bf16 (AVX512-BF16/AMX) and on CUDA where "
        "supported (else fp16 with GradScaler when training), fp32 on other CPUs.",
    )


def loader_option():
    """``--loader`` of every stage that decodes images."""
    return option(
        "auto",
        choices=LOADERS,
        section="data",
        help="dali: NVIDIA DALI pipeline; nvjpeg: torchvision's decode_jpeg (nvJPEG on CUDA) "
        "and the contract on the device; torch: PIL + DataLoader; auto: DALI on CUDA (nvjpeg "
        "without DALI), the faster measured one on CPU.",
    )


def workers_option(minimum: int = 0, help: str = "DALI threads or DataLoader worker processes."):
    """``--workers``: all cores unless given."""
    return option(DEFAULT_WORKERS, min=minimum, default_text="all cores", section="data", help=help)


def tta_option():
    """``--tta/--no-tta``: three views per film, three times the model's cost."""
    return option(
        False,
        flag="--tta/--no-tta",
        section="model",
        help="Test-time augmentation: average the logits of the film, a 90% zoom-in and a 90% "
        "zoom-out (three forward passes: three times the model's cost).",
    )


def accept_ood_option():
    """``--accept-ood``: give a verdict even for films the input gate refuses."""
    return option(
        False,
        section="model",
        help="Give a verdict even for films the input gate judges not to be a frontal chest "
        "X-ray (another modality or body part, a photo, a page, a blank): scored, with the "
        "gate's reason in warnings.  [default: refused, status not_cxr, no verdict]",
    )


def cam_method_option(help: str, name: str | None = None):
    """The Grad-CAM method: gradcam unless given."""
    return option(DEFAULT_CAM_METHOD, choices=CAM_METHODS, section="output", help=help, name=name)


def cam_layer_option(help: str, name: str | None = None):
    """The Grad-CAM target layer: the architecture's last convolutional block unless given."""
    return option(None, section="output", help=help, name=name)
