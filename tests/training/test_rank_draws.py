"""Mixup and random erasing draw other numbers on every DDP rank, and the same as before on
rank 0 and a single process (issue 28)."""

import torch

from cxr_fast.data.batch import Batch
from cxr_fast.distributed import DistContext
from cxr_fast.training.loop import Regularisers, _inputs_and_targets
from cxr_fast.training.one_model import _loader_seed
from cxr_fast.training.rng import seed_other_rank

BATCH = Batch(x=torch.rand(8, 1, 16, 16), y=torch.tensor([0, 1] * 4), index=torch.arange(8))
REG = Regularisers(mixup=0.4, erase=0.5)


def _draws(rank: int, world: int = 4, epoch_seed: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)  # the run's seed: the same on every rank
    seed_other_rank(rank, _loader_seed(epoch_seed, DistContext(rank, world, rank)))
    return _inputs_and_targets(BATCH, REG, None)


def test_rank_0_draws_what_a_single_process_drew_before():
    torch.manual_seed(1)
    before = _inputs_and_targets(BATCH, REG, None)  # no reseeding: the old behaviour
    for ctx_draws in (_draws(0), _draws(0, world=1)):
        assert all(torch.equal(a, b) for a, b in zip(before, ctx_draws, strict=True))


def test_every_rank_mixes_and_erases_differently_and_reproducibly():
    targets = [_draws(rank)[1] for rank in range(4)]
    assert len({tuple(t.tolist()) for t in targets}) == 4
    images = [_draws(rank)[0] for rank in range(4)]
    assert not any(torch.equal(images[0], other) for other in images[1:])
    assert torch.equal(_draws(2)[0], images[2])  # a resumed epoch draws the same again
    assert not torch.equal(_draws(2, epoch_seed=8)[0], images[2])  # another epoch, others
