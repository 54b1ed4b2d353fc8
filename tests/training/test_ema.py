"""The EMA keeps torch's numbers and state dict without a host/GPU copy per step (issue 28)."""

import pytest
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.overrides import TorchFunctionMode

from cxr_fast.models import build_model
from cxr_fast.training.ema import ExponentialAverage


class _MovesOf(TorchFunctionMode):
    """Records every ``.to`` of one tensor."""

    def __init__(self, tensor):
        super().__init__()
        self.tensor, self.moves = tensor, 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.Tensor.to and args and args[0] is self.tensor:
            self.moves += 1
        return func(*args, **(kwargs or {}))


def _steps(model, averages, n=4):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    generator = torch.Generator().manual_seed(0)
    for _ in range(n):
        x = torch.randn(4, 1, 32, 32, generator=generator)
        optimizer.zero_grad()
        model(x).sum().backward()
        optimizer.step()
        for average in averages:
            average.update_parameters(model)


def test_the_average_is_torchs_bit_for_bit_with_the_same_state_dict():
    torch.manual_seed(0)
    model = build_model("resnet18", False).train()  # BatchNorm: float and int64 buffers
    ours = ExponentialAverage(model, 0.9)
    theirs = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
    _steps(model, [ours, theirs])
    mine, reference = ours.state_dict(), theirs.state_dict()
    assert mine.keys() == reference.keys()
    for key in mine:
        assert torch.equal(mine[key], reference[key]), key
    assert int(ours.n_averaged) == 4


def test_the_step_count_is_never_copied_to_the_parameters_device():
    model = build_model("cnn", False)
    torchs = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
    ours = ExponentialAverage(model, 0.9)
    for average, expected_moves in ((torchs, True), (ours, False)):
        with _MovesOf(average.n_averaged) as moves:
            _steps(model, [average], n=3)
        assert (moves.moves > 0) is expected_moves


@pytest.mark.gpu
def test_an_update_on_the_gpu_does_not_synchronise():
    model = build_model("resnet18", False).cuda()
    average = ExponentialAverage(model, 0.9)
    average.update_parameters(model)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        average.update_parameters(model)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert int(average.n_averaged) == 2
