"""A training run refused for bad files leaves nothing behind, so the retry with good data into
the same --out trains; --resume never silently swaps the data; --dry-run shows the folds the
run then trains on (issue 31, items 1 and 4)."""

import re
import shutil
from pathlib import Path

import pytest

from cxr_fast.data.preflight import CACHE_ENV
from cxr_fast.errors import ResumeMismatchError
from cxr_fast.run_folder import atomic_write_json, read_json
from cxr_fast.training.trainer import resume_config
from tests.cli_in_process import run_main
from tests.training.commands import train_command

# "training cnn on 120 images, validating on 40 (...)": one line per model trained.
LOGGED = re.compile(r"^training \w+ on (\d+) images, validating on (\d+) ", re.MULTILINE)


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))


def _train_args(data: Path, out: Path, folds: int, *extra: str) -> list[str]:
    """``cxr-fast train`` arguments (no interpreter): the tests' fast recipe with ``folds``."""
    args = train_command(data, out, "--epochs", "1", *extra)[3:]
    args[args.index("--folds") + 1] = str(folds)
    return args


@pytest.fixture
def bad_data(synth_small, tmp_path) -> Path:
    """``synth_small`` plus one truncated JPEG."""
    root = tmp_path / "bad"
    shutil.copytree(synth_small, root)
    film = next((root / "train" / "NORMAL").glob("*.jpeg"))
    data = film.read_bytes()
    (film.parent / "IM-9901-0001.jpeg").write_bytes(data[: len(data) // 2])
    return root


@pytest.mark.parametrize("folds", [1, 2])
def test_a_refused_run_leaves_nothing_and_the_retry_trains(
    folds, bad_data, synth_small, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "r3"
    code, stdout, stderr = run_main(monkeypatch, capsys, *_train_args(bad_data, out, folds))
    assert code == 2, stderr
    assert len(stderr.strip().splitlines()) == 1 and "cannot be read" in stderr
    assert "fold 1 of" not in stdout  # refused before the first member starts
    assert not out.exists()
    code, stdout, stderr = run_main(monkeypatch, capsys, *_train_args(synth_small, out, folds))
    assert code == 0, stderr
    assert (out / "model.pt").is_file()


def test_a_refused_run_keeps_a_folder_it_did_not_make(bad_data, tmp_path, monkeypatch, capsys):
    out = tmp_path / "r3"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    code, _, stderr = run_main(monkeypatch, capsys, *_train_args(bad_data, out, 2))
    assert code == 2, stderr
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_resume_refuses_other_data_in_one_line(
    trained_run, synth_small, bad_data, monkeypatch, capsys
):
    code, _, stderr = run_main(
        monkeypatch, capsys, "train", "--out", trained_run, "--resume", "--data", bad_data
    )
    assert code == 2 and len(stderr.strip().splitlines()) == 1, stderr
    assert f"the run was trained on {synth_small}" in stderr
    assert "start a new --out for other data" in stderr
    with pytest.raises(ResumeMismatchError, match="was trained on"):
        resume_config(trained_run, data=bad_data)
    # The run's own folder, however written, is the same data: no refusal.
    monkeypatch.chdir(synth_small.parent)
    assert resume_config(trained_run, data=Path(synth_small.name)).data == str(synth_small)
    assert resume_config(trained_run, data=synth_small).out == str(trained_run)


@pytest.mark.parametrize("folds", [1, 3])
def test_dry_run_counts_are_the_counts_the_run_logs(
    folds, synth_small, tmp_path, monkeypatch, capsys
):
    import json

    out = tmp_path / "run"
    code, stdout, stderr = run_main(
        monkeypatch, capsys, *_train_args(synth_small, out, folds, "--dry-run")
    )
    assert code == 0, stderr
    images = json.loads(stdout)["images"]
    planned = (
        [(f["train"], f["val"]) for f in images["folds"]]
        if folds > 1
        else [(images["train"], images["val"])]
    )
    assert not out.exists()
    code, stdout, stderr = run_main(monkeypatch, capsys, *_train_args(synth_small, out, folds))
    assert code == 0, stderr
    logged = [(int(t), int(v)) for t, v in LOGGED.findall(stdout)]
    assert logged == planned and len(logged) == folds


def test_a_run_of_the_removed_shift_policy_evaluates_but_does_not_resume(
    trained_run, synth_small, tmp_path, monkeypatch, capsys
):
    run = tmp_path / "old-shift"
    shutil.copytree(trained_run, run)
    saved = read_json(run / "config.json")
    saved["train"]["threshold_policy"] = "shift"  # as a run saved before issue 27 says
    atomic_write_json(saved, run / "config.json")
    code, stdout, stderr = run_main(
        monkeypatch, capsys, "evaluate", str(run), "--data", str(synth_small), "--device", "cpu"
    )
    assert code == 0, stderr
    assert "roc_auc" in stdout
    code, _, stderr = run_main(monkeypatch, capsys, "train", "--out", str(run), "--resume")
    assert code == 2
    assert len(stderr.strip().splitlines()) == 1 and "'shift' is no longer offered" in stderr
