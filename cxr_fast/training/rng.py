"""Random number generator states of a training process, saved and restored with last.pt."""

from __future__ import annotations

import random

import torch


def rng_state(device: torch.device) -> dict:
    """Torch CPU, Python and (when training on CUDA) the training GPU's generator state.

    Only the training device's CUDA state: ``get_rng_state_all()`` would tie the file to the
    number of visible GPUs, and ``set_rng_state_all`` fails on a host with fewer.
    """
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "python": list(random.getstate()[1]),
    }


def restore_rng_state(state: dict, device: torch.device) -> None:
    """Restore :func:`rng_state`'s output. A CUDA state goes to the training device whatever
    GPU saved it; files from before (one state per visible GPU) give the first one's. A CUDA
    state resumed on the CPU, or a CPU run resumed on CUDA, leaves the CUDA generator alone."""
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if isinstance(cuda, (list, tuple)):
        cuda = cuda[0] if cuda else None
    if cuda is not None and device.type == "cuda":
        torch.cuda.set_rng_state(cuda, device)
    random.setstate((3, tuple(state["python"]), None))
