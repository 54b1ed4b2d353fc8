"""Learning-rate schedule: linear warm-up, then cosine decay, stepped every optimizer step."""

from __future__ import annotations

import math

import torch

# Decay to this fraction of the peak rather than zero: the last epochs still learn.
FINAL_LR_FRACTION = 0.01


def warmup_cosine(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR: rises linearly over ``warmup_steps``, then follows a cosine to 1% of peak."""
    total_steps = max(1, total_steps)
    warmup_steps = min(max(0, warmup_steps), total_steps - 1)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return FINAL_LR_FRACTION + (1.0 - FINAL_LR_FRACTION) * cosine

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
