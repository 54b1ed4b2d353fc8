"""The ``cxr-fast`` command line: parses options and calls the library, nothing more."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import click

from cxr_fast import __version__
from cxr_fast.cli_options import (
    StageCommand,
    build_config,
    config_from_cli,
    config_options,
    flag,
    given,
    merged_values,
)
from cxr_fast.configs import (
    AdaptConfig,
    CalibrateConfig,
    CheckConfig,
    EvalConfig,
    OodFitConfig,
    ReportConfig,
    StreamConfig,
    SynthConfig,
    TuneConfig,
)
from cxr_fast.errors import CxrFastError, Interrupted
from cxr_fast.explain.explain_stage import ExplainConfig
from cxr_fast.export.export_stage import ExportConfig
from cxr_fast.network.listen_config import ListenConfig
from cxr_fast.progress import Progress, Working
from cxr_fast.scoring.score_config import ScoreConfig
from cxr_fast.serve.serve_stage import ServeConfig, run_serve
from cxr_fast.text import plural, rate
from cxr_fast.training.config import AugmentOptions, TrainConfig


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
    with Progress("synth", config.n) as bar:
        paths = run_synth(config, progress=bar.update)
    click.echo(f"wrote {plural(len(paths), 'image')} to {config.out}")


@data.command("check", cls=StageCommand)
@config_options(CheckConfig)
@flag("--json", "Print the report as JSON instead of text.", "output", name="as_json")
def data_check(as_json: bool, **values) -> None:
    """Report counts per split and class, patients, leakage between splits, image sizes and
    unreadable files or folders under ROOT. Exits 1 when it finds leakage, unreadable files or
    folders, or no images."""
    from cxr_fast.data.check import check_dataset, format_report, none_readable, nothing_to_check

    config = config_from_cli(CheckConfig, values)
    with Progress("decode") as bar:
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
    with Progress(f"stream ({backend})", count) as bar:
        stats = stream(build, progress=bar.update)
    click.echo(
        f"{plural(stats.images, 'image')} in {stats.seconds:.2f} s: "
        f"{rate(stats.images, stats.seconds)} ({backend}, {plural(config.workers, 'worker')}, "
        f"batch {config.batch_size}, {config.image_size} px)"
    )


@cli.command("train", cls=StageCommand)
@config_options(TrainConfig, AugmentOptions)
@flag(
    "--resume",
    "Continue the run in --out from its last finished epoch, with its saved configuration "
    "(refused when the data changed since it started).",
)
@flag("--dry-run", "Print the resolved configuration and exit.")
def train(resume: bool, dry_run: bool, **values) -> None:
    """Train a NORMAL/PNEUMONIA classifier into a run folder.

    The folder gets model.pt (best validation ROC-AUC, with its preprocessing contract and
    decision threshold), config.json, metrics.json and train_log.jsonl; with --folds K the
    folder holds the ensemble and out-of-fold metrics, and each member's train_log.jsonl is in
    members/fold-1/ to fold-K/.

    Under torchrun (`torchrun --nproc-per-node N -m cxr_fast train ...`) it trains with
    DistributedDataParallel (NCCL on GPUs, gloo on CPUs); --batch-size is per process and only
    rank 0 writes the run folder. See docs/distributed.md.
    """
    from cxr_fast.training.folds import describe_folds, folds_under_torchrun
    from cxr_fast.training.trainer import plan, run_train

    ctx = click.get_current_context()
    values = merged_values(values, ctx)
    config = _resumed(values, ctx) if resume else _new_run(values)
    config = folds_under_torchrun(config, explicit=given(ctx, "folds"), log=click.echo)
    if dry_run:
        # An ensemble's plan lists every member's fold: the counts its run will log.
        described = describe_folds(config) if config.folds > 1 else plan(config).describe()
        click.echo(json.dumps(described, indent=2))
        return
    _echo_summary(run_train(config, resume=resume, log=click.echo))


def _new_run(values: dict) -> TrainConfig:
    if values["data"] is None:
        raise UserError("--data is required (unless --resume)")
    augment = build_config(AugmentOptions, values).build()
    return build_config(TrainConfig, values, augment=augment)


def _resumed(values: dict, ctx: click.Context) -> TrainConfig:
    """The saved configuration of --out, with the epochs and export given now."""
    from cxr_fast.training.trainer import resume_config

    def now(name: str):
        return values[name] if given(ctx, name) else None

    return resume_config(Path(values["out"]), now("epochs"), now("export"), data=values["data"])


@cli.command("tune", cls=StageCommand)
@config_options(TuneConfig)
def tune(**values) -> None:
    """Search learning rate, weight decay, batch size, augmentation strength, mixup, EMA,
    label smoothing, architecture and image size with Optuna (TPE sampler, median pruner on
    the per-epoch validation ROC-AUC).

    Running it again continues the study. Writes OUT/best.json (use it with
    `cxr-fast train --config OUT/best.json`), OUT/history.png and OUT/importance.png.

    Its defaults screen cheaply, which is why they differ from train's: one fold and the small
    cnn per trial, where train defaults to 5 folds of resnet18. best.json
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
@flag("--json", "Print metrics as JSON instead of a table.", "output", name="as_json")
def evaluate(as_json: bool, **values) -> None:
    """Evaluate a trained RUN (or an exported file) on a labelled folder: accuracy, precision,
    sensitivity, specificity, F1, ROC-AUC, PR-AUC, Brier score and confusion matrix, with 95%
    bootstrap intervals, plus ROC, PR, calibration and confusion-matrix plots. Films the input gate
    judges not to be chest X-rays are left out and counted (--accept-ood keeps them)."""
    from cxr_fast.evaluate import run_evaluate

    config = config_from_cli(EvalConfig, values)
    with Progress("evaluate") as bar:
        result = run_evaluate(config, progress=bar.update)
    if warning := result.warning():
        click.echo(f"warning: {warning}", err=True)
    click.echo(result.summary(as_json))


@cli.command("calibrate", cls=StageCommand)
@config_options(CalibrateConfig)
def calibrate(**values) -> None:
    """Calibrate RUN (or an export of it) for a deployment site on a small labelled sample.

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

    An export is fitted on its own logits, and the new run folder made from the run it was
    exported from: export the calibrated run to deploy it.
    """
    from cxr_fast.calibrate import calibrate_arguments, run_calibrate

    config = config_from_cli(CalibrateConfig, values)
    data = config.data
    with Progress("calibrate") as bar:
        result = run_calibrate(
            **calibrate_arguments(config), progress=bar.update, set_total=bar.set_total
        )
    for line in result.warning_lines(data):
        click.echo(f"warning: {line}", err=True)
    click.echo(result.summary(data))


@cli.command("adapt", cls=StageCommand)
@config_options(AdaptConfig)
def adapt(**values) -> None:
    """Adapt RUN to one site from 100 or more of its unlabelled films (labels are never read),
    into a new run folder every stage takes; its metadata says what changed and on which films."""
    from cxr_fast.adapt.adapt_stage import run_adapt

    config = config_from_cli(AdaptConfig, values)
    with Progress("adapt") as bar:
        result = run_adapt(config, progress=bar.update, set_total=bar.set_total)
    click.echo(result.summary())


@cli.command("ood-fit", cls=StageCommand)
@config_options(OodFitConfig)
def ood_fit(**values) -> None:
    """Fit RUN's input gate on its training films, for a run trained before the gate (training
    fits it by itself). The out-of-distribution threshold is set so that at most 0.5% of the
    films' out-of-fold views exceed it. Rewrites RUN/model.pt (same weights, new checksum) and
    the sidecars of the exports in RUN/export/ made from it, so they gate alike."""
    from cxr_fast.gate.store import fit_and_store

    config = config_from_cli(OodFitConfig, values)
    with Progress("ood-fit") as bar:
        fit = fit_and_store(
            config.run,
            config.data,
            workers=config.workers,
            progress=bar.update,
            set_total=bar.set_total,
        )
    click.echo(fit.summary())


@cli.command("export", cls=StageCommand)
@config_options(ExportConfig)
def export(**values) -> None:
    """Export a trained RUN for deployment, with a JSON sidecar (contract, threshold, arch,
    precision, source checksum), and check it against the eager model on a real batch."""
    from cxr_fast.export.export_stage import run_export

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
    from cxr_fast.explain.explain_stage import run_explain

    config = config_from_cli(ExplainConfig, values)
    with Progress("explain") as bar:
        result = run_explain(config, progress=bar.update)
    for line, is_error in result.lines():
        click.echo(line, err=is_error)
    click.echo(result.summary())
    if result.all_failed:
        sys.exit(1)


@cli.command("score", cls=StageCommand)
@config_options(ScoreConfig)
@flag("--fail-on-error", "Exit 1 when any file could not be scored (they are rows either way).")
def score(fail_on_error: bool, **values) -> None:
    """Score every image under ARCHIVE (or on a --dicomweb server) into Parquet, one row per file.

    Columns: path, prob_pneumonia, pred, threshold, label (from a Kaggle layout), status
    (ok/error/skipped/not_cxr), error (the reason), width, height, warnings (the decoder's, per
    file), ood_score (the input gate's), and for DICOM patient_id, study/series/sop_instance_uid,
    modality, view_position, body_part_examined. A film the input gate judges not to be a
    frontal chest X-ray gets status not_cxr and no verdict (--accept-ood scores it). The file
    metadata names the model, its checksum and contract. A file that cannot be read (or is not
    a regular file: a FIFO, a device) is an error row and the run goes on; DICOM reports, plans
    and waveforms are skipped rows. With labels, PRED.metrics.json gets `evaluate`'s metrics.
    --resume keeps the rows of an interrupted run only when it was made with the same model
    checksum, contract, threshold, backend, precision and archive.
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
        with Progress("score") as bar:
            summary = run_score(config, progress=bar.update, head=head, set_total=bar.set_total)
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
    _echo_summary(run_serve(config_from_cli(ServeConfig, values), log=click.echo))


@cli.command("listen", cls=StageCommand)
@config_options(ListenConfig)
def listen(**values) -> None:
    """Receive films from a PACS (C-STORE), answer each with a row and a DICOM SR, send the SRs
    back with --send-to; a film is kept in --spool until answered (docs/hospital.md)."""
    from cxr_fast.network.listen import run_listen

    _echo_summary(run_listen(config_from_cli(ListenConfig, values), log=click.echo))


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
