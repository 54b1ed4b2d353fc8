"""Validation with the training records' ``dali`` choice (issue 28): a DICOM or a PNG that
DALI must not decode in the validation records is routed by its header, never an error after
the process group started."""

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from cxr_fast.contract import PreprocessContract
from cxr_fast.data.dali_pipeline import dali_available
from cxr_fast.data.discover import Record
from cxr_fast.data.loaders import resolve_loader
from cxr_fast.distributed import DistContext
from cxr_fast.training.one_model import _loader
from tests.bad_files import awkward_pngs

DICOMS = Path(__file__).parents[1] / "data" / "images" / "dicom"


@pytest.mark.skipif(not dali_available(), reason="NVIDIA DALI is not installed")
def test_dicom_and_awkward_pngs_in_validation_take_the_pil_path(kaggle_dir, samples_dir, tmp_path):
    train = [Record(str(p), 0, None, p.stem) for p in sorted(kaggle_dir.rglob("*.jpeg"))[:4]]
    val_files = [
        *sorted(kaggle_dir.rglob("*.jpeg"))[4:6],
        shutil.copy(DICOMS / "cr_rle.dcm", tmp_path / "cr_rle.dcm"),
        shutil.copy(DICOMS / "dx_jpeg_baseline.dcm", tmp_path / "dx.dcm"),
        *awkward_pngs(tmp_path, samples_dir),
    ]
    val = [Record(str(p), 1, None, Path(p).stem) for p in val_files]
    cpu = torch.device("cpu")
    assert resolve_loader("auto", torch.device("cuda"), train) == "dali"  # train: JPEGs only
    p = SimpleNamespace(
        config=SimpleNamespace(batch_size=4, workers=2),
        contract=PreprocessContract(image_size=32),
        device=cpu,
        loader="dali",  # what plan() resolved from the training records
    )
    batches = list(_loader(p, DistContext(rank=0, world_size=1), val))
    scored = sorted(i for b in batches for i in b.index.tolist())
    assert scored == list(range(len(val)))  # every file decoded, none refused
    assert not [e for b in batches for e in b.errors]
