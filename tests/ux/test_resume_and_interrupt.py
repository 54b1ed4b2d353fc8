"""Issue 15: ``train --resume`` continues the folder it is given, persists a new epoch count,
says when there is nothing to do, and Ctrl-C says what was kept and how to continue."""

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from cxr_fast.run_folder import atomic_write_json, read_json
from cxr_fast.training.trainer import resume_config, run_train
from tests.cli_in_process import run_main


def _log(run_dir):
    return [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]


@pytest.fixture
def own_run(trained_run, tmp_path):
    """A copy of the session run whose config.json names the copy (so nothing here can touch
    the shared fixture)."""
    run = tmp_path / "original"
    shutil.copytree(trained_run, run)
    config = read_json(run / "config.json")
    config["train"]["out"] = str(run)
    atomic_write_json(config, run / "config.json")
    return run


def test_resume_continues_the_folder_given_and_keeps_the_new_epoch_count(
    own_run, tmp_path, monkeypatch, capsys
):
    moved = tmp_path / "moved"
    shutil.copytree(own_run, moved)
    config = resume_config(moved, epochs=4)
    assert config.out == str(moved)
    run_train(config, resume=True, log=lambda _: None)
    assert [e["epoch"] for e in _log(moved)] == [1, 2, 3, 4]
    assert [e["epoch"] for e in _log(own_run)] == [1, 2, 3]  # the original is untouched
    saved = read_json(moved / "config.json")["train"]
    assert saved["epochs"] == 4 and saved["out"] == str(moved)
    assert resume_config(moved).epochs == 4  # a later plain --resume finishes at 4, not 3

    # A finished run: nothing is trained and the user is told so.
    code, out, _ = run_main(monkeypatch, capsys, "train", "--out", moved, "--resume")
    assert code == 0
    assert "nothing to do: 4 of 4 epochs done" in out
    assert "done in" not in out
    assert [e["epoch"] for e in _log(moved)] == [1, 2, 3, 4]


def test_resume_of_a_moved_run_whose_original_is_gone(own_run, tmp_path):
    moved = tmp_path / "moved2"
    shutil.move(own_run, moved)
    run_train(resume_config(moved, epochs=4), resume=True, log=lambda _: None)
    assert not own_run.exists()  # not recreated at the old path
    assert [e["epoch"] for e in _log(moved)] == [1, 2, 3, 4]


def test_ctrl_c_during_train_says_what_was_kept_and_how_to_continue(
    synth_small, tmp_path, monkeypatch, capsys
):
    from cxr_fast.training.state import TrainingState

    real_save = TrainingState.save

    def save_then_sigint(state, run_dir):
        real_save(state, run_dir)
        if state.progress.epoch == 1:
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C sends

    monkeypatch.setattr(TrainingState, "save", save_then_sigint)
    out = tmp_path / "r"
    code, _, err = run_main(
        monkeypatch,
        capsys,
        *(
            "train",
            "--folds",
            "1",
            "--arch",
            "cnn",
            "--data",
            synth_small,
            "--out",
            out,
            "--epochs",
            "3",
        ),
        *("--image-size", "64"),
        *("--batch-size", "16", "--val-fraction", "0.25", "--workers", "0", "--device", "cpu"),
    )
    assert code == 130
    assert f"epoch 1 of 3 saved in {out}; continue with: cxr-fast train --out {out} --resume" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("damage", ["truncated", "pickled code"])
def test_resume_from_a_damaged_last_pt_is_one_line(own_run, damage):
    from tests.bad_files import add_pickled_code

    state = own_run / "last.pt"
    if damage == "truncated":
        state.write_bytes(state.read_bytes()[:3000])
        needles = ["last.pt is unreadable (truncated or not a cxr-fast training state"]
    else:
        add_pickled_code(state)
        needles = [
            "last.pt refused: loading it would run code from the file",
            "builtins.print",
            "not a plain cxr-fast training state",
        ]
    result = subprocess.run(
        [sys.executable, "-m", "cxr_fast", "train", "--out", str(own_run), "--resume"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for needle in [*needles, "delete it and --resume starts the run again"]:
        assert needle in lines[0], lines[0]
    assert "code from the file ran" not in result.stdout + result.stderr
