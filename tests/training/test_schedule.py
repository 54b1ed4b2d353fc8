import itertools
import math

import pytest
import torch

from cxr_fast.training.schedule import FINAL_LR_FRACTION, warmup_cosine


def test_warmup_then_cosine_to_one_percent():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    scheduler = warmup_cosine(optimizer, warmup_steps=4, total_steps=20)
    rates = []
    for _ in range(20):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert rates[4] == pytest.approx(1.0)
    middle = FINAL_LR_FRACTION + (1 - FINAL_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * 0.5))
    assert rates[12] == pytest.approx(middle)
    assert all(a >= b for a, b in itertools.pairwise(rates[4:]))
    assert rates[-1] > FINAL_LR_FRACTION
