"""Export a trained run as TorchScript, torch.export (pt2) or TensorRT, checked against the
eager model on real images, with the preprocessing contract inside and beside the file."""

from cxr_fast.export.common import (
    DEFAULT_PRECISION,
    EXPORT_PRECISIONS,
    FORMATS,
    INT8_MAX_AUC_DROP,
    TOLERANCES,
    ExportError,
    ExportResult,
    default_out_path,
    sidecar_path,
)
from cxr_fast.export.exporter import export_run
from cxr_fast.export.loading import ExportedModel, load_exported

__all__ = [
    "DEFAULT_PRECISION",
    "EXPORT_PRECISIONS",
    "FORMATS",
    "INT8_MAX_AUC_DROP",
    "TOLERANCES",
    "ExportError",
    "ExportResult",
    "ExportedModel",
    "default_out_path",
    "export_run",
    "load_exported",
    "sidecar_path",
]
