"""The export stage's entry point: ``run_export(ExportConfig) -> ExportResult``."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from cxr_fast.choices import EXPORT_BATCH_SIZE
from cxr_fast.export.common import ExportResult


@dataclass(frozen=True)
class ExportConfig:
    """What ``cxr-fast export`` was asked to do."""

    run: Path
    format: str
    precision: str | None = None  # None: the format's default (DEFAULT_PRECISION)
    batch_size: int = EXPORT_BATCH_SIZE
    out: Path | None = None  # None: default_out_path under RUN/export/
    data: Path | None = None  # None: the run's own records
    overwrite: bool = False
    device: str = "auto"
    tta: bool = False


def run_export(config: ExportConfig) -> ExportResult:
    """Export ``config.run`` as ``config.format`` and check it against the eager model."""
    from cxr_fast.export.exporter import export_run

    options = {f.name: getattr(config, f.name) for f in fields(config)}
    return export_run(options.pop("run"), options.pop("format"), **options)
