"""The ``cxr-fast`` command line: parses options and calls the library, nothing more."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import click

from cxr_fast import __version__
from cxr_fast.choices import (
    ARCHITECTURES,
    DEFAULT_WORKERS,
    LOADERS,
    NORMALIZATIONS,
    PRECISIONS,
    PROJECTION_MODALITIES,
    THRESHOLD_POLICIES,
    TRAIN_EXPORTS,
    RecipeDefaults,
)
from cxr_fast.configs import (
    CalibrateConfig,
    CheckConfig,
    EvalConfig,
    OodFitConfig,
    ReportConfig,
    StreamConfig,
    SynthConfig,
    TuneConfig,
)
from cxr_fast.contract import MIN_CROP
from cxr_fast.errors import CxrFastError, Interrupted
from cxr_fast.explain.stage import ExplainConfig
from cxr_fast.export.stage import ExportConfig
from cxr_fast.options import SectionOption, StageCommand, config_from_cli, config_options
from cxr_fast.progress import Progress, Working
from cxr_fast.scoring.score_config import ScoreConfig
from cxr_fast.serve.stage import ServeConfig
from cxr_fast.text import plural, rate

EXISTING = click.Path(exists=True, path_type=Path)
LOADER_OPTION = click.option(
    "--loader",
    type=click.Choice(LOADERS),
    default="auto",
    show_default=True,
    help="dali: NVIDIA DALI pipeline; torch: PIL + DataLoader; auto: DALI on CUDA, the faster "
    "measured one on CPU.",
)
DEVICE_OPTION = click.option(
    "--device",
    default="auto",
    show_default=True,
    help="auto (CUDA when present), cpu, cuda or cuda:N.",
)

PRECISION_OPTION = click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default="auto",
    show_default=True,
    help="auto: bf16 autocast on CPUs with native bf16 (AVX512-BF16/AMX) and on CUDA where "
    "supported (else fp16 with GradScaler when training), fp32 on other CPUs.",
)


def workers_option(minimum: int):
    """``--workers``: DALI threads or DataLoader processes (0: load in the main process)."""
    return click.option(
        "--workers",
        type=click.IntRange(min=minimum),
        default=DEFAULT_WORKERS,
        show_default="all cores",
        help="DALI threads or DataLoader worker processes.",
    )


TTA_OPTION = click.option(
    "--tta/--no-tta",
    default=False,
    show_default=True,
    help="Test-time augmentation: average the logits of the film, a 90% zoom-in and a 90% "
    "zoom-out (three forward passes: three times the model's cost).",
)

ACCEPT_OOD_OPTION = click.option(
    "--accept-ood",
    is_flag=True,
    help="Give a verdict even for films the input gate judges not to be a frontal chest "
    "X-ray (another modality or body part, a photo, a page, a blank): scored, with the "
    "gate's reason in warnings.  [default: refused, status not_cxr, no verdict]",
)
MODALITIES_OPTION = click.option(
    "--modalities",
    default=",".join(PROJECTION_MODALITIES),
    show_default=True,
    metavar="M1,M2",
    help="DICOM Modality values the input gate accepts (other modalities get status not_cxr).",
)


def parse_modalities(text: str) -> tuple[str, ...]:
    """``CR,DX`` -> ("CR", "DX"); an empty list is a mistake."""
    found = tuple(part.strip().upper() for part in text.split(",") if part.strip())
    if not found:
        raise click.BadParameter(
            "give at least one modality, e.g. CR,DX", param_hint="--modalities"
        )
    return found


class UserError(CxrFastError):
    """A mistake in what the user asked for, found by the CLI itself: one line, exit code 2."""


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (a decoder's multi-line text included)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _echo_summary(result) -> None:
    """Print a stage result's summary (ranks other than 0 and quiet endings have none)."""
    text = result.summary()
    if text:
        click.echo(text)


def _bar(total: int, desc: str, unit: str = "img") -> Progress:
    # A bar on a terminal; in logs and pipes a plain line every LOG_INTERVAL_S seconds.
    return Progress(desc, total, unit)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="cxr-fast")
def cli() -> None:
    """Train and serve chest X-ray classifiers (NORMAL vs PNEUMONIA) at high throughput.

    Data folders in the Kaggle layout ({train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg) carry labels,
    at whatever level you point; any other tree is an unlabeled archive.
    """


@cli.group()
def data() -> None:
    """Make, inspect and stream datasets."""


@data.command("synth", cls=StageCommand)
@config_options(SynthConfig)
def data_synth(**values) -> None:
    """Write a synthetic Kaggle-layout dataset of chest-X-ray-like JPEGs to OUT.

    OUT/{train,test}/{NORMAL,PNEUMONIA}/*.jpeg with Kaggle-style names (person12_virus_3.jpeg,
    IM-0042-0001.jpeg) so patient ids parse; PNEUMONIA images add patchy lung opacities.
    """
    from cxr_fast.data.synth import run_synth

    config = config_from_cli(SynthConfig, values)
    with _bar(config.n, "synth") as bar:
        paths = run_synth(config, progress=bar.update)
    click.echo(f"wrote {plural(len(paths), 'image')} to {config.out}")


@data.command("check", cls=StageCommand)
@config_options(CheckConfig)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    cls=SectionOption,
    section="output",
    help="Print the report as JSON instead of text.",
)
def data_check(as_json: bool, **values) -> None:
    """Report counts per split and class, patients, leakage between splits, image sizes and
    unreadable files or folders under ROOT. Exits 1 when it finds leakage, unreadable files or
    folders, or no images."""
    from cxr_fast.data.check import check_dataset, format_report, none_readable, nothing_to_check

    config = config_from_cli(CheckConfig, values)
    with _bar(0, "decode") as bar:
        report = check_dataset(
            config.root, sample=config.sample, workers=config.workers, progress=bar.update
        )
    empty = nothing_to_check(report)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    elif not empty:
        click.echo(format_report(report))
    hint = empty or none_readable(report)
    if hint:
        click.echo(f"cxr-fast: {hint}", err=True)
    if report.has_problems or empty:
        sys.exit(1)  # the check ran and found a problem in the data (see the README's exit codes)


@data.command("stream", cls=StageCommand)
@config_options(StreamConfig)
def data_stream(**values) -> None:
    """Decode and preprocess every image under ROOT once and print images/s."""
    from cxr_fast.data.throughput import plan_stream, stream

    config = config_from_cli(StreamConfig, values)
    count, backend, build = plan_stream(config)
    with _bar(count, f"stream ({backend})") as bar:
        stats = stream(build, progress=bar.update)
    click.echo(
        f"{plural(stats.images, 'image')} in {stats.seconds:.2f} s: "
        f"{rate(stats.images, stats.seconds)} ({backend}, {plural(config.workers, 'worker')}, "
        f"batch {config.batch_size}, {config.image_size} px)"
    )


@cli.command("train")
@click.option(
    "--data",
    type=EXISTING,
    default=None,
    help="Dataset folder (Kaggle layout). Training uses train/; validation is val/ "
    "when it holds >= 100 images, else a patient-level split of train/.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Run folder to create (or to continue with --resume).",
)
@click.option(
    "--arch",
    type=click.Choice(ARCHITECTURES),
    default=RecipeDefaults.arch,
    show_default=True,
    help="Model architecture (one grey channel in, one logit out).",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=None,
    help=f"Epochs to train.  [default: {RecipeDefaults.epochs}; with --resume: the run's own]",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=2),
    default=RecipeDefaults.batch_size,
    show_default=True,
    help="Images per training step.",
)
@click.option(
    "--lr",
    type=click.FloatRange(min=0, min_open=True),
    default=RecipeDefaults.lr,
    show_default=True,
    help="Peak learning rate (AdamW).",
)
@click.option(
    "--weight-decay",
    type=click.FloatRange(min=0),
    default=RecipeDefaults.weight_decay,
    show_default=True,
    help="AdamW weight decay.",
)
@click.option(
    "--image-size",
    type=click.IntRange(min=32, max=4096),
    default=RecipeDefaults.image_size,
    show_default=True,
    help="Square input size in pixels (stored in the contract).",
)
@LOADER_OPTION
@DEVICE_OPTION
@PRECISION_OPTION
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed for the split, initialisation, shuffling and augmentation.",
)
@click.option(
    "--val-fraction",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=RecipeDefaults.val_fraction,
    show_default=True,
    help="Share of each class's patients held out for validation.",
)
@click.option(
    "--patience",
    type=click.IntRange(min=1),
    default=RecipeDefaults.patience,
    show_default=True,
    help="Stop after this many epochs without a better validation ROC-AUC.",
)
@click.option(
    "--warmup-epochs",
    type=click.FloatRange(min=0),
    default=RecipeDefaults.warmup_epochs,
    show_default=True,
    help="Linear learning-rate warm-up before the cosine decay.",
)
@click.option(
    "--clip-grad",
    type=click.FloatRange(min=0),
    default=RecipeDefaults.clip_grad,
    show_default=True,
    help="Clip the gradient norm to this (0: off).",
)
@click.option(
    "--pos-weight",
    default="auto",
    show_default=True,
    help="BCE weight of PNEUMONIA: auto balances the classes (normal/pneumonia "
    "count), none, or a number.",
)
@click.option(
    "--target-sensitivity",
    type=click.FloatRange(0, 1, min_open=True),
    default=None,
    help="Choose the decision threshold that keeps validation sensitivity at this "
    "level (e.g. 0.95) instead of the --threshold-policy rule (margin by default).",
)
@click.option(
    "--pretrained",
    default=None,
    help="ImageNet weights: a file, or 'imagenet' for torchvision's (downloaded once into the "
    "torch hub cache, hash-checked; offline, pass a file).",
)
@workers_option(minimum=0)
@click.option(
    "--augment/--no-augment",
    default=True,
    show_default=True,
    help="Random rotation, zoom, shift, brightness and contrast while training.",
)
@click.option(
    "--hflip/--no-hflip",
    default=False,
    show_default=True,
    help="Also flip horizontally (off: the heart is on the left).",
)
@click.option(
    "--aug-strength",
    type=click.FloatRange(min=0),
    default=RecipeDefaults.aug_strength,
    show_default=True,
    help="Multiply every augmentation range (rotation, zoom, shift, brightness, contrast).",
)
@click.option(
    "--stretch",
    type=click.FloatRange(min=0),
    default=RecipeDefaults.stretch,
    show_default=True,
    help="Aspect-ratio augmentation: scale each training film's width by sqrt(r) and height "
    "by 1/sqrt(r), r drawn log-uniformly from [1/(1+S), 1+S] (0: off). Films stretched to a "
    "square from originals of another shape keep proportions that are the site's, not the "
    "disease's.",
)
@click.option(
    "--zoom",
    type=click.FloatRange(0, 1, max_open=True),
    default=RecipeDefaults.zoom,
    help="Zoom range: each training film scaled about its centre by a factor drawn uniformly "
    "from [1-Z, 1+Z], black outside.  [default: 0.08 x --aug-strength]",
)
@click.option(
    "--site-aug",
    type=click.FloatRange(min=0),
    default=RecipeDefaults.site_aug,
    show_default=True,
    help="Acquisition augmentation: blur up to sigma 1 px, gamma 0.8-1.25 and grain up to 4 "
    "grey levels, times this (0: off). Teaches the model that sharpness, exposure curve and "
    "detector noise are the site's, not the disease's.",
)
@click.option(
    "--ema-decay",
    type=click.FloatRange(0, 1, max_open=True),
    default=RecipeDefaults.ema_decay,
    show_default=True,
    help="Exponential moving average of the weights, validated and saved instead of the raw "
    "weights (0: off).",
)
@click.option(
    "--label-smoothing",
    type=click.FloatRange(0, 1, max_open=True),
    default=RecipeDefaults.label_smoothing,
    show_default=True,
    help="Pull the 0/1 targets towards 0.5 by this fraction.",
)
@click.option(
    "--mixup",
    type=click.FloatRange(min=0),
    default=RecipeDefaults.mixup,
    show_default=True,
    help="Mixup Beta(a, a) concentration (0: off).",
)
@click.option(
    "--erase",
    type=click.FloatRange(0, 1),
    default=RecipeDefaults.erase,
    show_default=True,
    help="Random erasing: with this probability, blank one random rectangle (2-25% of the "
    "image) of each training image, so no single region (a marker, a border) decides.",
)
@click.option(
    "--normalize",
    type=click.Choice(NORMALIZATIONS),
    default=RecipeDefaults.normalize,
    show_default=True,
    help="per-image: standardise every image by its own mean and standard deviation; "
    "equalize: histogram-equalise every resized image (any monotone grey curve gives the same "
    "input). Part of the preprocessing contract, so scoring does the same.",
)
@click.option(
    "--normal-blur",
    type=click.FloatRange(min=0),
    default=RecipeDefaults.normal_blur,
    show_default=True,
    help="Blur every NORMAL training film by a Gaussian of sigma up to this many input pixels "
    "(0: off). The training normals are sharper than the pneumonia films, which a model can "
    "learn as a cue that another site's softer normals do not share.",
)
@click.option(
    "--crop",
    type=click.FloatRange(MIN_CROP, 1),
    default=RecipeDefaults.crop,
    show_default=True,
    help="Keep the central fraction of every film's width and height before resizing (1: the "
    "whole film), so borders, collimation and burnt-in markers are out of view. Part of the "
    "preprocessing contract, so scoring does the same.",
)
@click.option(
    "--threshold-policy",
    type=click.Choice(THRESHOLD_POLICIES),
    default=RecipeDefaults.threshold_policy,
    show_default=True,
    help="margin: the middle (in logit space) of the thresholds whose Youden J is within one "
    "standard error of the best; youden: the sharpest maximum; shift: the margin rule on the "
    "worst J over the validation (or out-of-fold) films as they are and re-scored blurred (1 "
    "and 2 px), under gamma 0.8 and 1.25 and with grain (one extra scoring pass when training "
    "ends).",
)
@click.option(
    "--folds",
    type=click.IntRange(min=1),
    default=RecipeDefaults.folds,
    show_default=True,
    help="K > 1: train K members on patient-level folds into one ensemble run (mean of "
    "logits), with out-of-fold predictions for every training image and the threshold chosen "
    "on them.",
)
@click.option(
    "--export",
    type=click.Choice(TRAIN_EXPORTS),
    default=RecipeDefaults.export,
    show_default=True,
    help="When training ends, build what `cxr-fast export RUN --format auto` builds (int8 on a "
    "CPU, TensorRT on CUDA), verified against the model, so that `score --model RUN` uses it by "
    "itself; a failed export is a warning. none: no export.",
)
@click.option(
    "--gate/--no-gate",
    default=True,
    show_default=True,
    help="When training ends, fit the input gate on the training films (stored in model.pt and "
    "every export): films unlike them get status not_cxr and no verdict. --no-gate: only the "
    "DICOM header and pixel checks (for a run that scores films unlike its training films on "
    "purpose, such as one trained on synthetic films).",
)
@click.option(
    "--skip-bad",
    is_flag=True,
    help="Train without the files that fail the pre-flight decode check (they are listed in "
    "config.json) instead of refusing to start.",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the run in --out from its last finished epoch, with its saved configuration "
    "(refused when the data changed since it started).",
)
@click.option(
    "--sync-bn",
    is_flag=True,
    help="Under torchrun on GPUs: SyncBatchNorm (batch statistics over all processes).",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="A best.json from `cxr-fast tune`: its values replace the defaults of the options it "
    "names (options given on the command line still win).",
)
@click.option("--dry-run", is_flag=True, help="Print the resolved configuration and exit.")
def train(
    data,
    out,
    epochs,
    resume,
    dry_run,
    augment,
    hflip,
    aug_strength,
    stretch,
    zoom,
    site_aug,
    config_file,
    **options,
) -> None:
    """Train a NORMAL/PNEUMONIA classifier into a run folder.

    The folder gets model.pt (best validation ROC-AUC, with its preprocessing contract and
    decision threshold), config.json, metrics.json and train_log.jsonl; with --folds K the
    folder holds the ensemble and out-of-fold metrics, and each member's train_log.jsonl is in
    members/fold-1/ to fold-K/.

    Under torchrun (`torchrun --nproc-per-node N -m cxr_fast train ...`) it trains with
    DistributedDataParallel (NCCL on GPUs, gloo on CPUs); --batch-size is per process and only
    rank 0 writes the run folder. See docs/distributed.md.
    """
    from cxr_fast.data.augment import recipe_augment
    from cxr_fast.training.config import TrainConfig
    from cxr_fast.training.folds import describe_folds, folds_under_torchrun
    from cxr_fast.training.trainer import plan, resume_config, run_train

    if config_file is not None:
        epochs, aug_strength = _apply_best(config_file, options, epochs, aug_strength)
    if resume:
        export = options["export"] if _given("export") else None
        config = resume_config(out, epochs, export, data=data)
    else:
        if data is None:
            raise UserError("--data is required (unless --resume)")
        config = TrainConfig(
            data=str(data),
            out=str(out),
            epochs=epochs or RecipeDefaults.epochs,
            augment=recipe_augment(
                aug_strength, stretch=stretch, site_aug=site_aug, zoom=zoom, hflip=hflip
            )
            if augment
            else None,
            **options,
        )
    config = folds_under_torchrun(config, explicit=_given("folds"), log=click.echo)
    if dry_run:
        # An ensemble's plan lists every member's fold: the counts its run will log.
        described = describe_folds(config) if config.folds > 1 else plan(config).describe()
        click.echo(json.dumps(described, indent=2))
        return
    _echo_summary(run_train(config, resume=resume, log=click.echo))


def _given(name: str) -> bool:
    """Whether option ``name`` was given (on the command line or by the environment)."""
    from click.core import ParameterSource

    source = click.get_current_context().get_parameter_source(name)
    return source is not None and source != ParameterSource.DEFAULT


def _apply_best(path: Path, options: dict, epochs, aug_strength):
    """Fill the train options still at their defaults from a tune best.json."""
    from cxr_fast.tune import read_best

    best = read_best(path)
    for name, value in best.items():
        if _given(name):
            continue
        if name == "epochs":
            epochs = value
        elif name == "aug_strength":
            aug_strength = value
        else:
            options[name] = value
    return epochs, aug_strength


@cli.command("tune", cls=StageCommand)
@config_options(TuneConfig)
def tune(**values) -> None:
    """Search learning rate, weight decay, batch size, augmentation strength, mixup, EMA,
    label smoothing, architecture and image size with Optuna (TPE sampler, median pruner on
    the per-epoch validation ROC-AUC).

    Running it again continues the study. Writes OUT/best.json (use it with
    `cxr-fast train --config OUT/best.json`), OUT/history.png and OUT/importance.png.

    Its defaults screen cheaply, which is why they differ from train's: one fold, 8 epochs and
    the small cnn per trial, where train defaults to 3 folds, 12 epochs and resnet18. best.json
    carries only the searched options (architecture and image size included, since the other
    values were tuned for them); train then uses its own epochs and folds unless given.
    """
    from cxr_fast.tune import run_tune

    result = run_tune(config_from_cli(TuneConfig, values), log=click.echo)
    click.echo(
        f"best ROC-AUC {result.best_value:.4f} after {plural(result.trials, 'trial')}: "
        + json.dumps(result.best_params)
    )
    click.echo(f"best options: {result.best_file}  (cxr-fast train --config {result.best_file})")
    for path in result.plots:
        click.echo(f"plot: {path}")


@cli.command("evaluate", cls=StageCommand)
@config_options(EvalConfig)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    cls=SectionOption,
    section="output",
    help="Print metrics as JSON instead of a table.",
)
def evaluate(as_json: bool, **values) -> None:
    """Evaluate a trained RUN on a labelled folder: accuracy, precision, sensitivity,
    specificity, F1, ROC-AUC, PR-AUC, Brier score and confusion matrix, with 95% bootstrap
    intervals, plus ROC, PR, calibration and confusion-matrix plots. Films the input gate
    judges not to be chest X-rays are left out and counted (--accept-ood keeps them)."""
    from cxr_fast.evaluate import run_evaluate

    config = config_from_cli(EvalConfig, values)
    with _bar(0, "evaluate") as bar:
        result = run_evaluate(config, progress=bar.update)
    warning = result.warning()
    if warning:
        click.echo(f"warning: {warning}", err=True)
    click.echo(result.summary(as_json))


@cli.command("calibrate", cls=StageCommand)
@config_options(CalibrateConfig)
def calibrate(**values) -> None:
    """Calibrate RUN for a deployment site on a small labelled sample from that site.

    Platt scaling fits a temperature and a bias, so that P(PNEUMONIA) = sigmoid(logit / T + b)
    means what it says at the site, with a weak prior toward the run as trained
    (--prior-strength); the decision threshold is then chosen on those probabilities
    (--threshold-policy, or --target-sensitivity). A sample with fewer than --min-per-class
    films of either class is refused, and a warning says when the calibrated run's sensitivity
    on the sample falls more than 0.05 below the run as trained.

    Writes a new run folder that every stage takes like the original; its metrics.json holds
    the sample's metrics before and after, with 95% bootstrap intervals. The numbers after are
    in-sample (fitted on these images), so optimistic: --cross-fit 10 adds an honest estimate,
    cross-fitted on 10 patient folds.
    """
    from cxr_fast.calibrate import run_calibrate
    from cxr_fast.leakage import leakage_warning
    from cxr_fast.metrics import format_metrics

    config = config_from_cli(CalibrateConfig, values)
    data = config.data
    with _bar(0, "calibrate") as bar:
        result = run_calibrate(
            config.run,
            data,
            config.out,
            target_sensitivity=config.target_sensitivity,
            policy=config.threshold_policy,
            prior=config.prior_strength,
            device=config.device,
            workers=config.workers,
            overwrite=config.overwrite,
            min_per_class=config.min_per_class,
            cross_fit_folds=config.cross_fit,
            progress=bar.update,
            on_total=bar.set_total,
        )
    warning = leakage_warning(result.leakage, str(data))
    for line in (warning, *result.warnings):
        if line:
            click.echo(f"warning: {line}", err=True)
    click.echo(f"site sample: {plural(result.n, 'image')} under {data}")
    click.echo(
        f"temperature {result.temperature:.3f}, bias {result.bias:+.3f}, threshold "
        f"{result.before['threshold']:.4f} -> {result.threshold:.4f}"
    )
    for name, metrics in (
        ("before (the run as trained)", result.before),
        ("after (fitted on this sample)", result.after),
    ):
        click.echo(f"\n{name}:")
        click.echo(format_metrics(metrics))
    if result.cross_fit is not None:
        click.echo(f"\n{_cross_fit_line(result.cross_fit)}")
    click.echo(f"\ncalibrated run: {result.out}")


def _cross_fit_line(crossed: dict) -> str:
    """One line: the cross-fitted accuracy (95% CI), sensitivity and specificity."""
    ci = crossed["accuracy_ci95"]
    interval = f" ({ci[0]:.3f}-{ci[1]:.3f})" if ci else ""
    return (
        f"cross-fitted ({crossed['folds']} patient folds, each predicted by a calibration "
        f"fitted without it): accuracy {crossed['accuracy']:.3f}{interval}, "
        f"sensitivity {crossed['sensitivity']:.3f}, specificity {crossed['specificity']:.3f}"
    )


@cli.command("ood-fit", cls=StageCommand)
@config_options(OodFitConfig)
def ood_fit(**values) -> None:
    """Fit RUN's input gate on its training films, for a run trained before the gate (training
    fits it by itself). The out-of-distribution threshold is set so that at most 0.5% of the
    films' out-of-fold views exceed it. Rewrites RUN/model.pt (same weights, new checksum) and
    the sidecars of the exports in RUN/export/ made from it, so they gate alike."""
    from cxr_fast.gate.store import fit_and_store

    config = config_from_cli(OodFitConfig, values)
    with _bar(0, "ood-fit") as bar:
        fit = fit_and_store(
            config.run,
            config.data,
            workers=config.workers,
            progress=bar.update,
            on_start=bar.set_total,
        )
    click.echo(fit.summary())


@cli.command("export", cls=StageCommand)
@config_options(ExportConfig)
def export(**values) -> None:
    """Export a trained RUN for deployment, with a JSON sidecar (contract, threshold, arch,
    precision, source checksum), and check it against the eager model on a real batch."""
    from cxr_fast.export.stage import run_export

    config = config_from_cli(ExportConfig, values)
    # Loading, exporting and the check against the eager model take a while and count nothing.
    with Working("export", f"{config.run} ({config.format})"):
        result = run_export(config)
    click.echo(result.summary())


@cli.command("explain", cls=StageCommand)
@config_options(ExplainConfig)
def explain(**values) -> None:
    """Grad-CAM overlays for IMAGES (files or folders) of RUN.

    Each PNG shows the X-ray and the X-ray with the heat map of the predicted class, with the
    probability and verdict in a caption: those of the model `score --model RUN` uses on this
    device (its fastest verified export, else the eager model), the map from the eager model's
    gradients. Needs the run folder: exported TorchScript, pt2 and TensorRT files keep none.
    """
    from cxr_fast.explain.stage import run_explain

    config = config_from_cli(ExplainConfig, values)
    with _bar(0, "explain") as bar:
        result = run_explain(config, progress=bar.update)
    for line, is_error in result.lines():
        click.echo(line, err=is_error)
    click.echo(result.summary())
    if result.all_failed:
        sys.exit(1)


@cli.command("score", cls=StageCommand)
@config_options(ScoreConfig)
@click.option(
    "--fail-on-error",
    is_flag=True,
    cls=SectionOption,
    section="run",
    help="Exit 1 when any file could not be scored (they are rows either way).",
)
def score(fail_on_error: bool, **values) -> None:
    """Score every image under ARCHIVE into Parquet, one row per file.

    Columns: path, prob_pneumonia, pred, threshold, label (from a Kaggle layout), status
    (ok/error/skipped/not_cxr), error (the reason), width, height, warnings (the decoder's, per
    file), ood_score (the input gate's), and for DICOM patient_id, study/series/sop_instance_uid,
    modality, view_position, body_part_examined. A film the input gate judges not to be a
    frontal chest X-ray gets status not_cxr and no verdict (--accept-ood scores it). The
    file metadata names the model, its checksum and contract. A file
    that cannot be read (or is not a regular file: a FIFO, a device) becomes an error row and
    the run goes on; DICOM reports, plans and waveforms are skipped rows. With labels,
    PRED.metrics.json gets the same metrics as `cxr-fast evaluate`. --resume keeps the rows of
    an interrupted run only when it was made with the same model checksum, contract,
    threshold, backend, precision and archive.
    """
    from cxr_fast.scoring import head_start, wait_policy
    from cxr_fast.scoring.own_outputs import own_outputs

    wait_policy.prefer_passive()  # before torch loads its OpenMP runtime
    config = config_from_cli(ScoreConfig, values)
    # Before the scoring modules import torch: decoding starts on the cores that start-up
    # leaves idle.
    head = head_start.begin(
        config.archive,
        config.model,
        device=config.device,
        workers=config.workers,
        resume=config.resume,
        shard=config.shard,
        skip_views=config.skip_views,
        outputs=own_outputs(config.out, config.cam_dir),
    )
    try:
        from cxr_fast.scoring.score import parse_shard, run_score

        if config.shard is None:  # under torchrun: RANK/WORLD_SIZE
            config = dataclasses.replace(config, shard=parse_shard(None))
        with _bar(0, "score") as bar:
            summary = run_score(config, progress=bar.update, head=head, total=bar.set_total)
    finally:
        if head is not None:
            head.close()
    _echo_summary(summary)
    if summary.is_main and summary.loader_fallback:
        click.echo(f"warning: {summary.loader_fallback}", err=True)
    if summary.is_main and fail_on_error and summary.errors:
        sys.exit(1)


@cli.command("report", cls=StageCommand)
@config_options(ReportConfig)
def report(**values) -> None:
    """One self-contained HTML page (images inline) for RUN: data and leakage check,
    configuration and versions, training curves, validation and every evaluation's metrics with
    95% intervals and plots, the threshold and its source, calibration, and Grad-CAM overlays."""
    from cxr_fast.report import run_report

    config = config_from_cli(ReportConfig, values)
    with Working("report", str(config.run)):
        result = run_report(config)
    click.echo(
        f"report of {config.run}: {plural(result.evaluations, 'evaluation')}, "
        f"{plural(result.overlays, 'Grad-CAM overlay')}, {result.bytes / 1e6:.1f} MB -> "
        f"{result.path}"
    )


@cli.command("serve", cls=StageCommand)
@config_options(ServeConfig)
def serve(**values) -> None:
    """Serve RUN on a web page and a JSON API (the model loads once, here: the one `score
    --model RUN` uses on this device, so the probabilities are score's), on the waitress
    production WSGI server with bounded load (see docs/serving.md).

    \b
    GET  /                    upload page: verdict, probability, Grad-CAM beside the X-ray
    POST /api/predict[?cam=1] multipart field 'file' -> {prob_pneumonia, pred, threshold,
                              model, backend, width, height} (+ cam_png, image_png)
    GET  /api/model           arch, contract, threshold, the run's validation metrics
    GET  /healthz             liveness
    """
    from cxr_fast.serve.stage import run_serve

    _echo_summary(run_serve(config_from_cli(ServeConfig, values), log=click.echo))


def main() -> None:
    """Console entry point: user mistakes print one line and exit 2, never a traceback."""
    # Before torch loads (commands import it lazily): its C++ notes, such as the deprecation of
    # quantized tensors printed on every int8 TorchScript load, are library noise in the tool's
    # output; the export already says, once, that the int8 path is deprecated.
    # TORCH_CPP_LOG_LEVEL=WARNING shows them again.
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("cxr-fast: aborted", err=True)
        sys.exit(130)
    except Interrupted as exc:
        click.echo(f"cxr-fast: interrupted: {one_line(exc)}", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        click.echo(f"cxr-fast: error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except CxrFastError as exc:
        if os.environ.get("CXR_FAST_DEBUG"):
            raise
        click.echo(f"cxr-fast: error: {one_line(exc)}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
