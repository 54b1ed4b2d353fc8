"""Random number generator states of a training process, saved and restored with last.pt."""

from __future__ import annotations

import random

import numpy as np
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


def seed_other_rank(rank: int, seed: int) -> None:
    """Reseed the global generators (torch CPU and CUDA, Python, numpy) of a DDP rank other
    than 0 with ``seed``. Mixup's weight and pairing and random erasing draw from them, and
    every rank starts from the run's seed: without this all ranks would draw the same numbers.
    Rank 0, and so a single process, keeps its stream untouched: a run on one process draws
    exactly what it drew before. ``seed`` per epoch and rank keeps a resumed run's draws."""
    if rank == 0:
        return
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
