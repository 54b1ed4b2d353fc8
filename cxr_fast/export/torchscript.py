"""TorchScript: ``torch.jit.trace`` + ``torch.jit.freeze``, the contract inside the archive."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from cxr_fast.export.common import CONTRACT_FILE
from cxr_fast.export.notes import quiet_torchscript
from cxr_fast.fp32 import ieee_fp32


def save_torchscript(module: nn.Module, example: torch.Tensor, path: Path, contract: dict) -> None:
    """Trace ``module`` on ``example`` (a real batch), freeze and save it with the contract.

    Call inside :func:`cxr_fast.export.notes.warnings_to_notes`: every step warns in 2.14.
    """
    # Under ieee_fp32: a trace records the TF32 flag in every aten::_convolution, and the
    # default (TF32 on CUDA) would make the file round where eager fp32 does not.
    with torch.no_grad(), ieee_fp32():
        # check_trace re-runs the trace to compare; the export is verified more strictly
        # afterwards (reloaded file, another batch size), so skip the second trace.
        traced = torch.jit.trace(module.eval(), example, check_trace=False)
        frozen = torch.jit.freeze(traced)
    torch.jit.save(frozen, str(path), _extra_files={CONTRACT_FILE: json.dumps(contract)})


def load_torchscript(path: Path, device: torch.device) -> tuple[torch.jit.ScriptModule, dict]:
    """The module on ``device`` and the contract embedded in the file ({} when absent)."""
    extra = {CONTRACT_FILE: ""}
    with quiet_torchscript():
        module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    text = extra[CONTRACT_FILE]
    if isinstance(text, bytes):
        text = text.decode()
    return module.eval(), json.loads(text) if text else {}
