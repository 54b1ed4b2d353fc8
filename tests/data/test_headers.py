"""The collecting loader's header check: in a thread pool, in order, and routing to PIL what
PIL alone would refuse, so its DALI and PIL paths give the same rows."""

import shutil
from pathlib import Path

import pytest
from PIL import Image

from cxr_fast.contract import PreprocessContract
from cxr_fast.data.collecting_loader import dali_batches, pil_batches
from cxr_fast.data.dali_pipeline import dali_available
from cxr_fast.data.discover import discover
from cxr_fast.data.headers import header_size, read_headers
from cxr_fast.data.loader_spec import LoaderSpec


def _archive(kaggle_dir: Path, root: Path) -> Path:
    """Four real films, a 20 px JPEG (decodable, under the 32 px minimum) and a text file."""
    root.mkdir()
    for path in sorted((kaggle_dir / "train" / "NORMAL").glob("*.jpeg"))[:4]:
        shutil.copy(path, root / path.name)
    Image.new("L", (20, 20), 100).save(root / "tiny.jpeg")
    (root / "text.jpeg").write_text("not an image\n")
    return root


def test_headers_in_a_pool_are_the_sequential_ones_in_order(kaggle_dir, tmp_path):
    paths = [r.path for r in discover(_archive(kaggle_dir, tmp_path / "a"))] * 40
    expected = [header_size(path) for path in paths]
    assert read_headers(paths, workers=4) == expected
    assert (None, False) in expected and ((20, 20), True) in expected


def _rows(batches) -> dict[int, tuple]:
    rows = {}
    for batch in batches:
        for position, size in zip(batch.index.tolist(), batch.sizes, strict=True):
            rows[position] = ("ok", size)
        for position, reason in batch.errors:
            rows[position] = ("error", reason)
    return rows


@pytest.mark.skipif(not dali_available(), reason="NVIDIA DALI is not installed")
def test_dali_and_pil_paths_give_the_same_rows_for_a_tiny_jpeg(kaggle_dir, tmp_path):
    records = discover(_archive(kaggle_dir, tmp_path / "a"))
    positions = list(range(len(records)))
    contract = PreprocessContract(image_size=32)
    spec = LoaderSpec(records, contract, 4, workers=2)
    dali = _rows(dali_batches(spec, positions))
    pil = _rows(pil_batches(spec, positions))
    assert dali == pil
    tiny = next(i for i, r in enumerate(records) if r.path.endswith("tiny.jpeg"))
    assert dali[tiny][0] == "error" and "32 px minimum" in dali[tiny][1]
