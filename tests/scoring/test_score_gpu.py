"""Scoring on CUDA with DALI's mixed decoder: every bad kind becomes the same row as on the
CPU, and the probabilities of the good films agree."""

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from cxr_fast.data.dali_pipeline import dali_available
from cxr_fast.scoring.score import ScoreConfig, run_score
from tests.bad_files import write_bad_files

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not dali_available(), reason="NVIDIA DALI is not installed"),
]


@pytest.fixture(scope="module")
def gpu_bad_archive(kaggle_dir, samples_dir, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """Good films, every bad kind (truncated, CMYK, 16-bit PNG, ...) and a 20 px JPEG."""
    root = tmp_path_factory.mktemp("gpu-archive") / "test"
    normal = root / "NORMAL"
    normal.mkdir(parents=True)
    good = sorted((kaggle_dir / "train" / "NORMAL").glob("*.jpeg"))[:7]
    for path in good:
        shutil.copy(path, normal / path.name)
    expected = {path.name: "ok" for path in good}
    expected.update(write_bad_files(normal, samples_dir))
    Image.new("L", (20, 20), 90).save(normal / "tiny.jpeg")
    expected["tiny.jpeg"] = "error"  # the PIL path's 32 px minimum, on the GPU path too
    return root, expected


def _rows(path: Path) -> dict[str, dict]:
    return {Path(row["path"]).name: row for row in pq.read_table(path).to_pylist()}


def test_bad_files_on_cuda_with_the_mixed_decoder(trained_run, gpu_bad_archive, tmp_path):
    root, expected = gpu_bad_archive
    rows = {}
    for name, device, loader in (("gpu", "cuda", "dali"), ("cpu", "cpu", "torch")):
        out = tmp_path / f"{name}.parquet"
        summary = run_score(
            ScoreConfig(
                archive=root,
                model=trained_run,
                out=out,
                loader=loader,
                device=device,
                batch_size=5,
                workers=2,
            )
        )
        assert summary.loader == loader
        rows[name] = _rows(out)
    gpu, cpu = rows["gpu"], rows["cpu"]
    assert {name: row["status"] for name, row in gpu.items()} == expected
    assert {name: row["status"] for name, row in cpu.items()} == expected
    for name, row in gpu.items():
        assert (row["width"], row["height"]) == (cpu[name]["width"], cpu[name]["height"])
        if row["status"] == "ok":
            assert row["prob_pneumonia"] == pytest.approx(cpu[name]["prob_pneumonia"], abs=0.05)
