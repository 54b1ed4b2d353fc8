"""DALI loaders across epochs and shards, and what DALI decodes the same way as PIL, checked on
the CPU backend (the GPU graph is the same but for the decoder's device)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cxr_fast.contract import PreprocessContract
from cxr_fast.data.dali_pipeline import DaliLoader, dali_available
from cxr_fast.data.discover import Record, discover
from cxr_fast.data.loader_spec import LoaderSpec, TrainMode
from cxr_fast.data.torch_loader import TorchLoader

pytestmark = pytest.mark.skipif(not dali_available(), reason="NVIDIA DALI is not installed")
CONTRACT = PreprocessContract(image_size=32)


def _indices(loader) -> list[list[int]]:
    return [batch.index.tolist() for batch in loader]


def test_eval_shards_stay_fixed_across_epochs_and_cover_the_records_once(kaggle_dir):
    """5 records on 2 ranks: each rank reads its own shard every epoch (shards would rotate
    otherwise) and no rank gets an empty batch of padding."""
    records = discover(kaggle_dir)[:5]
    seen = []
    for shard in (0, 1):
        loader = DaliLoader(LoaderSpec(records, CONTRACT, 2, shard_id=shard, num_shards=2))
        first, second = _indices(loader), _indices(loader)
        assert first == second
        assert all(batch for batch in first) and len(first) == len(loader)
        seen += [i for batch in first for i in batch]
    assert sorted(seen) == list(range(5))


def test_a_finished_epoch_does_not_start_the_next(kaggle_dir):
    """The iterator resets when iterated again, not at the end of an epoch: a training loader
    replaced every epoch never decodes a next epoch nobody reads."""
    loader = DaliLoader(LoaderSpec(discover(kaggle_dir)[:6], CONTRACT, 4), TrainMode())
    assert sum(len(batch) for batch in _indices(loader)) == 4  # train drops the partial batch
    assert loader._iterator._counter >= loader._iterator.size  # still at the epoch's end


def _exif_rotated_jpeg(path: Path) -> None:
    """A film whose left half is white, stored with EXIF orientation 6 (rotate 90° to view)."""
    pixels = np.zeros((64, 96), dtype=np.uint8)
    pixels[:, :48] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(pixels).save(path, quality=95, exif=exif)


def test_dali_ignores_exif_orientation_as_pil_does(tmp_path):
    path = tmp_path / "rotated.jpeg"
    _exif_rotated_jpeg(path)
    records = [Record(str(path), 0, None, "p")]
    (dali,) = DaliLoader(LoaderSpec(records, CONTRACT, 1))
    (pil,) = TorchLoader(LoaderSpec(records, CONTRACT, 1, workers=0))
    assert dali.x.dtype == torch.float32
    assert float((dali.x - pil.x).abs().mean()) < 0.02
    rotated = torch.rot90(pil.x, k=-1, dims=(2, 3))  # what EXIF orientation 6 would show
    assert float((dali.x - rotated).abs().mean()) > 0.3
