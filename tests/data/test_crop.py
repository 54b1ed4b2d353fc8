"""The contract's central crop (crop < 1): what it keeps, the draft decode under it, and the same
pixels from DALI's resize region of interest as from PIL's resize box."""

import numpy as np
import pytest
import torch
from PIL import Image

from cxr_fast.contract import PreprocessContract
from cxr_fast.data.dali_pipeline import DaliLoader, dali_available
from cxr_fast.data.decode import open_gray, read_gray
from cxr_fast.data.discover import discover
from cxr_fast.data.loader_spec import LoaderSpec
from cxr_fast.data.torch_loader import TorchLoader


@pytest.mark.parametrize("crop", [0.49, 1.01, 0.0])
def test_crop_outside_half_to_one_is_refused(crop):
    with pytest.raises(ValueError, match="crop"):
        PreprocessContract(crop=crop)


def test_crop_box_is_central_and_old_contracts_read_as_uncropped():
    assert PreprocessContract(crop=0.8).crop_box(200, 100) == pytest.approx((20, 10, 180, 90))
    assert PreprocessContract().crop_box(200, 100) == (0, 0, 200, 100)
    # A model.pt written before the field existed has no "crop" key.
    data = PreprocessContract(image_size=64).to_dict()
    del data["crop"]
    assert PreprocessContract.from_dict(data).crop == 1.0
    assert PreprocessContract.from_dict(PreprocessContract(crop=0.7).to_dict()).crop == 0.7


def _framed(tmp_path, side: int = 200, frame: int = 30) -> str:
    """A PNG with a white frame ``frame`` px wide around a dark horizontal gradient."""
    pixels = np.tile(np.linspace(0, 120, side, dtype=np.float32), (side, 1)).astype(np.uint8)
    pixels[:frame], pixels[-frame:], pixels[:, :frame], pixels[:, -frame:] = 255, 255, 255, 255
    path = tmp_path / "framed.png"
    Image.fromarray(pixels).save(path)
    return str(path)


def test_the_crop_removes_the_border_and_keeps_the_centre(tmp_path):
    path = _framed(tmp_path)
    whole, size = read_gray(path, PreprocessContract(image_size=50))
    cropped, size_cropped = read_gray(path, PreprocessContract(image_size=50, crop=0.6))
    assert size == size_cropped == (200, 200)  # the original size is reported either way
    assert whole.shape == cropped.shape == (50, 50)
    assert (whole == 255).mean() > 0.4  # the frame is half of the uncropped input
    assert cropped.max() < 130  # central 120 px of 200: only the gradient is left
    # The kept gradient spans the middle 60% of 0..120, left to right.
    assert cropped[:, 0].mean() == pytest.approx(24, abs=4)
    assert cropped[:, -1].mean() == pytest.approx(96, abs=4)


def test_cropping_matches_cropping_first_then_resizing(kaggle_dir):
    # 224 px Kaggle films: 0.75 of 224 is a whole-pixel box (28..196), and at 128 px no draft
    # decode is involved (224 / 2 is less than 128 / 0.75).
    for record in discover(kaggle_dir)[:5]:
        ours, _ = read_gray(record.path, PreprocessContract(image_size=128, crop=0.75))
        film, _ = open_gray(record.path, dicom=False)  # the grey conversion read_gray uses
        manual = np.array(
            film.crop((28, 28, 196, 196)).resize((128, 128), Image.Resampling.BILINEAR)
        )
        diff = np.abs(ours.astype(int) - manual.astype(int))
        # Equal inside; at the edges the resize box also filters the film just outside it,
        # where cropping first repeats the edge pixels.
        assert diff[2:-2, 2:-2].max() <= 1 and diff.mean() < 0.5


def test_draft_decoding_keeps_enough_pixels_for_the_crop(samples_dir):
    # A 1036 x 885 JPEG: the draft decode must not go below image_size / crop before cropping.
    path = str(samples_dir / "16747_3_1.jpg")
    contract = PreprocessContract(image_size=128, crop=0.5)
    ours, size = read_gray(path, contract)
    full, _ = open_gray(path, dicom=False)  # no draft: every pixel
    assert full.size == size
    box = contract.crop_box(*full.size)
    exact = np.array(full.resize((128, 128), Image.Resampling.BILINEAR, box=box), np.float32)
    assert np.abs(ours.astype(np.float32) - exact).mean() < 3.0


@pytest.mark.skipif(not dali_available(), reason="NVIDIA DALI is not installed")
def test_dali_crop_agrees_with_the_pil_path(kaggle_dir):
    records = discover(kaggle_dir)[::3]
    contract = PreprocessContract(image_size=64, crop=0.75)
    dali = list(DaliLoader(LoaderSpec(records, contract, 4)))
    pil = list(TorchLoader(LoaderSpec(records, contract, 4, workers=0)))
    dali_x = torch.cat([b.x for b in dali])[torch.cat([b.index for b in dali]).argsort()]
    pil_x = torch.cat([b.x for b in pil])[torch.cat([b.index for b in pil]).argsort()]
    uncropped = list(
        TorchLoader(LoaderSpec(records, PreprocessContract(image_size=64), 4, workers=0))
    )
    whole_x = torch.cat([b.x for b in uncropped])[torch.cat([b.index for b in uncropped]).argsort()]
    # Same region (the uncropped input is far from both), and the resize differs as without a
    # crop (under 0.01 mean absolute, tests/data/test_torch_loader.py).
    assert float((dali_x - pil_x).abs().mean(dim=(1, 2, 3)).max()) < 0.01
    assert float((whole_x - pil_x).abs().mean(dim=(1, 2, 3)).min()) > 0.02
