"""Export a trained run as TorchScript, torch.export (pt2) or TensorRT, checked against the
eager model on real images, with the preprocessing contract inside and beside the file.

The torch-free names (``cxr_fast.export.common``) load with the package; ``export_run``,
``ExportedModel`` and ``load_exported`` load torch on first use, so a process that only needs
to find an export's sidecar (the scorer's head start) does not pay for torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from cxr_fast.export.exporter import export_run
    from cxr_fast.export.loading import ExportedModel, load_exported

_LAZY = {
    "export_run": "cxr_fast.export.exporter",
    "ExportedModel": "cxr_fast.export.loading",
    "load_exported": "cxr_fast.export.loading",
}

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


def __getattr__(name: str):
    """The torch-dependent names, imported when first asked for (PEP 562)."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
