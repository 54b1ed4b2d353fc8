"""The PIL/DataLoader fallback yields the same batches as DALI-CPU on real images."""

from pathlib import Path

import pytest
import torch

from cxr_fast.contract import PreprocessContract
from cxr_fast.data.augment import Augment
from cxr_fast.data.dali_pipeline import DaliLoader, dali_available
from cxr_fast.data.discover import discover
from cxr_fast.data.loader_spec import LoaderSpec, TrainMode
from cxr_fast.data.synth import upscale_real
from cxr_fast.data.torch_loader import TorchLoader
from cxr_fast.labels import CLASS_NAMES

# Mean absolute difference per image between DALI's full decode + resize and PIL's draft decode
# (measured, 224 and 160 px): real samples at most 0.0043; grainy upscaled 1000-2200 px films at
# most 0.0125 (mean 0.004). The bounds leave room for other libjpeg builds.
MAX_MEAN_ABS_DIFF_REAL = 0.01
MAX_MEAN_ABS_DIFF_FULLRES = 0.025


def _all(loader):
    batches = list(loader)
    return batches, torch.cat([b.x for b in batches]), torch.cat([b.index for b in batches])


def test_batch_format_matches_the_contract(kaggle_dir):
    records = discover(kaggle_dir)
    loader = TorchLoader(LoaderSpec(records, PreprocessContract(image_size=96), 16, workers=2))
    batches, x, index = _all(loader)
    assert [b.x.shape[0] for b in batches] == [16, 16, 7]
    assert batches[0].x.shape == (16, 1, 96, 96)
    assert batches[0].x.is_contiguous(memory_format=torch.channels_last)
    assert index.tolist() == list(range(len(records)))
    assert torch.cat([b.y for b in batches]).tolist() == [r.label for r in records]
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0


def _max_mean_abs_diff(records, size: int) -> float:
    contract = PreprocessContract(image_size=size)
    dali_x = _all(DaliLoader(LoaderSpec(records, contract, 8)))[1]
    torch_x = _all(TorchLoader(LoaderSpec(records, contract, 8, workers=0)))[1]
    return float((dali_x - torch_x).abs().mean(dim=(1, 2, 3)).max())


@pytest.mark.skipif(not dali_available(), reason="NVIDIA DALI is not installed")
@pytest.mark.parametrize("size", [224, 160])
def test_agrees_with_dali_on_real_images(kaggle_dir, samples_dir, size):
    records = [r for r in discover(samples_dir) if not r.path.endswith(".dcm")]
    records += discover(kaggle_dir)[::6]
    assert _max_mean_abs_diff(records, size) < MAX_MEAN_ABS_DIFF_REAL


@pytest.mark.skipif(not dali_available(), reason="NVIDIA DALI is not installed")
def test_agrees_with_dali_on_full_resolution_films(kaggle_dir, tmp_path):
    sources = [(Path(r.path), CLASS_NAMES[r.label]) for r in discover(kaggle_dir)[::10]]
    upscale_real(sources, tmp_path, 4, min_size=1000, max_size=1600, seed=2)
    records = discover(tmp_path)
    assert len(records) == 4
    assert _max_mean_abs_diff(records, 224) < MAX_MEAN_ABS_DIFF_FULLRES


def test_training_mode_augments_reproducibly(kaggle_dir):
    records = discover(kaggle_dir)
    contract = PreprocessContract(image_size=64)
    eval_x = _all(TorchLoader(LoaderSpec(records, contract, 8, workers=0)))[1]

    def run():
        loader = TorchLoader(
            LoaderSpec(records, contract, 8, workers=2), TrainMode(augment=Augment(), seed=5)
        )
        return _all(loader)[1:], _all(loader)[1:]

    (x1, i1), (x1_next, _) = run()
    (x2, i2), _ = run()
    assert len(i1) == 32 and i1.tolist() != sorted(i1.tolist())
    assert float((x1 - eval_x[i1]).abs().mean(dim=(1, 2, 3)).min()) > 0.005
    assert torch.equal(i1, i2) and torch.equal(x1, x2)  # same seed, same batches
    assert not torch.equal(x1, x1_next)  # a new epoch draws new transforms


def test_dicom_and_png_go_through_the_fallback(samples_dir):
    records = discover(samples_dir)
    x = _all(TorchLoader(LoaderSpec(records, PreprocessContract(), 4, workers=0)))[1]
    assert x.shape == (len(records), 1, 224, 224)
    names = [r.path.rsplit("/", 1)[-1] for r in records]
    mono1 = x[names.index("Fake_MONOHR1.dcm")]
    mono2 = x[names.index("siim_sample.dcm")]
    # Same pixel data, one tagged MONOCHROME1: it must come out inverted.
    torch.testing.assert_close(mono1, 1.0 - mono2, atol=2 / 255, rtol=0)
