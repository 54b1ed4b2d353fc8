"""DALI-CPU batches on real X-rays: shape, dtype, range, order, partial batch, layout, shards."""

import pytest
import torch

from cxr_fast.contract import PreprocessContract
from cxr_fast.data.augment import Augment
from cxr_fast.data.dali_pipeline import DaliLoader, dali_available
from cxr_fast.data.discover import discover
from cxr_fast.data.loader_spec import LoaderSpec, TrainMode

pytestmark = pytest.mark.skipif(not dali_available(), reason="NVIDIA DALI is not installed")
CONTRACT = PreprocessContract(image_size=64)


@pytest.fixture(scope="module")
def records(kaggle_dir):
    return discover(kaggle_dir)


def _all(loader):
    batches = list(loader)
    return batches, torch.cat([b.x for b in batches]), torch.cat([b.index for b in batches])


def test_eval_batches_keep_order_and_last_partial_batch(records):
    loader = DaliLoader(LoaderSpec(records, CONTRACT, 8))
    batches, x, index = _all(loader)
    assert len(loader) == len(batches) == 5
    assert [b.x.shape[0] for b in batches] == [8, 8, 8, 8, 7]
    assert index.tolist() == list(range(len(records)))
    assert torch.cat([b.y for b in batches]).tolist() == [r.label for r in records]
    first = batches[0].x
    assert first.shape == (8, 1, 64, 64)
    assert first.dtype == torch.float32
    assert first.is_contiguous(memory_format=torch.channels_last)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert float(x.std()) > 0.1  # real films, not blank tensors


def test_standardisation_follows_the_contract(records):
    plain = _all(DaliLoader(LoaderSpec(records[:8], CONTRACT, 8)))[1]
    standard = PreprocessContract(image_size=64, mean=0.5, std=0.25)
    shifted = _all(DaliLoader(LoaderSpec(records[:8], standard, 8)))[1]
    torch.testing.assert_close(shifted, (plain - 0.5) / 0.25, atol=1e-5, rtol=0)


def test_augmentation_changes_training_batches_never_eval_batches(records):
    eval_loader = DaliLoader(LoaderSpec(records, CONTRACT, 8))
    eval_x = _all(eval_loader)[1]
    assert torch.equal(eval_x, _all(eval_loader)[1])

    train = DaliLoader(LoaderSpec(records, CONTRACT, 8), TrainMode(augment=Augment(), seed=3))
    batches, x, index = _all(train)
    assert len(train) == len(batches) == 4  # the partial batch is dropped when training
    assert len(set(index.tolist())) == 32
    assert index.tolist() != sorted(index.tolist())  # shuffled
    difference = (x - eval_x[index]).abs().mean(dim=(1, 2, 3))
    assert float(difference.min()) > 0.005  # every image was transformed
    second_epoch = _all(train)[1]
    assert not torch.equal(x, second_epoch)


def test_no_augmentation_in_training_is_identity(records):
    identity = Augment(rotate_deg=0, scale=0, translate=0, brightness=0, contrast=0)
    train = DaliLoader(LoaderSpec(records, CONTRACT, 8), TrainMode(augment=identity))
    _, x, index = _all(train)
    eval_x = _all(DaliLoader(LoaderSpec(records, CONTRACT, 8)))[1]
    assert float((x - eval_x[index]).abs().max()) < 2 / 255


def test_shards_are_disjoint_and_cover_everything(records):
    seen = []
    for shard in range(3):
        loader = DaliLoader(LoaderSpec(records, CONTRACT, 4, shard_id=shard, num_shards=3))
        seen += _all(loader)[2].tolist()
    assert sorted(seen) == list(range(len(records)))


def test_per_image_standardisation_agrees_with_the_pil_path(records):
    from cxr_fast.data.torch_loader import TorchLoader

    contract = PreprocessContract(image_size=64, normalize="per-image")
    _, dali_x, dali_index = _all(DaliLoader(LoaderSpec(records, contract, 8)))
    pil = list(TorchLoader(LoaderSpec(records, contract, 8, workers=0)))
    pil_x = torch.cat([b.x for b in pil])[torch.cat([b.index for b in pil]).argsort()]
    dali_x = dali_x[dali_index.argsort()]
    per_image_mean = dali_x.mean(dim=(1, 2, 3))
    per_image_std = dali_x.std(dim=(1, 2, 3), unbiased=False)
    assert float(per_image_mean.abs().max()) < 1e-4
    assert float((per_image_std - 1).abs().max()) < 0.01
    # The DALI/PIL agreement bound of the plain contract, scaled by a film's std (about 5x).
    assert float((dali_x - pil_x).abs().mean()) < 0.05
