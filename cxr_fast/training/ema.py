"""The exponential moving average of a model's weights and buffers (``--ema-decay``)."""

from __future__ import annotations

import itertools

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


class ExponentialAverage(AveragedModel):
    """:class:`torch.optim.swa_utils.AveragedModel` with ``get_ema_multi_avg_fn(decay)`` over
    parameters and buffers, the same numbers and the same state dict, without a host/GPU
    synchronisation per update.

    torch's ``update_parameters`` hands the step count to the average as
    ``n_averaged.to(device)``: a copy from pageable host memory to the GPU every step, which
    the host waits for, and which an EMA never reads. Here the count stays on the host.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        super().__init__(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)

    @torch.no_grad()
    def update_parameters(self, model: nn.Module) -> None:
        """Average ``model``'s parameters and buffers in (the first call copies them)."""
        averaged = itertools.chain(self.module.parameters(), self.module.buffers())
        current = itertools.chain(model.parameters(), model.buffers())
        groups: dict[tuple[torch.device, torch.dtype], tuple[list, list]] = {}
        first = bool(self.n_averaged == 0)  # n_averaged lives on the host: no GPU wait
        for mine, theirs in zip(averaged, current, strict=False):
            theirs = theirs.detach().to(mine.device)
            if first:
                mine.detach().copy_(theirs)
            group = groups.setdefault((mine.device, mine.dtype), ([], []))
            group[0].append(mine.detach())
            group[1].append(theirs)
        if not first:
            for mine_list, their_list in groups.values():
                self.multi_avg_fn(mine_list, their_list, None)
        self.n_averaged += 1
