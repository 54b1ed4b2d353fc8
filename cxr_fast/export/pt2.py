"""pt2: ``torch.export`` with a dynamic batch dimension, the contract inside the archive."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn
from torch.export.passes import move_to_device_pass

from cxr_fast.export.common import CONTRACT_FILE


def batch_dim(max_batch: int) -> torch.export.Dim:
    """The dynamic batch dimension shared by pt2 and TensorRT exports."""
    return torch.export.Dim("batch", min=1, max=max_batch)


def save_pt2(
    module: nn.Module, example: torch.Tensor, path: Path, contract: dict, max_batch: int
) -> None:
    """Export ``module`` with batch sizes 1..``max_batch`` and save it with the contract.

    ``example`` must hold at least two images: torch.export specialises a size-1 dimension.
    """
    with torch.no_grad():
        # Positional (tuple) dynamic_shapes: no dependence on the forward argument's name.
        program = torch.export.export(
            module.eval(), (example,), dynamic_shapes=({0: batch_dim(max_batch)},)
        )
    torch.export.save(program, str(path), extra_files={CONTRACT_FILE: json.dumps(contract)})


def load_pt2(path: Path, device: torch.device) -> tuple[nn.Module, dict]:
    """The program's module on ``device`` and the contract embedded in the file."""
    extra = {CONTRACT_FILE: ""}
    program = torch.export.load(str(path), extra_files=extra)
    if not _on_device(program, device):
        program = move_to_device_pass(program, device)
    text = extra[CONTRACT_FILE]
    if isinstance(text, bytes):
        text = text.decode()
    return program.module(), json.loads(text) if text else {}


def _on_device(program: torch.export.ExportedProgram, device: torch.device) -> bool:
    for tensor in program.state_dict.values():
        here = tensor.device
        return here.type == device.type and (here.index or 0) == (device.index or 0)
    return True
