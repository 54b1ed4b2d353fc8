"""Soft targets reach the loss unrounded under bf16 autocast (issue 28)."""

import torch
from torch import nn

from cxr_fast.data.batch import Batch
from cxr_fast.precision import Precision
from cxr_fast.training.loop import Regularisers, train_step


class _Recorded(nn.BCEWithLogitsLoss):
    def forward(self, logits, target):
        self.seen = (logits.dtype, target.dtype, target.clone())
        return super().forward(logits, target)


def _step(precision: Precision, reg: Regularisers) -> _Recorded:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 1))
    batch = Batch(x=torch.rand(4, 1, 4, 4), y=torch.tensor([0, 1, 1, 0]), index=torch.arange(4))
    loss_fn = _Recorded()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    train_step(model, batch, loss_fn, optimizer, precision.scaler(), precision, reg=reg)
    return loss_fn


def test_label_smoothing_targets_stay_fp32_under_bf16_autocast():
    smoothed = Regularisers(label_smoothing=0.1)
    logits_dtype, target_dtype, target = _step(Precision("amp-bf16", "cpu"), smoothed).seen
    assert logits_dtype == target_dtype == torch.float32
    # bf16 would make 0.95 into 0.94921875 and 0.05 into 0.0500488...
    assert torch.equal(target, torch.tensor([0.05, 0.95, 0.95, 0.05]))


def test_mixup_targets_keep_their_blend_under_bf16_autocast():
    _, target_dtype, target = _step(Precision("amp-bf16", "cpu"), Regularisers(mixup=0.4)).seen
    assert target_dtype == torch.float32
    assert not torch.equal(target, target.to(torch.bfloat16).float())  # a blend bf16 rounds
