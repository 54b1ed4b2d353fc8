"""The export stage's entry point: ``run_export(ExportConfig) -> ExportResult``."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from cxr_fast.choices import (
    EXPORT_BATCH_SIZE,
    EXPORT_FORMATS,
    EXPORT_PRECISIONS,
    device_option,
    tta_option,
)
from cxr_fast.export.common import ExportResult
from cxr_fast.options import check_options, option


@dataclass(frozen=True)
class ExportConfig:
    """What ``cxr-fast export`` was asked to do."""

    run: Path = option(argument=True, exists=True, help="The run folder to export.")
    format: str = option(
        choices=("auto", *EXPORT_FORMATS),
        required=True,
        section="model",
        help="torchscript: traced and frozen; pt2: torch.export program with a dynamic "
        "batch; tensorrt: Torch-TensorRT engine (CUDA and the trt extra); onnx: ONNX for ONNX "
        "Runtime (the onnx extra); auto: the fastest for this host (int8 on a CPU, TensorRT "
        "fp16 on CUDA), which `score --model RUN` then uses by itself.",
    )
    # None: the format's default (DEFAULT_PRECISION)
    precision: str | None = option(
        None,
        choices=EXPORT_PRECISIONS,
        section="model",
        help="fp32; fp16 (CUDA); int8 (CPU, TorchScript or ONNX: post-training quantisation "
        "calibrated on training images).  [default: fp16 for tensorrt, else fp32; auto "
        "chooses]",
    )
    batch_size: int = option(
        EXPORT_BATCH_SIZE,
        min=2,
        section="model",
        help="Batch used to trace and to check the export against the eager model.",
    )
    out: Path | None = option(
        None,
        dir_okay=False,
        section="output",
        help="File to write.  [default: RUN/export/model[.PRECISION].{ts,pt2,trt.pt2,onnx}]",
    )
    data: Path | None = option(
        None,
        exists=True,
        section="data",
        help="Images for the check batch and int8 calibration.  [default: the run's own "
        "records: int8 calibrates on its training records, checks use its validation records "
        "(an ensemble has none: training records outside the calibration set); never test/]",
    )
    overwrite: bool = option(
        False,
        section="output",
        help="Replace an --out that holds another run's export (or another format or precision).",
    )
    device: str = device_option()
    tta: bool = tta_option()

    def __post_init__(self) -> None:
        check_options(self)


def run_export(config: ExportConfig) -> ExportResult:
    """Export ``config.run`` as ``config.format`` and check it against the eager model."""
    from cxr_fast.export.exporter import export_run

    options = {f.name: getattr(config, f.name) for f in fields(config)}
    return export_run(options.pop("run"), options.pop("format"), **options)
