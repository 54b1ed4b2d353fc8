"""torch.distributed under torchrun: who this process is, and the few collectives cxr-fast uses.

cxr-fast never launches processes itself: `torchrun` sets RANK, WORLD_SIZE, LOCAL_RANK and the
rendezvous, and every command reads them here. One process (no WORLD_SIZE, or 1) needs no
process group at all, and every helper then does the single-process thing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job (rank 0 of 1 when not under torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1  # processes on this host

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files, logs and progress bars."""
        return self.rank == 0


def context_from_env(env: Mapping[str, str] = os.environ) -> DistContext:
    """The torchrun variables, checked; a plain run is rank 0 of 1."""
    try:
        world = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
        local = int(env.get("LOCAL_RANK", str(rank)))
        # torchrun sets it; other launchers may not: then, as before, no sharing of cores.
        local_world = max(1, int(env.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError as exc:
        raise ValueError(
            f"RANK/WORLD_SIZE/LOCAL_RANK/LOCAL_WORLD_SIZE must be integers: {exc}"
        ) from None
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK={rank} is not within WORLD_SIZE={world}")
    return DistContext(rank=rank, world_size=world, local_rank=local, local_world_size=local_world)


def workers_per_rank(ctx: DistContext, workers: int) -> int:
    """This process's share of a host's ``workers`` (DALI threads, DataLoader processes; all
    cores by default): each of the host's ranks would otherwise start that many, and the GPU
    decoder reserves memory per thread. 0 (decode in the process itself) stays 0."""
    if workers <= 0 or ctx.local_world_size <= 1:
        return workers
    return max(1, workers // ctx.local_world_size)


def device_for(ctx: DistContext, device: torch.device) -> torch.device:
    """Under torchrun each process takes the GPU of its local rank."""
    if ctx.enabled and device.type == "cuda" and device.index is None:
        return torch.device("cuda", ctx.local_rank)
    return device


def use_device(ctx: DistContext, device: torch.device) -> torch.device:
    """This process's device (:func:`device_for`), made the current CUDA device.

    The one place a rank's GPU becomes current. Whatever allocates on "the current device"
    (a TensorRT engine when it is deserialised and run, ``torch.cuda.is_bf16_supported``,
    NCCL) would otherwise use GPU 0 on every rank while the model sits on ``cuda:LOCAL_RANK``.
    """
    device = device_for(ctx, device)
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)
    return device


def start(ctx: DistContext, device: torch.device) -> None:
    """Join the process group (NCCL on GPUs, gloo on CPUs) unless already in it."""
    if not ctx.enabled or dist.is_initialized():
        return
    if device.type == "cuda":
        device = use_device(ctx, device)
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")


def stop(ctx: DistContext) -> None:
    """Leave the process group (after a final barrier, so no rank exits while others wait)."""
    if ctx.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    """Wait for every rank."""
    if ctx.enabled:
        dist.barrier()


def gather_objects(ctx: DistContext, value: Any) -> list[Any]:
    """``value`` from every rank, in rank order, on every rank."""
    if not ctx.enabled:
        return [value]
    gathered: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def average_buffers(ctx: DistContext, model: torch.nn.Module) -> None:
    """Make every rank's buffers (BatchNorm running statistics) the mean over ranks.

    DDP keeps parameters identical but each rank's last training step updates its own running
    statistics; without this, ranks would validate (and rank 0 would save) slightly different
    models. Integer buffers (batch counters) are equal on every rank already and are left alone.
    """
    if not ctx.enabled:
        return
    for buffer in model.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
            buffer.div_(ctx.world_size)
