"""Under torchrun the ranks of a host share its cores (issue 28): training, validation and
scoring loaders get ``workers // LOCAL_WORLD_SIZE``."""

from types import SimpleNamespace

import pytest
import torch

from cxr_fast.contract import PreprocessContract
from cxr_fast.data.discover import discover
from cxr_fast.distributed import DistContext
from cxr_fast.training.one_model import _loader


@pytest.mark.filterwarnings("ignore:This DataLoader will create")  # not started here
def test_training_and_validation_loaders_take_this_ranks_share(kaggle_dir):
    records = discover(kaggle_dir)
    config = SimpleNamespace(batch_size=4, workers=8, augment=None)
    p = SimpleNamespace(
        config=config,
        contract=PreprocessContract(image_size=32),
        device=torch.device("cpu"),
        loader="torch",
    )
    ctx = DistContext(rank=1, world_size=4, local_rank=1, local_world_size=4)
    train = _loader(p, ctx, records, train_seed=3)
    assert train._loader.num_workers == 2
    assert _loader(p, ctx, records).spec.workers == 2
    assert _loader(p, DistContext(), records, train_seed=3)._loader.num_workers == 8


def test_scoring_takes_this_ranks_share(kaggle_dir, monkeypatch):
    from cxr_fast.scoring import score

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    records = discover(kaggle_dir)
    config = SimpleNamespace(workers=6, loader="torch", skip_views=(), batch_size=None)
    model = SimpleNamespace(contract=PreprocessContract(image_size=32))
    monkeypatch.setattr(score, "batch_size_for", lambda config, device: 4)
    source = score._batch_source(config, records, [0, 1], model, torch.device("cpu"), [])
    assert source.spec.workers == 3
