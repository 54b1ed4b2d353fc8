"""A file name that is not UTF-8 (issue 26): the image is fine, so training, its pre-flight
check and evaluation read it like any other instead of crashing on the name."""

import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from cxr_fast.data.bad_file_scan import CACHE_ENV
from cxr_fast.evaluate import EvalConfig, run_evaluate
from cxr_fast.training.config import TrainConfig
from cxr_fast.training.folds import OOF_FILE
from cxr_fast.training.preflight import BadTrainingFilesError
from cxr_fast.training.trainer import run_train

TINY = dict(
    arch="cnn", image_size=32, batch_size=8, val_fraction=0.25, lr=3e-3, workers=0, export="none"
)
ODD = b"person99\xff_virus_1.jpeg"  # Latin-1 bytes from an old share: not UTF-8


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))


def _odd(folder: Path) -> str:
    return os.fsdecode(os.path.join(os.fsencode(folder), ODD))


@pytest.fixture
def odd_data(kaggle_dir, tmp_path) -> Path:
    """The 39 real films plus a copy of one under a name that is not UTF-8 (40 in all)."""
    root = tmp_path / "data"
    shutil.copytree(kaggle_dir, root)
    pneumonia = root / "train" / "PNEUMONIA"
    shutil.copy(sorted(pneumonia.glob("*.jpeg"))[0], _odd(pneumonia))
    return root


def test_the_preflight_names_a_bad_file_of_such_a_name_in_text(odd_data, tmp_path):
    odd = _odd(odd_data / "train" / "PNEUMONIA")
    Path(odd).write_bytes(b"\xff\xd8\xff")  # truncated: refused, named as text
    config = TrainConfig(data=str(odd_data), out=str(tmp_path / "run"), epochs=1, folds=1, **TINY)
    with pytest.raises(BadTrainingFilesError) as refused:
        run_train(config, log=lambda _: None)
    message = str(refused.value)
    message.encode("utf-8")
    assert "person99\\xff_virus_1.jpeg" in message and "1 of 40" in message


def test_training_and_its_folds_read_it(odd_data, tmp_path):
    out = tmp_path / "run"
    config = TrainConfig(data=str(odd_data), out=str(out), epochs=1, folds=2, **TINY)
    run_train(config, log=lambda _: None)
    oof = pq.read_table(out / OOF_FILE).to_pylist()
    assert len(oof) == 40  # every film has an out-of-fold prediction, the odd one too
    (row,) = [r for r in oof if r["path_bytes"] is not None]
    assert os.fsdecode(row["path_bytes"]) == _odd(odd_data / "train" / "PNEUMONIA")
    assert row["path"].endswith("person99\\xff_virus_1.jpeg")


def test_evaluate_reads_it(trained_run, odd_data, tmp_path):
    result = run_evaluate(
        EvalConfig(trained_run, odd_data, out=tmp_path / "eval", device="cpu", workers=0)
    )
    assert result.metrics["counts"]["n"] == 40 and result.metrics["n_skipped"] == 0
