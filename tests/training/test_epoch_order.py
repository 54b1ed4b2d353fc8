"""Training order and loss reads, checked without a GPU: every seed and epoch permutes the
records (DALI alone would not), ranks augment differently, the loss is read once per epoch."""

import pytest
import torch
from torch import nn

from cxr_fast.data.batch import Batch
from cxr_fast.data.discover import Record
from cxr_fast.distributed import DistContext
from cxr_fast.models import build_model
from cxr_fast.precision import resolve_precision
from cxr_fast.training.loop import train_epoch
from cxr_fast.training.one_model import _epoch_records, _loader_seed

RECORDS = [Record(f"/a/{i}.jpeg", i % 2, "train", f"p{i}") for i in range(50)]


def test_one_process_gets_a_new_order_every_seed_and_epoch():
    one = DistContext()
    orders = [[r.path for r in _epoch_records(RECORDS, seed, one)] for seed in (1, 2, 1)]
    assert sorted(orders[0]) == sorted(r.path for r in RECORDS)  # a permutation, none dropped
    assert orders[0] != orders[1] and orders[0] == orders[2]
    assert orders[0] != [r.path for r in RECORDS]


def test_ranks_and_epochs_get_distinct_loader_seeds():
    ranks = [DistContext(rank=r, world_size=4, local_rank=r) for r in range(4)]
    seeds = {_loader_seed(epoch_seed, ctx) for epoch_seed in range(10, 20) for ctx in ranks}
    assert len(seeds) == 40


def test_an_epoch_reads_the_loss_from_the_device_once(monkeypatch):
    reads = []
    for name in ("__float__", "item"):
        original = getattr(torch.Tensor, name)

        def counted(self, original=original, name=name):
            reads.append(name)
            return original(self)

        monkeypatch.setattr(torch.Tensor, name, counted)
    device = torch.device("cpu")
    model = build_model("cnn").to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    precision = resolve_precision("fp32", device)
    x = torch.rand(4, 1, 32, 32).contiguous(memory_format=torch.channels_last)
    batches = [Batch(x=x, y=torch.tensor([0, 1, 0, 1]), index=torch.arange(4))] * 5
    losses = []
    stats = train_epoch(
        model,
        batches,
        nn.BCEWithLogitsLoss(),
        optimizer,
        torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0),
        precision.scaler(),
        precision,
        on_step=lambda n, loss: losses.append(loss),
    )
    assert reads == ["__float__"]  # the epoch's mean, once; never per step
    assert all(isinstance(loss, torch.Tensor) for loss in losses)
    assert stats.loss == pytest.approx(float(torch.stack(losses).mean()), rel=1e-6)
