"""The PIL training loader keeps its worker processes across epochs (issue 28) and loads each
epoch exactly as a new loader over that epoch's records did."""

import numpy as np
import pytest
import torch
import torchvision.transforms.v2  # noqa: F401  (once here, not in every forked worker)
from torch.utils.data import DataLoader

from cxr_fast.contract import PreprocessContract
from cxr_fast.data.augment import Augment
from cxr_fast.data.discover import discover
from cxr_fast.data.loader_spec import LoaderSpec, TrainMode
from cxr_fast.data.torch_loader import TorchLoader

CONTRACT = PreprocessContract(image_size=32)
pytestmark = pytest.mark.filterwarnings("ignore:This DataLoader will create")


def _epoch(records, seed):
    return [records[i] for i in np.random.default_rng(seed).permutation(len(records))][:36]


def _batches(loader):
    return [(b.x.clone(), b.y.clone(), b.index.clone()) for b in loader]


def test_set_epoch_loads_what_a_new_loader_loads_with_the_same_workers(kaggle_dir):
    records = discover(kaggle_dir)
    spec = LoaderSpec(_epoch(records, 0), CONTRACT, 8, workers=1, shard_id=1, num_shards=2)
    kept = TorchLoader(spec, TrainMode(augment=Augment(), seed=10))
    first = _batches(kept)
    workers = [w.pid for w in kept._loader._iterator._workers]
    for epoch in (1,):
        epoch_records = _epoch(records, epoch)
        kept.set_epoch(epoch_records, 10 + epoch)
        new = TorchLoader(
            LoaderSpec(epoch_records, CONTRACT, 8, workers=1, shard_id=1, num_shards=2),
            TrainMode(augment=Augment(), seed=10 + epoch),
        )
        ours, theirs = _batches(kept), _batches(new)
        assert len(ours) == len(theirs) == len(kept) == 2  # 18 of the shard, a partial dropped
        for a, b in zip(ours, theirs, strict=True):
            assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
        assert [w.pid for w in kept._loader._iterator._workers] == workers
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(first, ours, strict=True))


def test_the_order_is_a_seeded_dataloaders_pass_after_pass(kaggle_dir):
    records = discover(kaggle_dir)[:30]
    loader = TorchLoader(LoaderSpec(records, CONTRACT, 8, workers=0), TrainMode(seed=4))
    plain = DataLoader(
        range(30), 8, shuffle=True, drop_last=True, generator=torch.Generator().manual_seed(4)
    )
    global_state = torch.get_rng_state()
    for _ in range(3):  # passes without set_epoch continue the generator, as one DataLoader
        ours = [b.index.tolist() for b in loader]
        assert ours == [b.tolist() for b in plain]
    assert torch.equal(torch.get_rng_state(), global_state)  # the global generator untouched


def test_a_validation_loader_keeps_its_pil_workers_between_passes(kaggle_dir):
    from cxr_fast.data.loaders import make_scoring_loader

    spec = LoaderSpec(discover(kaggle_dir)[:12], CONTRACT, 8, workers=1)
    loader = make_scoring_loader(spec, "torch", keep_workers=True)
    first = [b.x for b in loader]
    workers = [w.pid for w in loader._pil._iterator._workers]
    again = [b.x for b in loader]
    assert [w.pid for w in loader._pil._iterator._workers] == workers
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    once = make_scoring_loader(spec, "torch")  # score's: one pass, workers gone after it
    assert all(torch.equal(a, b.x) for a, b in zip(first, once, strict=True))
    assert once._pil is None
