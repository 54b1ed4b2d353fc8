"""Training refuses unreadable files before epoch 1 (or skips them on request), survives a file
that goes bad mid-run, and never resumes on changed data."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cxr_fast.data.bad_file_scan import CACHE_ENV, cache_dir
from cxr_fast.data.discover import discover
from cxr_fast.errors import ResumeMismatchError
from cxr_fast.run_folder import read_json
from cxr_fast.training.config import TrainConfig
from cxr_fast.training.preflight import BadTrainingFilesError
from cxr_fast.training.trainer import run_train
from tests.training.commands import train_command

TINY = dict(
    arch="cnn",
    image_size=32,
    batch_size=8,
    val_fraction=0.25,
    lr=3e-3,
    workers=2,
    folds=1,
    export="none",
)


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))


@pytest.fixture
def with_bad_files(kaggle_dir, samples_dir, tmp_path) -> Path:
    """39 real films plus a truncated JPEG and a text file named .jpeg, in train/."""
    root = tmp_path / "data"
    shutil.copytree(kaggle_dir, root)
    data = (samples_dir / "16747_3_1.jpg").read_bytes()
    (root / "train" / "NORMAL" / "IM-9001-0001.jpeg").write_bytes(data[: len(data) // 2])
    (root / "train" / "PNEUMONIA" / "person901_virus_1.jpeg").write_text("not an image\n")
    return root


def test_unreadable_files_are_refused_in_one_line_before_any_epoch(with_bad_files, tmp_path):
    out = tmp_path / "run"
    result = subprocess.run(
        train_command(with_bad_files, out, "--epochs", "1"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1
    assert "2 of 41 images cannot be read" in line and "--skip-bad" in line
    assert "IM-9001-0001.jpeg" in line and "person901_virus_1.jpeg" in line
    assert not out.exists()  # nothing half-made


def test_skip_bad_trains_without_them_and_records_them(with_bad_files, tmp_path):
    out = tmp_path / "run"
    config = TrainConfig(data=str(with_bad_files), out=str(out), epochs=1, skip_bad=True, **TINY)
    messages = []
    result = run_train(config, log=messages.append)
    assert result.epochs_done == 1
    saved = read_json(out / "config.json")
    assert saved["train"]["skip_bad"] is True
    assert sorted(Path(b["path"]).name for b in saved["skipped_bad_files"]) == [
        "IM-9001-0001.jpeg",
        "person901_virus_1.jpeg",
    ]
    assert saved["images"]["train"] + saved["images"]["val"] == 39
    assert any("--skip-bad" in m for m in messages)
    # The check is cached by the data's fingerprint: one cache entry, reused.
    assert len(list(cache_dir().glob("*.json"))) == 1


def test_the_check_refuses_from_the_library_too(with_bad_files, tmp_path):
    config = TrainConfig(data=str(with_bad_files), out=str(tmp_path / "r"), epochs=1, **TINY)
    with pytest.raises(BadTrainingFilesError, match="2 of 41"):
        run_train(config, log=lambda _: None)


def test_a_file_going_bad_mid_run_is_skipped_and_logged(kaggle_dir, tmp_path, capsys):
    """The pre-flight check passes; the file breaks before the epoch reads it."""
    from cxr_fast.contract import PreprocessContract
    from cxr_fast.data.loader_spec import LoaderSpec
    from cxr_fast.data.loaders import make_train_loader

    root = tmp_path / "data"
    shutil.copytree(kaggle_dir, root)
    records = discover(root)
    spec = LoaderSpec(records, PreprocessContract(image_size=32), 8, workers=2)
    loader = make_train_loader(spec, "torch")
    broken = records[3].path
    Path(broken).write_text("gone bad\n")
    seen = [i for batch in loader for i in batch.index.tolist()]
    assert 3 not in seen and len(seen) >= 24
    assert loader.skipped == [(broken, "not an image in a format cxr-fast reads")]
    err = capsys.readouterr().err
    assert f"cxr-fast: skipped {broken}: not an image in a format cxr-fast reads" in err


def test_resume_refuses_changed_data(kaggle_dir, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(kaggle_dir, root)
    out = tmp_path / "run"
    config = TrainConfig(data=str(root), out=str(out), epochs=1, **TINY)
    run_train(config, log=lambda _: None)
    before = read_json(out / "config.json")["data"]
    for source in sorted((root / "train" / "NORMAL").glob("*.jpeg"))[:5]:
        shutil.copy(source, source.with_name("IM-8" + source.name[4:]))
    resumed = TrainConfig(**{**vars(config), "epochs": 2})
    with pytest.raises(ResumeMismatchError, match="changed since the run started"):
        run_train(resumed, resume=True, log=lambda _: None)
    assert read_json(out / "config.json")["data"] == before
    assert json.loads((out / "train_log.jsonl").read_text().splitlines()[0])["epoch"] == 1
    cli = subprocess.run(
        [sys.executable, "-m", "cxr_fast", "train", "--out", str(out), "--resume"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cli.returncode == 2 and len(cli.stderr.strip().splitlines()) == 1
    assert "changed since the run started" in cli.stderr
